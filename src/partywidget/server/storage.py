"""Durable-Object-like key/value storage for rooms: an interface and two implementations.

Why this shape: TinyBase's PartyKit server talks to a Cloudflare Durable Object's storage
(``get``, ``put``, ``list({prefix})``, ``delete``, ``transaction``), one namespace per
room. Keeping the same primitives lets :mod:`partywidget.server.tinybase` keep the
reference's key layout (``hasStore``, ``t"table","row","cell"``, ``v<id>``) so a database
written by partywidget reads like the reference's storage, and lets tests swap a
:class:`MemoryStorage` for a :class:`SQLiteStorage` without touching room logic.

Every method takes a *namespace* ``(party, room)``; :meth:`Storage.room` binds one into a
:class:`RoomStorage` view, which is what a room's server sees as ``party.storage``.

Values are JSON values (what TinyBase stores: strings, finite numbers, booleans, null and
plain objects/arrays). Both implementations keep them as JSON text, so a value read back
is always a fresh copy and both behave identically.

Keys are listed in ascending order of their UTF-8 encoding, as Durable Objects do (and
as SQLite's BINARY collation does); Python's ``str`` ordering (by code point) is the same
order, which is what the reference's GET body depends on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

__all__ = [
    "MISSING",
    "MemoryStorage",
    "Namespace",
    "RoomStorage",
    "SQLiteStorage",
    "Storage",
    "StorageTransaction",
]

T = TypeVar("T")
Namespace = tuple[str, str]
"""``(party, room)``: the unit of isolation, like one Durable Object's storage."""

log = logging.getLogger("partywidget.server.storage")


class _Missing:
    """Type of :data:`MISSING`: ``None`` is a legal stored value (JSON ``null``)."""

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()
"""Returned by ``get`` for an absent key (JavaScript's ``undefined``)."""


def _dump(value: Any) -> str:
    """Serialise a stored value; refuses NaN/Infinity like JSON itself."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _load(text: str) -> Any:
    return json.loads(text)


def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``.

    Used as an exclusive upper bound for range scans, so that listing a prefix uses the
    primary-key index instead of scanning a whole room. ``None`` means "no bound".
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # skip surrogates: not encodable in UTF-8
                nxt = 0xE000
            chars.append(chr(nxt))
            return "".join(chars)
    return None


class StorageTransaction(ABC):
    """Synchronous operations inside one atomic transaction.

    Transactions take a plain (non-async) callable so that the SQLite implementation can
    run the whole callable on its storage thread between ``BEGIN`` and ``COMMIT``: no
    event-loop round trip can interleave another writer, and an exception rolls back.
    """

    @abstractmethod
    def get(self, key: str) -> Any: ...

    @abstractmethod
    def list(self, prefix: str = "") -> dict[str, Any]: ...

    @abstractmethod
    def put(self, key: str, value: Any) -> None: ...

    def put_many(self, entries: Mapping[str, Any]) -> None:
        for key, value in entries.items():
            self.put(key, value)

    @abstractmethod
    def delete(self, key: str) -> bool: ...

    def delete_many(self, keys: Iterable[str]) -> int:
        return sum(1 for key in keys if self.delete(key))


class Storage(ABC):
    """Key/value storage for many rooms, each in its own namespace.

    Every public method is a coroutine; implementations keep blocking I/O off the event
    loop. ``get`` returns :data:`MISSING` for absent keys.
    """

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare for use (called at application start-up); idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (called at application shutdown); idempotent."""

    @abstractmethod
    async def transaction(self, ns: Namespace, fn: Callable[[StorageTransaction], T]) -> T:
        """Run ``fn`` atomically within ``ns``: all its writes land, or none do."""

    async def get(self, ns: Namespace, key: str) -> Any:
        return await self.transaction(ns, lambda txn: txn.get(key))

    async def list(self, ns: Namespace, prefix: str = "") -> dict[str, Any]:
        return await self.transaction(ns, lambda txn: txn.list(prefix))

    async def put(self, ns: Namespace, key: str, value: Any) -> None:
        await self.transaction(ns, lambda txn: txn.put(key, value))

    async def put_many(self, ns: Namespace, entries: Mapping[str, Any]) -> None:
        await self.transaction(ns, lambda txn: txn.put_many(entries))

    async def delete(self, ns: Namespace, key: str) -> bool:
        return await self.transaction(ns, lambda txn: txn.delete(key))

    async def delete_many(self, ns: Namespace, keys: Iterable[str]) -> int:
        keys = list(keys)
        return await self.transaction(ns, lambda txn: txn.delete_many(keys))

    def room(self, party: str, room: str) -> RoomStorage:
        """A view of this storage bound to one room's namespace."""
        return RoomStorage(self, (party, room))


