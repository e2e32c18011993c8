"""Storage implementations: Durable-Object-like semantics, ordering, atomicity, durability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from partywidget.server.storage import MISSING, MemoryStorage, SQLiteStorage, Storage

NS = ("main", "room")


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    store: Storage = (
        MemoryStorage() if request.param == "memory" else SQLiteStorage(tmp_path / "s.db")
    )
    yield store
    await store.close()


async def test_get_put_delete_and_missing_versus_null(storage: Storage) -> None:
    assert await storage.get(NS, "k") is MISSING
    await storage.put(NS, "k", None)
    assert await storage.get(NS, "k") is None
    await storage.put_many(NS, {"a": {"x": [1, 2.5, "é"]}, "b": True})
    assert await storage.get(NS, "a") == {"x": [1, 2.5, "é"]}
    assert await storage.delete(NS, "k") is True
    assert await storage.delete(NS, "k") is False
    assert await storage.delete_many(NS, ["a", "b", "nope"]) == 2
    assert await storage.list(NS) == {}


async def test_room_view_reads_and_writes_only_its_own_room(storage: Storage) -> None:
    room = storage.room("main", "room")
    other = ("main", "other")
    await storage.put(other, "k", "theirs")
    assert await room.get("k") is MISSING
    await room.put("k", "mine")
    await room.put_many({"a": 1, "b": 2})
    assert await room.get("k") == "mine"
    assert await storage.list(NS) == {"a": 1, "b": 2, "k": "mine"}
    assert await room.list("a") == {"a": 1}
    assert await room.transaction(lambda txn: txn.get("b")) == 2
    assert await room.delete("k") is True
    assert await room.delete("k") is False
    assert await room.delete_many(["a", "b", "nope"]) == 2
    assert await room.list() == {}
    assert await storage.list(other) == {"k": "theirs"}
    assert repr(MISSING) == "MISSING"


async def test_values_are_copies(storage: Storage) -> None:
    value = {"x": [1]}
    await storage.put(NS, "k", value)
    value["x"].append(2)
    got = await storage.get(NS, "k")
    got["x"].append(3)
    assert await storage.get(NS, "k") == {"x": [1]}


async def test_list_is_prefix_filtered_and_in_utf8_order(storage: Storage) -> None:
    keys = ["t\U0001f600", "t\uff01", "tb", "ta", 't"a","r"', "t", "u", "s", "t\x7f", "t\u00e9"]
    await storage.put_many(NS, {k: i for i, k in enumerate(keys)})
    listed = list(await storage.list(NS, "t"))
    assert listed == sorted((k for k in keys if k.startswith("t")), key=lambda k: k.encode())
    # UTF-8 order puts astral characters after U+FF01 (UTF-16 order would not).
    assert listed[-2:] == ["t\uff01", "t\U0001f600"]
    assert list(await storage.list(NS)) == sorted(keys, key=lambda k: k.encode())
    assert await storage.list(NS, "x") == {}


async def test_list_prefix_with_maximal_code_point(storage: Storage) -> None:
    await storage.put_many(NS, {"a\U0010ffff": 1, "a\U0010ffffb": 2, "b": 3})
    assert list(await storage.list(NS, "a\U0010ffff")) == ["a\U0010ffff", "a\U0010ffffb"]


async def test_namespaces_are_isolated(storage: Storage) -> None:
    await storage.put(("main", "a"), "k", 1)
    await storage.put(("main", "b"), "k", 2)
    await storage.put(("other", "a"), "k", 3)
    assert await storage.get(("main", "a"), "k") == 1
    assert await storage.get(("main", "b"), "k") == 2
    assert await storage.get(("other", "a"), "k") == 3
    room = storage.room("main", "a")
    assert await room.list() == {"k": 1}


async def test_transaction_is_atomic(storage: Storage) -> None:
    await storage.put(NS, "keep", 1)

    def failing(txn: object) -> None:
        txn.put("new", 1)  # type: ignore[attr-defined]
        txn.delete("keep")  # type: ignore[attr-defined]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await storage.transaction(NS, failing)
    assert await storage.list(NS) == {"keep": 1}

    def ok(txn: object) -> dict[str, object]:
        txn.put("new", 2)  # type: ignore[attr-defined]
        txn.delete("keep")  # type: ignore[attr-defined]
        return txn.list()  # type: ignore[attr-defined, no-any-return]

    assert await storage.transaction(NS, ok) == {"new": 2}
    assert await storage.list(NS) == {"new": 2}


async def test_sqlite_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "rooms.sqlite3"
    first = SQLiteStorage(path)
    await first.put_many(NS, {"hasStore": 1, 't"t","r","c"': "\ufffd{}"})
    await first.close()
    await first.close()  # idempotent
    second = SQLiteStorage(path)
    try:
        assert await second.list(NS) == {"hasStore": 1, 't"t","r","c"': "\ufffd{}"}
        assert second.namespaces() == [NS]
    finally:
        await second.close()


def test_sqlite_commit_survives_kill_9(tmp_path: Path) -> None:
    """A committed transaction is in the file even if the process dies right after."""
    path = tmp_path / "k9.sqlite3"
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from partywidget.server.storage import SQLiteStorage
        async def main():
            s = SQLiteStorage({str(path)!r})
            await s.put_many(("main", "r"), {{"hasStore": 1, "vx": "committed"}})
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
        """
    )
    src = str(Path(__file__).parents[2] / "src")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=60)
    assert done.returncode == -signal.SIGKILL

    import asyncio

    async def read() -> dict[str, object]:
        s = SQLiteStorage(path)
        try:
            return await s.list(("main", "r"))
        finally:
            await s.close()

    assert asyncio.run(read()) == {"hasStore": 1, "vx": "committed"}


