"""``partywidget demo``: the whole idea in a terminal, for machines without a browser.

It starts a room server on a background thread (the same embedded server a notebook gets
when nothing answers on 127.0.0.1:1999), opens two Python clients -- ``alice`` and
``bob``, two :class:`~partywidget.widget.PartyStoreWidget` objects with their own
WebSocket -- in one room, and makes edits on each side, printing every edit when it is
made (``->``) and when the *other* client sees it (``<-``). Nothing is faked: every edit
crosses a real WebSocket through the server, so a line ``bob <- ...`` is proof that the
change went alice -> server -> bob.

Run it with ``python -m partywidget.demo`` (or ``partywidget demo`` once the CLI wires
:func:`add_arguments` / :func:`run`). ``--host`` uses an existing server instead, e.g.
``partywidget serve`` in another terminal or a deployed PartyKit project; then a
notebook with ``PartyStoreWidget("demo", host=...)`` can watch the same room.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .server import ServerThread
    from .widget import PartyStoreWidget

__all__ = ["DemoTimeout", "add_arguments", "build_parser", "main", "run"]


class DemoTimeout(RuntimeError):
    """An edit did not reach the other client in time (the demo then exits with 1)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options, on ``parser`` (so ``partywidget demo`` can reuse them)."""
    parser.add_argument(
        "--host",
        default=None,
        help="use this room server (host:port) instead of starting an embedded one",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="port for the embedded server (default 0: any free port)",
    )
    parser.add_argument("--room", default=None, help="room name (default: a fresh one)")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.7,
        help="seconds between steps, to follow along (0: no pauses)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=20.0,
        help="seconds to wait for each edit to arrive before giving up",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="partywidget demo",
        description="Two Python clients in one room, showing edits crossing both ways.",
    )
    add_arguments(parser)
    return parser


class _Demo:
    """The scripted session; ``out`` is where the lines go (stdout, or a test's buffer)."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.started = time.perf_counter()

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def pause(self) -> None:
        if self.args.pause > 0:
            time.sleep(self.args.pause)

    def wait_until(self, who: PartyStoreWidget, what: str, predicate: Callable[[], bool]) -> float:
        """Wait until ``predicate`` holds; return the seconds it took (shown, not judged).

        ``who.wait_until`` re-checks it on ``who``'s loop after every transaction, so the
        time shown is when the change landed in that client, not a polling interval later.
        """
        start = time.perf_counter()
        try:
            who.wait_until(predicate, self.args.timeout)
        except TimeoutError:
            raise DemoTimeout(f"{what}: not seen within {self.args.timeout:g} s") from None
        return time.perf_counter() - start

    def crossed(
        self, who: PartyStoreWidget, name: str, what: str, predicate: Callable[[], bool]
    ) -> None:
        took = self.wait_until(who, f"{name} waiting for {what}", predicate)
        self.say(f"  {name:<5} <- {what}   ({took * 1000:.0f} ms later)")

    def run(self) -> None:
        from .server import run_in_thread
        from .widget import PartyStoreWidget

        args = self.args
        room = args.room or f"demo-{uuid.uuid4().hex[:6]}"
        server: ServerThread | None = None
        if args.host:
            host = args.host
            self.say(f"Using the room server at {host}.")
        else:
            server = run_in_thread(port=args.port)
            host = server.host
            self.say(f"Started an embedded room server at http://{host} (rooms in memory).")
        clients: list[PartyStoreWidget] = []
        try:
            alice = PartyStoreWidget(room, host=host)
            clients.append(alice)
            bob = PartyStoreWidget(room, host=host)
            clients.append(bob)
            alice.wait_ready(args.timeout)
            bob.wait_ready(args.timeout)
            self.say(f"alice and bob joined room {room!r}: two clients, two WebSockets.")
            self.say()
            self.steps(alice, bob)
        finally:
            for client in clients:
                client.close()
            if server is not None:
                server.stop()

    def steps(self, alice: PartyStoreWidget, bob: PartyStoreWidget) -> None:
        self.pause()
        self.say("1. alice adds a table from Python")
        alice.set_table(
            "pets",
            {
                "fido": {"species": "dog", "age": 3},
                "felix": {"species": "cat", "age": 7},
            },
        )
        self.say("  alice -> pets: fido (dog, 3), felix (cat, 7)")
        self.crossed(
            bob,
            "bob",
            "pets: fido, felix",
            lambda: (
                bob.get_cell("pets", "felix", "age") == 7
                and bob.get_cell("pets", "fido", "age") == 3
            ),
        )

        self.pause()
        self.say("2. bob edits a cell")
        bob.set_cell("pets", "felix", "age", 8)
        self.say("  bob   -> pets/felix/age = 8")
        self.crossed(
            alice,
            "alice",
            "pets/felix/age = 8",
            lambda: alice.get_cell("pets", "felix", "age") == 8,
        )

        self.pause()
        self.say("3. bob adds a row, alice deletes one")
        bob.set_row("pets", "polly", {"species": "parrot", "age": 1})
        self.say("  bob   -> pets/polly = (parrot, 1)")
        alice.del_row("pets", "fido")
        self.say("  alice -> delete pets/fido")
        self.crossed(
            alice,
            "alice",
            "pets/polly = (parrot, 1)",
            lambda: alice.get_cell("pets", "polly", "species") == "parrot",
        )
        self.crossed(
            bob,
            "bob",
            "pets/fido deleted",
            lambda: "fido" not in bob.get_table("pets"),
        )

        self.pause()
        self.say("4. values too: alice sets one, bob another, at the same time")
        alice.set_value("owner", "Ada")
        bob.set_value("visits", 2)
        self.say("  alice -> owner = 'Ada'")
        self.say("  bob   -> visits = 2")
        self.crossed(bob, "bob", "owner = 'Ada'", lambda: bob.get_value("owner") == "Ada")
        self.crossed(alice, "alice", "visits = 2", lambda: alice.get_value("visits") == 2)

        self.pause()
        self.say("5. both clients now hold the same Store:")
        self.wait_until(bob, "convergence", lambda: _content(alice) == _content(bob))
        frame = bob.df("pets")
        for line in frame.to_string().splitlines():
            self.say(f"     {line}")
        self.say(f"     values: {bob.values}")
        self.say(f"  alice and bob agree: {_content(alice) == _content(bob)}")
        # flush: both clients' edits are written and a GET of the room equals their Store
        # (what a script must do before exiting); then show that GET's answer.
        alice.wait_flush(self.args.timeout)
        bob.wait_flush(self.args.timeout)
        on_server = tuple(alice.wait_server_content(self.args.timeout))
        self.say(f"  the server holds the same (a GET of the room): {on_server == _content(bob)}")
        self.say()
        self.say(
            f"Done in {time.perf_counter() - self.started:.1f} s. In a notebook, "
            "PartyStoreWidget(room) shows the same room as an editable grid."
        )


def _content(widget: PartyStoreWidget) -> tuple[Any, Any]:
    return ({"pets": widget.get_table("pets")}, widget.values)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the demo with parsed ``args``; 0 when every edit crossed, 1 otherwise."""
    try:
        _Demo(args, out or sys.stdout).run()
    except (DemoTimeout, OSError, RuntimeError, TimeoutError) as error:
        print(f"partywidget demo failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m partywidget.demo [--host H] [--room R] [--pause S]``."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