class RoomStorage:
    """One room's storage, the ``party.storage`` a room server sees (no namespace args)."""

    def __init__(self, storage: Storage, ns: Namespace) -> None:
        self.storage = storage
        self.namespace = ns

    async def get(self, key: str) -> Any:
        return await self.storage.get(self.namespace, key)

    async def list(self, prefix: str = "") -> dict[str, Any]:
        return await self.storage.list(self.namespace, prefix)

    async def put(self, key: str, value: Any) -> None:
        await self.storage.put(self.namespace, key, value)

    async def put_many(self, entries: Mapping[str, Any]) -> None:
        await self.storage.put_many(self.namespace, entries)

    async def delete(self, key: str) -> bool:
        return await self.storage.delete(self.namespace, key)

    async def delete_many(self, keys: Iterable[str]) -> int:
        return await self.storage.delete_many(self.namespace, keys)

    async def transaction(self, fn: Callable[[StorageTransaction], T]) -> T:
        return await self.storage.transaction(self.namespace, fn)


# --------------------------------------------------------------------------- memory


class _MemoryTransaction(StorageTransaction):
    """Buffers writes over a room's dict and applies them only if the callable returns."""

    def __init__(self, data: dict[str, str]) -> None:
        self._data = data
        self._writes: dict[str, str | None] = {}

    def get(self, key: str) -> Any:
        text = self._writes[key] if key in self._writes else self._data.get(key)
        return MISSING if text is None else _load(text)

    def list(self, prefix: str = "") -> dict[str, Any]:
        merged = {k: v for k, v in self._data.items() if k.startswith(prefix)}
        for key, text in self._writes.items():
            if key.startswith(prefix):
                if text is None:
                    merged.pop(key, None)
                else:
                    merged[key] = text
        return {key: _load(merged[key]) for key in sorted(merged)}

    def put(self, key: str, value: Any) -> None:
        self._writes[key] = _dump(value)

    def delete(self, key: str) -> bool:
        existed = self.get(key) is not MISSING
        self._writes[key] = None
        return existed

    def commit(self) -> None:
        for key, text in self._writes.items():
            if text is None:
                self._data.pop(key, None)
            else:
                self._data[key] = text


class MemoryStorage(Storage):
    """In-process storage: for tests and ``--db :memory:``; lost when the process ends.

    Transactions run synchronously on the event loop (no ``await`` inside), which makes
    them atomic with respect to every other coroutine.
    """

    def __init__(self) -> None:
        self._rooms: dict[Namespace, dict[str, str]] = {}

    async def transaction(self, ns: Namespace, fn: Callable[[StorageTransaction], T]) -> T:
        txn = _MemoryTransaction(self._rooms.setdefault(ns, {}))
        result = fn(txn)
        txn.commit()
        return result

    def namespaces(self) -> list[Namespace]:
        """Rooms that have (or had) data, for inspection in tests and tools."""
        return sorted(ns for ns, data in self._rooms.items() if data)


