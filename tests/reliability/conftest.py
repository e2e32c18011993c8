"""Fixtures for reliability tests (helpers live in ``support/reliability.py``).

- ``server_process``: factory of started :class:`ServerProcess` (stopped at teardown);
- ``room``: a unique room name per test;
- ``node_peers``: real TinyBase 10.0.1 clients in Node (skips when Node is missing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.reliability import ServerProcess


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: ``server_process(*extra_args, db=None)`` -> a started ServerProcess."""
    started: list[ServerProcess] = []

    def make(*extra: str, db: Path | str | None = None) -> ServerProcess:
        n = len(started)
        server = ServerProcess(
            db if db is not None else tmp_path / f"rooms{n}.sqlite3",
            tmp_path / f"server{n}.log",
            *extra,
        )
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop()
