"""Helpers for reliability tests: real servers we can kill, real clients.

- :class:`ServerProcess`: ``python -m partywidget serve`` as a subprocess on a real SQLite
  file, its log (stderr) in a file the test can read, ``kill9()`` and ``restart()`` on
  the *same* port and database, so clients reconnect to "the same server" after a crash.
- :func:`py_peer`: our client stack (Store + PartySocket + persister) with fast
  reconnects, as a kernel would run it on its loop.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from partywidget.codec import decode_content
from partywidget.partykit.persister import PartyKitPersister, create_partykit_persister
from partywidget.partykit.socket import PartySocket
from partywidget.store import Store, create_store

REPO_ROOT = Path(__file__).resolve().parents[2]
SRC = REPO_ROOT / "src"
TIMEOUT = 30.0

#: Reconnect quickly and give up on a dead peer quickly: tests break connections.
FAST_SOCKET: dict[str, Any] = {
    "min_reconnection_delay": 0.05,
    "max_reconnection_delay": 0.3,
    "min_uptime": 0.5,
    "connection_timeout": 2.0,
    "close_timeout": 0.5,
}
FAST_RESYNC: dict[str, Any] = {"resync": {"quiet_period": 0.2}}
NODE_FAST_SOCKET: dict[str, Any] = {"minReconnectionDelay": 50, "maxReconnectionDelay": 300}


class ServerProcess:
    """``partywidget serve`` in a subprocess that a test may SIGKILL and restart.

    The log goes to ``log_path`` (appended across restarts), so assertions about what
    the server reported survive the process. ``host`` stays the same across restarts.
    """

    def __init__(self, db: Path | str, log_path: Path, *extra: str) -> None:
        self.db = str(db)
        self.log_path = log_path
        self.extra = extra
        self.port = 0
        self.host = ""
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    def start(self) -> ServerProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = self.log_path.open("a")
        args = [sys.executable, "-m", "partywidget", "serve", "--port", str(self.port)]
        args += ["--db", self.db, "--log-level", "info", *self.extra]
        deadline = time.monotonic() + TIMEOUT
        while True:
            proc = subprocess.Popen(
                args,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1"},
            )
            assert proc.stdout is not None
            banner = proc.stdout.readline()
            if banner:
                break
            # Port still held by the killed process's sockets: retry briefly.
            proc.wait(TIMEOUT)
            if time.monotonic() > deadline:
                raise RuntimeError(f"server failed to start: {self.log_tail()}")
            time.sleep(0.1)
        log.close()
        match = re.search(r"http://(\S+)", banner)
        assert match, banner
        self.host = match.group(1)
        self.port = int(self.host.rsplit(":", 1)[1])
        self.proc = proc
        self.starts += 1
        # Drain the remaining banner lines in the background (never block on a pipe).
        stdout = proc.stdout
        asyncio_free_drain(stdout)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no WAL checkpoint, sockets reset by the kernel."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT)

    def restart(self) -> ServerProcess:
        return self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def store_url(self, room: str, party: str = "main") -> str:
        return f"http://{self.host}/parties/{party}/{room}/store"

    def ws_url(self, room: str, pk: str, party: str = "main", query: str = "") -> str:
        return f"ws://{self.host}/parties/{party}/{room}?_pk={pk}{query}"

    def rss(self) -> int:
        """Resident set size of the server process, in bytes (Linux /proc)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


def asyncio_free_drain(stream: Any) -> None:
    """Read a pipe to EOF on a daemon thread, so the child never blocks writing to it."""
    import threading

    def drain() -> None:
        with contextlib.suppress(Exception):
            for _ in stream:
                pass

    threading.Thread(target=drain, daemon=True).start()


# -- our client ---------------------------------------------------------------------------
@dataclass
class PyPeer:
    store: Store
    socket: PartySocket
    persister: PartyKitPersister
    errors: list[BaseException] = field(default_factory=list)


@contextlib.asynccontextmanager
async def py_peer(
    host: str,
    room: str,
    *,
    config: dict[str, Any] | None = None,
    socket_options: dict[str, Any] | None = None,
    party: str = "main",
    query: Any = None,
    initial_content: Any = None,
) -> AsyncIterator[PyPeer]:
    """Our client, auto-persisting to ``room`` on ``host`` (plain http/ws)."""
    store = create_store()
    errors: list[BaseException] = []
    socket = PartySocket(
        host, room, party=party, query=query, **{**FAST_SOCKET, **(socket_options or {})}
    )
    persister = create_partykit_persister(
        store, socket, {"store_protocol": "http", **FAST_RESYNC, **(config or {})}, errors.append
    )
    peer = PyPeer(store, socket, persister, errors)
    try:
        await persister.start_auto_persisting(initial_content)
        yield peer
    finally:
        await persister.destroy()
        await socket.aclose()


async def fetch_content(url: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The room's content over HTTP (decoded), ``None`` when it has no store."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(url)
    response.raise_for_status()
    return decode_content(response.text) if response.text else None