# --------------------------------------------------------------------------- sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    party TEXT NOT NULL,
    room TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (party, room, key)
) WITHOUT ROWID
"""


class _SQLiteTransaction(StorageTransaction):
    def __init__(self, conn: sqlite3.Connection, ns: Namespace) -> None:
        self._conn = conn
        self._party, self._room = ns

    def get(self, key: str) -> Any:
        row = self._conn.execute(
            "SELECT value FROM kv WHERE party=? AND room=? AND key=?",
            (self._party, self._room, key),
        ).fetchone()
        return MISSING if row is None else _load(row[0])

    def list(self, prefix: str = "") -> dict[str, Any]:
        end = _prefix_end(prefix)
        if end is None:
            rows = self._conn.execute(
                "SELECT key, value FROM kv WHERE party=? AND room=? AND key>=? ORDER BY key",
                (self._party, self._room, prefix),
            )
        else:
            rows = self._conn.execute(
                "SELECT key, value FROM kv WHERE party=? AND room=? AND key>=? AND key<? "
                "ORDER BY key",
                (self._party, self._room, prefix, end),
            )
        return {key: _load(text) for key, text in rows}

    def put(self, key: str, value: Any) -> None:
        self.put_many({key: value})

    def put_many(self, entries: Mapping[str, Any]) -> None:
        self._conn.executemany(
            "INSERT INTO kv (party, room, key, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (party, room, key) DO UPDATE SET value=excluded.value",
            [(self._party, self._room, key, _dump(value)) for key, value in entries.items()],
        )

    def delete(self, key: str) -> bool:
        return self.delete_many([key]) > 0

    def delete_many(self, keys: Iterable[str]) -> int:
        cursor = self._conn.executemany(
            "DELETE FROM kv WHERE party=? AND room=? AND key=?",
            [(self._party, self._room, key) for key in keys],
        )
        return max(cursor.rowcount, 0)


class _Pending:
    """One queued SQLite transaction: what to run, and where to deliver its outcome.

    The outcome is recorded on the storage thread and handed to the caller's event loop
    only after the batch's COMMIT (see :meth:`SQLiteStorage._run_batch`).
    """

    __slots__ = ("error", "fn", "future", "loop", "ns", "result")

    def __init__(
        self,
        ns: Namespace,
        fn: Callable[[StorageTransaction], Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
    ) -> None:
        self.ns = ns
        self.fn = fn
        self.loop = loop
        self.future = future
        self.result: Any = None
        self.error: BaseException | None = None

    def succeed(self, result: Any) -> None:
        self.result, self.error = result, None

    def fail(self, error: BaseException) -> None:
        self.result, self.error = None, error


def _resolve_all(items: list[_Pending]) -> None:
    """On the caller's loop: settle each future (unless its caller cancelled it)."""
    for item in items:
        if item.future.done():
            continue
        if isinstance(item.error, StopIteration):  # futures refuse it (PEP 479)
            item.future.set_exception(RuntimeError("transaction raised StopIteration"))
        elif item.error is not None:
            item.future.set_exception(item.error)
        else:
            item.future.set_result(item.result)


