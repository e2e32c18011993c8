"""Services the scenarios share: the two servers, the Node driver, Python clients.

Why here and not in ``tests/support``: benchmarks need leaner drivers than the tests
(no per-message recording, timing on both sides of a pipe with one clock) and must start
our server as a *subprocess* so it does not share the benchmark client's GIL - a server
on a thread of the measuring process would be slowed by the very clients it serves.

Clock: every timestamp is microseconds of ``CLOCK_MONOTONIC``; Python's
``time.monotonic_ns`` and Node's ``process.hrtime`` both read it on Linux, so an edit
stamped in one process and seen in the other gives a true one-way latency.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import ROOT, Context
from partywidget.codec import encode_content
from partywidget.partykit.persister import PartyKitPersister, create_partykit_persister
from partywidget.partykit.socket import PartySocket
from partywidget.store import Store, create_store
from support.partykit import PartykitDev, partykit_available

NODE_DRIVER = ROOT / "benchmarks" / "node" / "bench.mjs"
CELL = ("t", "r", "c")
_LINE_LIMIT = 256 * 1024 * 1024


# Process groups this process started; killed at exit as a last resort (a hard second
# Ctrl-C can skip the orderly shutdown, and servers run in their own sessions).
_STARTED_GROUPS: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:
    for pgid in list(_STARTED_GROUPS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    _STARTED_GROUPS.clear()


def now_us() -> int:
    """Microseconds of CLOCK_MONOTONIC: the same clock as the Node driver's ``now()``."""
    return time.monotonic_ns() // 1000


def vm_rss_kib(pid: int | str = "self") -> int | None:
    """``VmRSS`` of a process in KiB (``None`` if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmRSS:\s+(\d+)\s+kB", text)
    return int(match.group(1)) if match else None


def process_group(pgid: int) -> list[tuple[int, str]]:
    """``(pid, comm)`` of every live process in process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # comm is in parentheses and may hold spaces: split after the last ')'.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            found.append((int(entry.name), comm))
    return found


# -- servers ----------------------------------------------------------------------------
class OurServer:
    """``python -m partywidget serve --port 0 --db :memory:`` in its own process group."""

    def __init__(self, proc: subprocess.Popen[str], host: str, log: Path) -> None:
        self.proc = proc
        self.host = host
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(cls, timeout: float = 60.0) -> OurServer:
        log = Path(tempfile.mkstemp(prefix="partywidget-serve-", suffix=".log")[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])]
        )
        with log.open("w") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "partywidget",
                    "serve",
                    "--port",
                    "0",
                    "--db",
                    ":memory:",
                    "--log-level",
                    "warning",
                    # Bulk saves from the reference client are one message per save.
                    "--max-message-mib",
                    "256",
                    "--max-body-mib",
                    "1024",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
                start_new_session=True,
            )
        _STARTED_GROUPS.add(proc.pid)
        server = cls(proc, "", log)
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)  # type: ignore[union-attr]
            match = re.search(r"http://(\S+)", line)
            if match is None:
                raise RuntimeError(f"partywidget serve did not start: {line!r} {log.read_text()}")
            server.host = match.group(1)
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        _STARTED_GROUPS.discard(proc.pid)
        if proc.stdout is not None:
            proc.stdout.close()
        with contextlib.suppress(OSError):
            self.log.unlink()


async def our_server(ctx: Context) -> OurServer:
    async def start() -> OurServer:
        server = await OurServer.start()

        async def stop() -> None:
            await asyncio.to_thread(server.stop)

        ctx.on_close(stop)
        return server

    server: OurServer = await ctx.service("partywidget serve", start)
    return server


async def partykit(ctx: Context) -> PartykitDev:
    async def start() -> PartykitDev:
        reason = partykit_available()
        if reason is not None:
            raise RuntimeError(reason)
        # In-memory Durable Object storage, like our server's --db :memory:.
        server = PartykitDev(persist=False, startup_timeout=120)
        try:
            await asyncio.to_thread(server.start)
        except BaseException:
            server.stop()
            raise

        async def stop() -> None:
            await asyncio.to_thread(server.stop)

        ctx.on_close(stop)
        return server

    server: PartykitDev = await ctx.service("partykit dev", start)
    return server


def workerd_pid(server: PartykitDev) -> int | None:
    """The workerd process of a ``partykit dev`` (it holds the rooms and connections)."""
    if server.pid is None:
        return None
    for pid, comm in process_group(server.pid):
        if "workerd" in comm:
            return pid
    return None


async def servers(ctx: Context) -> dict[str, str]:
    """``{"partykit": host, "ours": host}``: both servers, started once per run."""
    ref = await partykit(ctx)
    ours = await our_server(ctx)
    return {"partykit": ref.host, "ours": ours.host}


SERVER_LABEL = {"partykit": "partykit dev", "ours": "partywidget serve"}


async def put_content(host: str, room: str, body: str, timeout: float) -> int:
    """Initialise a room's store by HTTP PUT (how both persisters save a whole store)."""
    async with httpx.AsyncClient(timeout=timeout) as client:
        response = await client.put(f"http://{host}/parties/main/{room}/store", content=body)
        return response.status_code


def bulk_body(rows: int, cols: int, table: str = "bulk") -> str:
    """A ``rows x cols`` table of int cells, encoded as both clients encode a save."""
    tables = {table: {f"r{i}": {f"c{j}": i * cols + j for j in range(cols)} for i in range(rows)}}
    return encode_content((tables, {}))


# -- Node driver ------------------------------------------------------------------------
class NodeError(RuntimeError):
    pass


