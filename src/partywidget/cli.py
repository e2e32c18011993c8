"""``partywidget`` command line: ``serve`` runs a room server, ``demo`` shows sync.

Subcommands are argparse sub-parsers, each with a ``handler(args) -> exit code``, so a new
one is a few lines beside the others.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import ipaddress
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn

__all__ = ["build_parser", "default_db_path", "load_server_class", "main"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
DEFAULT_PORT = 1999  # partykit dev's port: clients written for it work unchanged


def default_db_path() -> Path:
    """Where ``partywidget serve`` keeps rooms without ``--db``.

    ``$XDG_DATA_HOME/partywidget/rooms.sqlite3``, i.e. by default
    ``~/.local/share/partywidget/rooms.sqlite3``: per user, surviving reboots, outside
    any project directory.
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "partywidget" / "rooms.sqlite3"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_server_class(spec: str) -> type[Any]:
    """Resolve ``module:Class`` or ``path/to/file.py:Class`` to a server class.

    Why: a room server with custom ``can_*``/``on_before_*`` hooks (auth, read-only
    rooms) is a few lines of Python; ``serve --party`` runs it without a script of its own.
    """
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ValueError(f"expected MODULE:CLASS or FILE.py:CLASS, got {spec!r}")
    if target.endswith(".py"):
        path = Path(target).resolve()
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"cannot load {target!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise ValueError(f"{spec!r} is not a class")
    return cls


def _parties(specs: Sequence[str]) -> dict[str, type[Any]] | None:
    """``[NAME=]SPEC`` options to the parties mapping (no NAME: party ``main``)."""
    if not specs:
        return None
    from partywidget.server import TinyBasePartyKitServer

    parties: dict[str, type[Any]] = {"main": TinyBasePartyKitServer}
    for item in specs:
        name, sep, spec = item.partition("=")
        if not sep:
            name, spec = "main", item
        parties[name] = load_server_class(spec)
    return parties


def _serve(args: argparse.Namespace) -> int:
    from partywidget.server.app import create_app
    from partywidget.server.room import MIB, Limits
    from partywidget.server.thread import bind_socket, format_host, uvicorn_config

    level = args.log_level.upper()
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if level != "DEBUG":
        # uvicorn logs every WebSocket open/close too; ours already has one line each.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    host = args.host
    if not _is_loopback(host):
        if not args.public:
            print(
                f"error: refusing to listen on non-loopback address {host!r} without "
                "--public (anyone who can reach it can read and write every room)",
                file=sys.stderr,
            )
            return 2
        print(
            f"warning: listening on {host}: every room is readable and writable by anyone "
            "who can reach this address (add auth with on_before_connect hooks)",
            file=sys.stderr,
        )
    if "*" in args.allow_origin:
        print(
            "warning: --allow-origin '*': every web page the user visits can read and write "
            "every room",
            file=sys.stderr,
        )
    db = args.db if args.db is not None else str(default_db_path())
    limits = Limits(
        max_message_size=int(args.max_message_mib * MIB),
        max_body_size=int(args.max_body_mib * MIB),
    )
    try:
        app = create_app(
            _parties(args.party), storage=db, limits=limits, allow_origins=args.allow_origin
        )
        sock = bind_socket(host.strip("[]"), args.port)
    except (OSError, ValueError, ImportError, sqlite3.Error) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    port = sock.getsockname()[1]
    shown = format_host(host.strip("[]"), port)
    where = "in memory (lost at exit)" if db == ":memory:" else db
    print(f"partywidget room server on http://{shown}", flush=True)
    print(f"  rooms stored {where}", flush=True)
    print(f'  connect with PartyStoreWidget(host="{shown}")', flush=True)
    server = _ForegroundServer(uvicorn_config(app, log_level=args.log_level.lower()))
    try:
        server.run(sockets=[sock])  # handles SIGINT/SIGTERM: graceful shutdown
    finally:
        sock.close()
    print("partywidget room server stopped", flush=True)
    return 0


class _ForegroundServer(uvicorn.Server):
    """uvicorn, minus re-raising SIGINT/SIGTERM after its graceful shutdown: the shutdown
    *is* the clean exit we want, so ``serve`` returns 0 instead of dying by the signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="partywidget", description="TinyBase's PartyKit sync for Jupyter."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="run a room server (TinyBase PartyKit protocol)",
        description="Run a room server speaking TinyBase's PartyKit protocol, durable in "
        "SQLite. Point PartyStoreWidget(host=...) or any TinyBase PartyKit client at it.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (1999; 0: any)")
    serve.add_argument(
        "--db",
        metavar="FILE",
        default=None,
        help=f"SQLite file for all rooms, or :memory: (default: {default_db_path()})",
    )
    serve.add_argument(
        "--public",
        action="store_true",
        help="allow binding a non-loopback address (the server has no auth by default)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="logging level (info: one line per connection and per rejected input)",
    )
    serve.add_argument(
        "--max-message-mib", type=float, default=16.0, help="max WebSocket message (MiB)"
    )
    serve.add_argument(
        "--party",
        metavar="[NAME=]MODULE:CLASS",
        action="append",
        default=[],
        help="serve party NAME (default: main) with a server class, e.g. "
        "notebooks/classroom_server.py:ClassroomServer; repeatable",
    )
    serve.add_argument("--max-body-mib", type=float, default=64.0, help="max HTTP body (MiB)")
    serve.add_argument(
        "--allow-origin",
        metavar="ORIGIN",
        action="append",
        default=[],
        help="also let web pages from ORIGIN connect (scheme://host[:port], port may be "
        "*; '*' allows every page); loopback pages always may; repeatable",
    )
    serve.set_defaults(handler=_serve)

    from partywidget import demo  # light: the widget is imported only when it runs

    demo_parser = commands.add_parser(
        "demo",
        help="two Python clients in one room, showing edits crossing both ways",
        description="Two Python clients in one room, showing edits crossing both ways.",
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(handler=demo.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``partywidget`` script and of ``python -m partywidget``."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
