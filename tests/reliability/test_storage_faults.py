"""Storage that refuses writes: disk full, database locked, read-only database.

The server runs on real uvicorn (a thread, so the fault can be injected into *its*
SQLite connection) over a real SQLite file. Faults:

- disk full: ``PRAGMA max_page_count`` at the current size, so any growth fails with
  ``SQLITE_FULL`` ("database or disk is full"), as on a full disk;
- locked: another process-level connection holds the write lock (``BEGIN IMMEDIATE``)
  past the server's busy timeout ("database is locked");
- read-only: ``PRAGMA query_only`` ("attempt to write a readonly database"), as when
  the file or its directory became read-only.

Required: the server says so in its log, in one clear line; it neither broadcasts nor
acknowledges (201) what it did not store; the sender is told the stored values (the
reconverging ``s`` message) so nobody diverges; and once the fault clears everything
syncs again.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from partywidget.partykit.socket import PartySocket
from partywidget.server import ServerThread, SQLiteStorage, create_app, run_in_thread
from support.reliability import TIMEOUT, fetch_content, py_peer
from support.waiting import eventually

pytestmark = pytest.mark.timeout(120)

FAULT_TEXT = {
    "full": "database or disk is full",
    "locked": "database is locked",
    "readonly": "readonly database",
}


class Fault:
    """Inject and clear one kind of write failure on a running server's SQLite file."""

    def __init__(self, kind: str, storage: SQLiteStorage) -> None:
        self.kind = kind
        self.storage = storage
        self._holder: sqlite3.Connection | None = None

    def _on_storage_thread(self, sql: str) -> Any:
        # SQLiteStorage keeps one connection on one worker thread: run the PRAGMA there.
        conn = self.storage._conn
        return self.storage._executor.submit(lambda: conn.execute(sql).fetchall()).result()

    def inject(self) -> None:
        if self.kind == "full":
            pages = self._on_storage_thread("PRAGMA page_count")[0][0]
            self._on_storage_thread(f"PRAGMA max_page_count={pages}")
        elif self.kind == "locked":
            self._holder = sqlite3.connect(self.storage.path, isolation_level=None)
            self._holder.execute("BEGIN IMMEDIATE")
        else:
            self._on_storage_thread("PRAGMA query_only=1")

    def clear(self) -> None:
        if self.kind == "full":
            self._on_storage_thread("PRAGMA max_page_count=1073741823")
        elif self.kind == "locked":
            assert self._holder is not None
            self._holder.execute("ROLLBACK")
            self._holder.close()
            self._holder = None
        else:
            self._on_storage_thread("PRAGMA query_only=0")


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[tuple[ServerThread, SQLiteStorage]]:
    storage = SQLiteStorage(tmp_path / "rooms.sqlite3")
    # Fill a few pages first, so "disk full" is hit by growth, not by the first write.
    with run_in_thread(create_app(storage=storage, close_storage=True)) as server:
        yield server, storage


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    caplog.set_level(logging.INFO, logger="partywidget.server")
    return lambda: [r for r in caplog.records if r.name.startswith("partywidget.server")]