class SQLiteStorage(Storage):
    """All rooms in one SQLite file, in WAL mode, driven from one dedicated thread.

    Why one thread and one connection: SQLite serialises writers anyway, a single
    connection avoids lock contention and ``database is locked`` errors, and keeping all
    calls on a worker thread means a slow disk never blocks the event loop that serves
    WebSockets.

    Durability: WAL with ``synchronous=NORMAL`` (the default here) makes every committed
    transaction survive a crash of *this process* (``kill -9``): COMMIT returns only once
    the transaction is written to the WAL file in the OS. A power loss or OS crash may
    lose the last transactions before a checkpoint, in exchange for commits that do not
    wait for ``fsync``. Pass ``synchronous="FULL"`` to fsync every commit.

    Group commit: transactions are queued, and everything queued while a batch is being
    committed is committed together in the next batch (one ``BEGIN``…``COMMIT``, each
    transaction in its own ``SAVEPOINT``, in queue order). Many rooms writing small
    transactions then share one COMMIT and one thread hand-off instead of paying one
    each; a caller's ``transaction`` still returns only after its batch committed, and a
    failing transaction is rolled back alone.

    Only one process should serve a given database file: rooms keep an in-memory mirror
    of their content, which another writer would silently invalidate.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"invalid synchronous mode: {synchronous!r}")
        self.path = os.fspath(path)
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="partywidget-sqlite")
        self._closed = False
        self._close_lock = threading.Lock()
        # Transactions waiting for the next batch; a drain job is queued on the executor
        # whenever this is non-empty (see transaction()).
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._drain_scheduled = False
        self.batches = 0
        """Batches committed so far, one COMMIT each: group commit made observable."""
        self.before_commit: Callable[[], None] | None = None
        self.after_commit: Callable[[], None] | None = None
        """Seams, called on the storage thread just before and just after a batch's
        COMMIT, before any caller learns the outcome: tests drive the order
        "committed, then acknowledged" through them instead of through a crash."""
        # Opened on the worker thread (and only ever used there); done synchronously
        # here so that a bad path fails at construction, not at the first request.
        self._synchronous = synchronous.upper()
        self._identity: tuple[int, int] | None = None
        self._reopen = False  # a write failed as read-only: reconnect before the next
        self._conn: sqlite3.Connection = self._executor.submit(
            self._connect, self._synchronous
        ).result()
        self._identity = self._file_identity()

    def _check_shared_memory(self) -> None:
        """Refuse to touch the database while its ``-shm`` file is not writable.

        Why: SQLite maps that file into memory and writes to it on every transaction,
        reads included; when the file cannot be written (an immutable attribute, a
        read-only bind mount of just that file) the write to the mapping kills the whole
        process with SIGBUS, which no exception handler can catch. Checking first turns
        that into an ordinary, logged storage error (one ``access`` call per batch).
        """
        if self.path == ":memory:":
            return
        shm = os.fspath(Path(self.path).expanduser()) + "-shm"
        if os.path.exists(shm) and not os.access(shm, os.W_OK):
            raise sqlite3.OperationalError(
                f"{shm} is not writable (immutable or read-only?): refusing to use the "
                "database, which would crash the server (SIGBUS); fix the file's "
                "permissions or attributes"
            )

    def _file_identity(self) -> tuple[int, int] | None:
        if self.path == ":memory:":
            return None
        try:
            stat = os.stat(Path(self.path).expanduser())
        except FileNotFoundError:
            return None
        return stat.st_dev, stat.st_ino

    def _check_files(self) -> None:
        """Before each batch: the ``-shm`` file is writable, and the database file is
        still the one opened (deleted or replaced, writes would go to a file nobody
        will read again: acknowledged, then lost at the next start)."""
        self._check_shared_memory()
        if self._identity is not None and self._file_identity() != self._identity:
            raise sqlite3.OperationalError(
                f"{self.path} was deleted or replaced while the server runs: refusing "
                "to store anything more in it; restart the server"
            )

    def _reconnect(self) -> None:
        """A fresh connection after read-only failures: SQLite keeps a connection
        opened on a read-only file read-only, even once the file is writable again."""
        fresh = self._connect(self._synchronous)
        old, self._conn = self._conn, fresh
        self._reopen = False
        with contextlib.suppress(sqlite3.Error):
            old.close()

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        self._check_shared_memory()
        conn = sqlite3.connect(
            str(Path(self.path).expanduser()) if self.path != ":memory:" else self.path,
            isolation_level=None,  # explicit BEGIN/COMMIT below
            check_same_thread=False,
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as error:
            if "readonly" not in str(error):
                raise
            log.warning("%s is read-only: rooms load, writes fail until it is not", self.path)
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute(_SCHEMA)
        return conn

    def _begin(self) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if "readonly" not in str(error):
                raise
            # A read-only database (file, directory or medium): reads must still work
            # (rooms keep loading and serving GETs); writes then fail clearly below.
            self._conn.execute("BEGIN")

    def _rollback(self) -> None:
        # SQLite may already have rolled back (disk full, I/O error): a second ROLLBACK
        # would raise and hide the real error. A failed COMMIT (disk full) leaves the
        # transaction open: roll it back, or every later BEGIN fails.
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _run_batch(self, batch: list[_Pending]) -> None:
        """Commit a batch of queued transactions together (on the storage thread).

        Why: a COMMIT (and the thread hand-off around it) costs far more than the few
        row writes of one message, and rooms write many small transactions. Everything
        queued while the previous batch was committing goes into one ``BEGIN``…
        ``COMMIT``, each transaction inside its own ``SAVEPOINT`` so that one failing
        callable is rolled back alone. Results are delivered only after the COMMIT, so
        an awaited transaction is as durable as before; if the COMMIT fails, every
        transaction of the batch fails with its error (none of them was stored).
        """
        # Skip transactions whose caller gave up before they started (as an executor
        # does for a cancelled job); the flag is only read here, so a stale read merely
        # runs a transaction nobody waits for.
        batch = [item for item in batch if not item.future.cancelled()]
        if not batch:
            return
        try:
            self._check_files()
            if self._reopen:
                self._reconnect()
            self._begin()
        except BaseException as error:  # delivered to every caller
            for item in batch:
                item.fail(error)
            self._note_failures(batch)
            self._deliver(batch)
            return
        conn = self._conn
        committed_ok: list[_Pending] = []  # succeeded, awaiting the COMMIT
        single = len(batch) == 1
        for item in batch:
            if not conn.in_transaction:
                # A previous failure made SQLite abandon the whole transaction (I/O
                # error, disk full): start a new one for the rest of the batch.
                try:
                    self._begin()
                except BaseException as error:
                    item.fail(error)
                    continue
            try:
                if not single:
                    conn.execute("SAVEPOINT pw_txn")
                result = item.fn(_SQLiteTransaction(conn, item.ns))
                if not single:
                    conn.execute("RELEASE pw_txn")
            except BaseException as error:  # delivered to its caller
                item.fail(error)
                if single:
                    self._rollback()
                    continue
                try:
                    conn.execute("ROLLBACK TO pw_txn")
                    conn.execute("RELEASE pw_txn")
                except sqlite3.Error:
                    # The savepoint is gone with the whole transaction: the writes of
                    # earlier transactions in this batch are lost too; fail them.
                    self._rollback()
                    for lost in committed_ok:
                        lost.fail(error)
                    committed_ok = []
                continue
            item.succeed(result)
            committed_ok.append(item)
        self._commit(committed_ok)
        self._note_failures(batch)
        self._deliver(batch)

    def _commit(self, committed_ok: list[_Pending]) -> None:
        """COMMIT what succeeded; if that fails, none of it was stored."""
        conn = self._conn
        if conn.in_transaction:
            try:
                if self.before_commit is not None:
                    self.before_commit()
                conn.execute("COMMIT")
            except BaseException as error:
                self._rollback()
                for item in committed_ok:
                    item.fail(error)
            else:
                self.batches += 1
                if self.after_commit is not None:
                    try:
                        self.after_commit()
                    except Exception:  # committed all the same: report, deliver
                        log.exception("after_commit hook failed")
        elif committed_ok:  # pragma: no cover - defensive: nothing left to commit
            lost_error = sqlite3.OperationalError("transaction was rolled back")
            for item in committed_ok:
                item.fail(lost_error)

    def _note_failures(self, batch: list[_Pending]) -> None:
        if any(isinstance(i.error, sqlite3.Error) and "readonly" in str(i.error) for i in batch):
            self._reopen = True

    @staticmethod
    def _deliver(batch: list[_Pending]) -> None:
        """Resolve the batch's futures: one wake-up per event loop, not per future."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for item in batch:
            by_loop.setdefault(item.loop, []).append(item)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve_all, items)

    def _drain(self) -> None:
        """Storage-thread job: commit everything queued so far as one batch."""
        with self._queue_lock:
            batch, self._queue = self._queue, []
            self._drain_scheduled = False
        self._run_batch(batch)

    async def transaction(self, ns: Namespace, fn: Callable[[StorageTransaction], T]) -> T:
        """Queue ``fn`` for the next batch; resolves once the batch holding it committed."""
        if self._closed:
            raise RuntimeError("storage is closed")
        loop = asyncio.get_running_loop()
        item = _Pending(ns, fn, loop, loop.create_future())
        with self._queue_lock:
            self._queue.append(item)
            if not self._drain_scheduled:
                try:
                    self._executor.submit(self._drain)
                except RuntimeError:  # shut down between the check above and now
                    self._queue.remove(item)
                    raise RuntimeError("storage is closed") from None
                self._drain_scheduled = True
        result: T = await item.future
        return result

    def namespaces(self) -> list[Namespace]:
        """Rooms that have data (blocking; for tools and tests)."""
        rows = self._executor.submit(
            lambda: self._conn.execute(
                "SELECT DISTINCT party, room FROM kv ORDER BY party, room"
            ).fetchall()
        ).result()
        return [(str(p), str(r)) for p, r in rows]

    def close_sync(self) -> None:
        """Finish pending work, checkpoint the WAL and close; safe to call twice."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True

        def _close() -> None:
            try:
                self._check_shared_memory()
            except sqlite3.OperationalError as error:
                # Closing checkpoints through the mapping: leave it to process exit.
                log.error("not closing the database cleanly: %s", error)
                return
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as error:  # pragma: no cover - best effort
                log.warning("WAL checkpoint failed: %s", error)
            self._conn.close()

        self._executor.submit(_close).result()
        self._executor.shutdown(wait=True)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close_sync)