class NodeBench:
    """One ``node benchmarks/node/bench.mjs`` process hosting many TinyBase clients."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        #: Called with each unsolicited event line (``{"event": ..., ...}``).
        self.on_event: Callable[[dict[str, Any]], None] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> NodeBench:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH")
        self.proc = await asyncio.create_subprocess_exec(
            node,
            "--expose-gc",
            "--max-old-space-size=8192",
            str(NODE_DRIVER),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            limit=_LINE_LIMIT,
            start_new_session=True,
        )
        _STARTED_GROUPS.add(self.proc.pid)
        self._reader = asyncio.create_task(self._read())
        await self.call("ping", timeout=30)
        return self

    def stderr_tail(self, chars: int = 2000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-chars:]

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    break
                message = json.loads(line)
                if "event" in message:
                    if self.on_event is not None:
                        self.on_event(message)
                    continue
                future = self._pending.pop(message.get("id"), None)
                if future is None or future.done():
                    continue
                if message.get("ok"):
                    future.set_result(message.get("result"))
                else:
                    future.set_exception(NodeError(str(message.get("error"))))
        finally:
            error = NodeError(f"node driver exited; stderr: {self.stderr_tail()}")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            self._pending.clear()

    async def call(self, cmd: str, *, timeout: float = 120.0, **args: Any) -> Any:
        assert self.proc is not None and self.proc.stdin is not None
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self.proc.stdin.write((json.dumps({"id": request_id, "cmd": cmd, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)

    async def close(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call("exit", timeout=10)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        _STARTED_GROUPS.discard(proc.pid)
        if self._reader is not None:
            self._reader.cancel()
            # asyncio.wait: the reader's own end is not raised, but a cancellation of
            # *this* task (Ctrl-C) still is; suppress(CancelledError) would swallow it.
            await asyncio.wait([self._reader])
        self._stderr.close()
        self.proc = None


async def node(ctx: Context, key: str = "node driver") -> NodeBench:
    """The run's shared Node driver (``key`` gives a separate process, e.g. for RSS)."""

    async def start() -> NodeBench:
        bench = NodeBench()
        ctx.on_close(bench.close)
        return await bench.start()

    bench: NodeBench = await ctx.service(key, start)
    return bench


class NodeSeen:
    """Routes the driver's ``seen`` events to futures keyed by ``(client, value)``."""

    def __init__(self, bench: NodeBench) -> None:
        self._waiting: dict[tuple[str, Any], asyncio.Future[int]] = {}
        self._early: dict[tuple[str, Any], int] = {}
        bench.on_event = self._on_event

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") != "seen":
            return
        key = (event["client"], event["value"])
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(int(event["t"]))
        else:
            self._early.setdefault(key, int(event["t"]))

    def expect(self, client: str, value: Any) -> asyncio.Future[int]:
        """A future for when ``client`` sees ``value`` (register before causing it)."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        key = (client, value)
        if key in self._early:
            future.set_result(self._early.pop(key))
        else:
            self._waiting[key] = future
        return future


# -- Python clients ---------------------------------------------------------------------
class PyClient:
    """partywidget's client: ``Store`` + ``PartySocket`` + PartyKit persister, on the
    benchmark's own event loop (as in a notebook, where the kernel's loop runs them)."""

    def __init__(self, host: str, room: str) -> None:
        self.store: Store = create_store()
        self.errors: list[BaseException] = []
        self.socket = PartySocket(
            host, room, min_reconnection_delay=0.05, max_reconnection_delay=0.5
        )
        self.persister: PartyKitPersister = create_partykit_persister(
            self.store, self.socket, {"store_protocol": "http"}, self.errors.append
        )
        self.seen: dict[Any, int] = {}
        self._waiting: dict[Any, asyncio.Future[int]] = {}

    @classmethod
    async def connect(
        cls, host: str, room: str, *, load: bool = True, save: bool = True, timeout: float = 60
    ) -> PyClient:
        client = cls(host, room)
        try:
            await client.socket.wait_open(timeout)
            if load:
                await client.persister.start_auto_load()
            if save:
                await client.persister.start_auto_save()
        except BaseException:
            await client.close()
            raise
        return client

    def watch(self, cell: tuple[str, str, str] = CELL) -> None:
        """Record when each value of ``cell`` is first seen (and wake its waiter)."""

        def on_cell(_store: Any, _t: str, _r: str, _c: str, value: Any, *_rest: Any) -> None:
            t = now_us()
            self.seen.setdefault(value, t)
            future = self._waiting.pop(value, None)
            if future is not None and not future.done():
                future.set_result(t)

        self.store.add_cell_listener(*cell, on_cell)

    def expect(self, value: Any) -> asyncio.Future[int]:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if value in self.seen:
            future.set_result(self.seen[value])
        else:
            self._waiting[value] = future
        return future

    async def wait_for(self, check: Callable[[], bool], timeout: float) -> int:
        """Wait until ``check()`` holds after some transaction; returns when (us)."""
        if check():
            return now_us()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_finish(*_args: Any) -> None:
            if not future.done() and check():
                future.set_result(now_us())

        listener = self.store.add_did_finish_transaction_listener(on_finish)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.store.del_listener(listener)

    def cell_count(self) -> int:
        store = self.store
        return sum(
            len(store.get_cell_ids(t, r))
            for t in store.get_table_ids()
            for r in store.get_row_ids(t)
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.persister.destroy()
        with contextlib.suppress(Exception):
            await self.socket.aclose()