@pytest.mark.parametrize("kind", ["full", "locked", "readonly"])
async def test_write_failure_is_logged_not_broadcast_and_the_sender_reconverges(
    kind: str,
    sqlite_server: tuple[ServerThread, SQLiteStorage],
    server_log: Callable[[], list[logging.LogRecord]],
    room: str,
) -> None:
    server, storage = sqlite_server
    url = f"{server.url}/parties/main/{room}/store"
    ws_url = f"{server.ws_url}/parties/main/{room}?_pk=observer"
    async with py_peer(server.host, room) as writer, py_peer(server.host, room) as reader:
        writer.store.set_row("t", "r", {"c": "stored", "pad": "x" * 3000})
        writer.store.set_row("t", "keep", {"c": "kept"})
        await eventually(lambda: reader.store.get_cell("t", "r", "c") == "stored")
        await eventually(lambda: reader.store.get_cell("t", "keep", "c") == "kept")
        async with connect(ws_url, open_timeout=TIMEOUT) as observer:
            fault = Fault(kind, storage)
            fault.inject()
            try:
                # A big enough edit that it needs new pages (disk full bites).
                writer.store.set_cell("t", "r", "c", "unsaved")
                writer.store.set_cell("t", "big", "blob", "y" * 20000)
                writer.store.del_row("t", "keep")

                def failure_logged() -> bool:
                    return any(
                        r.levelno >= logging.ERROR and FAULT_TEXT[kind] in r.getMessage()
                        for r in server_log()
                    )

                await eventually(failure_logged, timeout=TIMEOUT, what="failure logged")
                # The writer is told what is really stored: its edit is undone.
                await eventually(
                    lambda: (
                        writer.store.get_cell("t", "r", "c") == "stored"
                        and not writer.store.has_row("t", "big")
                        and writer.store.get_row("t", "keep") == {"c": "kept"}
                    ),
                    what="writer reconverged to the stored values",
                )
                content = await fetch_content(url)
                assert content is not None and content[0]["t"]["r"]["c"] == "stored"
                assert "big" not in content[0]["t"]
            finally:
                fault.clear()

            # Sync works again; the observer never saw the unstored edit (per-connection
            # order: it gets the probe after anything broadcast before it).
            writer.store.set_cell("t", "r", "c", "after")
            await eventually(lambda: reader.store.get_cell("t", "r", "c") == "after")
            seen: list[str] = []
            async with asyncio.timeout(TIMEOUT):
                while not any('"after"' in m for m in seen):
                    message = await observer.recv()
                    assert isinstance(message, str)
                    seen.append(message)
            assert not any("unsaved" in m or "yyyy" in m for m in seen), seen

        async def converged() -> bool:
            content = await fetch_content(url)
            return (
                writer.persister.is_settled()
                and reader.persister.is_settled()
                and writer.store.get_content() == content == reader.store.get_content()
            )

        await eventually(converged, what="converged after the fault cleared")
        assert writer.socket.ready_state == PartySocket.OPEN

    records = server_log()
    errors = [r for r in records if r.levelno >= logging.ERROR]
    # One clear line per failed write, naming the room and the cause; no traceback.
    assert errors and all(r.exc_info is None for r in errors), [r.getMessage() for r in errors]
    assert all(room in r.getMessage() for r in errors)


@pytest.mark.parametrize("kind", ["full", "readonly"])
async def test_initial_put_during_a_write_failure_is_not_acknowledged(
    kind: str,
    sqlite_server: tuple[ServerThread, SQLiteStorage],
    server_log: Callable[[], list[logging.LogRecord]],
    room: str,
) -> None:
    server, storage = sqlite_server
    url = f"{server.url}/parties/main/{room}/store"
    fault = Fault(kind, storage)
    fault.inject()
    body = '[{"t":{"r":{"c":"' + "z" * 20000 + '"}}},{}]'
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.put(url, content=body)
            assert response.status_code == 503, response
            assert response.headers["access-control-allow-origin"] == "*"
            assert (await client.get(url)).text == ""  # still no store
    finally:
        fault.clear()
    assert any(
        r.levelno >= logging.ERROR and FAULT_TEXT[kind] in r.getMessage() for r in server_log()
    )
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert (await client.put(url, content=body)).status_code == 201


def _write_big(storage: SQLiteStorage, error: list[BaseException]) -> None:
    try:
        asyncio.run(storage.put(("p", "r"), "k", "v" * 50000))
    except sqlite3.Error as e:
        error.append(e)


def test_fault_helpers_really_fault(tmp_path: Path) -> None:
    """The injected faults are the real SQLite errors (guards the tests above)."""
    storage = SQLiteStorage(tmp_path / "x.sqlite3")
    try:
        for kind, text in FAULT_TEXT.items():
            if kind == "locked":
                continue  # needs the 5 s busy timeout: exercised by the test above
            fault = Fault(kind, storage)
            fault.inject()
            error: list[BaseException] = []
            thread = threading.Thread(target=_write_big, args=(storage, error))
            thread.start()
            thread.join(TIMEOUT)
            fault.clear()
            assert error and text in str(error[0]), (kind, error)
    finally:
        storage.close_sync()
