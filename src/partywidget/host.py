"""Which room server a widget talks to, and the embedded one it starts if none answers.

A notebook should work with nothing set up: ``PartyStoreWidget("room")`` uses
``$PARTYWIDGET_HOST`` if set, else a server on ``127.0.0.1:1999`` (``partywidget serve``'s
default) if one answers, else starts our own room server once per process, on a daemon
thread, with rooms in memory. The widget shows the returned notice as a banner so the
user knows their rooms are not shared beyond this process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server.thread import ServerThread

__all__ = ["DEFAULT_ADDRESS", "DEFAULT_HOST", "DEFAULT_PORT", "resolve_host"]

#: The package logger: the embedded-server notice goes here at INFO, so it is not written
#: to stderr (Python's last-resort handler only prints WARNING and above) unless the
#: user configures logging; the widget shows the same notice as a banner.
package_log = logging.getLogger("partywidget")

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 1999
DEFAULT_HOST = f"{DEFAULT_ADDRESS}:{DEFAULT_PORT}"

_embedded: ServerThread | None = None
_embedded_lock = threading.Lock()
_embedded_logged = False


def answers(address: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections there (a room server, we assume)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def embedded_server() -> ServerThread | None:
    """The embedded server this process started, if any."""
    return _embedded


def start_embedded() -> ServerThread:
    """Start (once per process) our room server on a daemon thread with its own loop:
    on the default port, or a free one if that is taken."""
    global _embedded, _embedded_logged
    from .server.thread import run_in_thread

    with _embedded_lock:
        if _embedded is None:
            try:
                _embedded = run_in_thread(host=DEFAULT_ADDRESS, port=DEFAULT_PORT)
            except (OSError, RuntimeError, SystemExit):
                _embedded = run_in_thread(host=DEFAULT_ADDRESS, port=0)
        if not _embedded_logged:
            _embedded_logged = True
            package_log.info(
                "partywidget: no room server answered at %s; started an embedded one at %s "
                "(rooms live in this process's memory)",
                f"{DEFAULT_ADDRESS}:{DEFAULT_PORT}",
                _embedded.host,
            )
        return _embedded


def resolve_host(host: str | None) -> tuple[str, str]:
    """The host to use and a notice for the widget ("" unless we started a server).

    ``host`` if given; else ``$PARTYWIDGET_HOST``; else ``127.0.0.1:1999`` if something
    answers there; else our embedded server (on 1999, or a free port if 1999 is taken).
    """
    if host:
        return host, ""
    env = os.environ.get("PARTYWIDGET_HOST", "").strip()
    if env:
        return env, ""
    if _embedded is not None:
        return _embedded.host, _notice(_embedded)
    if answers(DEFAULT_ADDRESS, DEFAULT_PORT):
        return f"{DEFAULT_ADDRESS}:{DEFAULT_PORT}", ""
    server = start_embedded()
    return server.host, _notice(server)


def _notice(server: ServerThread) -> str:
    return (
        f"No room server at {DEFAULT_ADDRESS}:{DEFAULT_PORT}: using an embedded one at "
        f"{server.host} (rooms live in this kernel's memory)."
    )
