"""Database files in bad states: an unwritable ``-shm`` file, a corrupt header.

The server is a real ``partywidget serve`` subprocess (an unwritable ``-shm`` used to
kill it with SIGBUS, which would take a test process down with it) on a real SQLite file.
The ``-shm`` file is made immutable with ``chattr +i`` (needs root and a file system
with attributes, e.g. ext4): the same failure as a read-only mount of just that file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from partywidget.server.app import create_app
from partywidget.server.thread import ServerThread, run_in_thread
from support.reliability import SRC, TIMEOUT, ServerProcess

pytestmark = pytest.mark.timeout(120)


def _chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """``immutable(path)`` sets the immutable attribute, cleared again at teardown."""
    probe = tmp_path / "probe"
    probe.touch()
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    try:
        _chattr("+i", probe)
    except subprocess.CalledProcessError as error:
        pytest.skip(f"chattr +i not permitted here: {error.stderr.decode().strip()}")
    _chattr("-i", probe)
    marked: list[Path] = []

    def make(path: Path) -> None:
        _chattr("+i", path)
        marked.append(path)

    yield make
    for path in marked:
        if path.exists():
            _chattr("-i", path)


def _serve(db: Path) -> subprocess.CompletedProcess[str]:
    """Run ``partywidget serve`` on ``db``, expecting it to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "partywidget", "serve", "--port", "0", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )


async def test_an_unwritable_shm_file_fails_writes_clearly_instead_of_sigbus(
    tmp_path: Path,
    immutable: Callable[[Path], None],
    server_process: Callable[..., ServerProcess],
) -> None:
    db = tmp_path / "rooms.sqlite3"
    server = server_process(db=db)
    url = server.store_url("shm")
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert (await client.put(url, content='[{},{"v":1}]')).status_code == 201
        shm = Path(f"{db}-shm")
        assert shm.exists()
        immutable(shm)
        async with connect(server.ws_url("shm", "writer"), open_timeout=TIMEOUT) as writer:
            await writer.send('s[{},{"v":2},1]')
            # Not stored: the writer is sent the stored value back (and the server lives).
            assert await writer.recv() == 's[{},{"v":1},1]'
            assert server.running
            assert "rooms.sqlite3-shm is not writable" in server.log_text()
            assert (await client.get(url)).text == '[{},{"v":1}]'
            _chattr("-i", shm)  # the fault clears: writes work again, no restart
            async with connect(server.ws_url("shm", "reader"), open_timeout=TIMEOUT) as reader:
                await writer.send('s[{},{"v":3},1]')
                assert await reader.recv() == 's[{},{"v":3},1]'
        assert (await client.get(url)).text == '[{},{"v":3}]'
    assert server.running


def test_an_unwritable_shm_file_at_start_is_an_error_line(
    tmp_path: Path,
    immutable: Callable[[Path], None],
    server_process: Callable[..., ServerProcess],
) -> None:
    db = tmp_path / "rooms.sqlite3"
    server = server_process(db=db)
    httpx.put(server.store_url("start"), content="[{},{}]", timeout=TIMEOUT)
    server.kill9()  # leaves the -shm file behind, as a crash does
    shm = Path(f"{db}-shm")
    assert shm.exists()
    immutable(shm)
    result = _serve(db)
    assert result.returncode == 1, result
    assert result.stderr.startswith("error: "), result.stderr
    assert "rooms.sqlite3-shm is not writable" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_corrupt_database_header_is_an_error_line(tmp_path: Path) -> None:
    db = tmp_path / "rooms.sqlite3"
    db.write_bytes(b"this is not a SQLite database" + b"\0" * 4096)
    result = _serve(db)
    assert result.returncode == 1, result
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr


async def _write_is_refused(server: ServerThread, room: str, stored: str) -> None:
    """A writer's change is not stored: it gets the stored value back instead."""
    async with connect(f"{server.ws_url}/parties/main/{room}?_pk=w", open_timeout=TIMEOUT) as ws:
        await ws.send('s[{},{"v":"new"},1]')
        async with asyncio.timeout(TIMEOUT):
            assert await ws.recv() == f's[{{}},{{"v":{stored}}},1]'


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_database_file_deleted_or_replaced_while_running_refuses_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    caplog.set_level(logging.ERROR, logger="partywidget.server")
    db = tmp_path / "rooms.sqlite3"
    with run_in_thread(create_app(storage=db)) as server:
        url = f"{server.url}/parties/main/files/store"
        assert httpx.put(url, content='[{},{"v":1}]', timeout=TIMEOUT).status_code == 201
        if how == "deleted":
            for suffix in ["", "-wal", "-shm"]:
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        else:
            other = tmp_path / "other.sqlite3"
            sqlite3.connect(other).close()
            os.replace(other, db)
        await _write_is_refused(server, "files", "1")
        other_room = f"{server.url}/parties/main/another/store"
        assert httpx.put(other_room, content="[{},{}]", timeout=TIMEOUT).status_code == 503
        assert httpx.get(url, timeout=TIMEOUT).text == '[{},{"v":1}]'  # reads still served
    assert any("was deleted or replaced" in r.getMessage() for r in caplog.records)


async def test_a_database_read_only_at_start_recovers_without_restart(
    tmp_path: Path, immutable: Callable[[Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="partywidget.server")
    db = tmp_path / "rooms.sqlite3"
    with run_in_thread(create_app(storage=db)) as first:
        url = f"{first.url}/parties/main/ro/store"
        assert httpx.put(url, content='[{},{"v":1}]', timeout=TIMEOUT).status_code == 201
    immutable(db)
    with run_in_thread(create_app(storage=db)) as server:
        url = f"{server.url}/parties/main/ro/store"
        assert httpx.get(url, timeout=TIMEOUT).text == '[{},{"v":1}]'
        await _write_is_refused(server, "ro", "1")
        _chattr("-i", db)  # the fault clears
        ws = f"{server.ws_url}/parties/main/ro?_pk="
        async with connect(ws + "w", open_timeout=TIMEOUT) as writer, connect(ws + "r") as reader:
            await writer.send('s[{},{"v":2},1]')
            async with asyncio.timeout(TIMEOUT):
                assert await reader.recv() == 's[{},{"v":2},1]'
    with run_in_thread(create_app(storage=db)) as again:
        url = f"{again.url}/parties/main/ro/store"
        assert httpx.get(url, timeout=TIMEOUT).text == '[{},{"v":2}]'
    assert any("readonly" in r.getMessage() for r in caplog.records)