def test_sqlite_rejects_bad_synchronous_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SQLiteStorage(tmp_path / "x.db", synchronous="sometimes")


async def test_concurrent_transactions_fail_alone_and_commit_durably(
    storage: Storage, tmp_path: Path
) -> None:
    """Writers queued behind a held transaction (SQLite commits them as one batch, each
    in its own savepoint, counted by ``batches``): the one that raises loses exactly its
    own writes, the others land and are on disk once their awaits return."""
    import asyncio
    import threading

    class Boom(Exception):
        pass

    started, release = threading.Event(), threading.Event()

    def slow(txn: Any) -> str:
        started.set()
        release.wait(30)  # holds the storage thread: the next ones queue up behind it
        txn.put("slow", 1)
        return "slow"

    def writer(i: int) -> Any:
        def fn(txn: Any) -> int:
            txn.put(f"k{i}", i)
            return i

        return fn

    def failing(txn: Any) -> None:
        txn.put("partial", "must not land")
        raise Boom

    batches = storage.batches if isinstance(storage, SQLiteStorage) else 0
    if not isinstance(storage, SQLiteStorage):
        release.set()  # memory transactions run inline: nothing can queue behind them
    first = asyncio.ensure_future(storage.transaction(NS, slow))
    if isinstance(storage, SQLiteStorage):
        assert await asyncio.to_thread(started.wait, 30)
    queued = asyncio.gather(
        storage.transaction(NS, writer(1)),
        storage.transaction(NS, failing),
        storage.transaction(NS, writer(2)),
        storage.transaction(NS, writer(3)),
        return_exceptions=True,
    )
    await asyncio.sleep(0)  # each transaction() has queued its callable
    release.set()
    results = await queued
    assert await first == "slow"
    assert results[0] == 1 and results[2] == 2 and results[3] == 3
    assert isinstance(results[1], Boom)
    if isinstance(storage, SQLiteStorage):
        assert storage.batches == batches + 2  # the held one, then the four queued together
    expected = {"slow": 1, "k1": 1, "k2": 2, "k3": 3}
    assert await storage.list(NS) == expected
    if isinstance(storage, SQLiteStorage):
        again = SQLiteStorage(tmp_path / "s.db")
        try:
            assert await again.list(NS) == expected
        finally:
            await again.close()
