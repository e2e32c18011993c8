"""Database files in bad states: an unwritable ``-shm`` file, a corrupt header.

The server is a real ``partywidget serve`` subprocess (an unwritable ``-shm`` used to
kill it with SIGBUS, which would take a test process down with it) on a real SQLite file.
The ``-shm`` file is made immutable with ``chattr +i`` (needs root and a file system
with attributes, e.g. ext4): the same failure as a read-only mount of just that file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from reliability_helpers import SRC, TIMEOUT, ServerProcess
from websockets.asyncio.client import connect

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
