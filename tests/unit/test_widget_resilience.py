"""A widget whose event loop is blocked (a long cell, a long callback) recovers by itself.

Real parts only: uvicorn room servers on loopback with a short WebSocket keepalive (so
the server drops a client whose loop stops answering pings, as a production server does
after its longer keepalive), real PartySockets, and for the kernel case a real ipykernel
(the venv's ``python3`` kernel, through jupyter_client) running the widget on the
kernel's own loop while a cell blocks it with ``time.sleep``. Everything is asserted on
state: the dropped connection is seen by the server, then the blocked widget is back to
``connected``, has resynced, and holds exactly what the server holds - including the
other client's edits made while it was blocked and its own edit made just before.

Also here: ``flush``, ``until``, ``server_content`` and their ``wait_*`` twins, and a prompt
``close()`` of a widget that never connected.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import pathlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from partywidget.partykit.socket import CLOSED
from partywidget.server import ServerThread
from partywidget.widget import PartyStoreWidget
from support.waiting import wait_for
from support.widget import KeepaliveServer, LoopThread, install

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: Client side keepalive and a quick reconnect: the knobs ``socket_options`` exposes.
FAST = {"ping_interval": 0.3, "ping_timeout": 0.3, "min_reconnection_delay": 0.2}


@pytest.fixture
def keepalive_server() -> Iterator[KeepaliveServer]:
    server = KeepaliveServer()
    yield server
    server.stop()


@pytest.fixture
def peer_loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


def test_socket_options_reach_the_socket(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch)
    w = PartyStoreWidget("opts", server.host, socket_options=FAST)
    try:
        options = w.socket.party_socket_options
        assert (options["ping_interval"], options["ping_timeout"]) == (0.3, 0.3)
        assert options["min_reconnection_delay"] == 0.2
        w.wait_ready(30)
    finally:
        w.close()
    with pytest.raises(ValueError, match="room"):
        PartyStoreWidget("opts", server.host, socket_options={"room": "other"})
    # (an unknown keyword to PartySocket, or an unknown field of its options dataclass)
    with pytest.raises((TypeError, ValueError), match="no_such_option"):
        PartyStoreWidget("opts", server.host, socket_options={"no_such_option": 1})


def test_blocked_background_loop_reconnects_and_resyncs(
    keepalive_server: KeepaliveServer, peer_loop: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch)
    room = "blocked-daemon-loop"
    w = PartyStoreWidget(room, keepalive_server.host, socket_options=FAST)
    # The peer runs on its own loop: every background-mode widget shares the daemon loop
    # we are about to block.
    peer = peer_loop.make(lambda: PartyStoreWidget(room, keepalive_server.host))
    try:
        assert not w._runner.attached and peer._runner.loop is peer_loop.loop
        w.wait_ready(30)
        peer.wait_ready(30)
        w.set_table("t", {"a": {"n": 1}})
        peer.wait_until(lambda: peer.get_cell("t", "a", "n") == 1)
        resyncs = w.persister.get_stats()["resyncs"]
        my_id = w.socket.id
        assert my_id in keepalive_server.connection_ids(room)

        released = threading.Event()

        def edit_then_block() -> None:
            # runs on the daemon loop: a local edit, then the loop is stuck
            w.store.set_cell("t", "mine", "n", 10)
            released.wait(120)

        w._runner.loop.call_soon_threadsafe(edit_then_block)
        try:
            wait_for(
                lambda: my_id not in keepalive_server.connection_ids(room),
                60,
                "the server to drop the blocked client",
            )
            # ... and blocked for longer than the client's keepalive allows (the heartbeat
            # that measures it is stuck too; loop.time() is time.monotonic())
            watch, limit = w._watch, w._stall_limit
            assert watch is not None and limit is not None
            wait_for(
                lambda: time.monotonic() - watch.last_beat > limit + 2 * watch.INTERVAL,
                60,
                "a block longer than the keepalive",
            )
            peer.set_cell("t", "a", "n", 2)
            peer.set_value("note", "edited while blocked")
            peer.wait_flush(30)  # the server holds the peer's edits
        finally:
            released.set()

        w.wait_until(
            lambda: w.status == "connected" and w.persister.get_stats()["resyncs"] > resyncs,
            60,
        )
        w.wait_flush(60)  # handed over and confirmed by a GET equal to local
        tables, values = w.wait_server_content()
        assert (tables, values) == w.get_content()
        assert tables == {"t": {"a": {"n": 2}, "mine": {"n": 10}}}
        assert values == {"note": "edited while blocked"}
        assert w.stats["stall_reconnects"] == 1
        peer.wait_until(lambda: peer.get_cell("t", "mine", "n") == 10)
    finally:
        peer.close()
        w.close()


# --------------------------------------------------------------------------------------
# a real kernel
# --------------------------------------------------------------------------------------


class Kernel:
    """The venv's python3 kernel with ``src/`` importable; runs cells, returns stdout."""

    def __init__(self) -> None:
        from jupyter_client.manager import start_new_kernel

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
        )
        env.pop("PARTYWIDGET_HOST", None)
        self.manager, self.client = start_new_kernel(
            kernel_name="python3", startup_timeout=60, env=env
        )

    def run(self, code: str, timeout: float = 120) -> str:
        out: list[str] = []
        errors: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                out.append(content["text"])
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=hook)
        if reply["content"]["status"] != "ok" or errors:
            raise AssertionError(f"kernel cell failed:\n{code}\n{''.join(errors)}")
        return "".join(out)

    def json(self, code: str, timeout: float = 120) -> Any:
        lines = [ln for ln in self.run(code, timeout).splitlines() if ln.startswith("@@")]
        assert len(lines) == 1, lines
        return json.loads(lines[0][2:])

    def stop(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    k = Kernel()
    yield k
    k.stop()


def test_blocking_cell_in_a_real_kernel_ends_in_reconnect_and_resync(
    kernel: Kernel,
    keepalive_server: KeepaliveServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install(monkeypatch)
    room = "blocked-kernel"
    flag = tmp_path / "release"
    peer = PartyStoreWidget(room, keepalive_server.host)
    try:
        peer.wait_ready(30)
        peer.set_table("t", {"a": {"n": 1}})
        peer.wait_flush(30)
        state = kernel.json(
            "import json, os, time\n"
            "from partywidget import PartyStoreWidget\n"
            f"w = PartyStoreWidget({room!r}, {keepalive_server.host!r}, socket_options={FAST!r})\n"
            "await w.ready(timeout=60)\n"
            "await w.until(lambda: w.get_cell('t', 'a', 'n') == 1, 60)\n"
            "print('@@' + json.dumps({'attached': w._runner.attached, 'id': w.socket.id,"
            " 'resyncs': w.persister.get_stats()['resyncs']}))"
        )
        assert state["attached"]  # the widget lives on the kernel's own loop
        assert state["id"] in keepalive_server.connection_ids(room)

        # A cell that blocks the kernel's loop (time.sleep) until we release it, with a
        # local edit just before: the edit's message can only leave after the cell.
        blocking = (
            "w.set_cell('t', 'mine', 'n', 10)\n"
            "t0 = time.monotonic()\n"
            # at least 4x the client's ping timeout, and until the test releases it
            f"while not os.path.exists({str(flag)!r}) or time.monotonic() - t0 < 2:\n"
            "    time.sleep(0.05)\n"
            "print('released')"
        )
        result: dict[str, Any] = {}
        cell = threading.Thread(target=lambda: result.update(out=kernel.run(blocking)))
        cell.start()
        try:
            wait_for(
                lambda: state["id"] not in keepalive_server.connection_ids(room),
                60,
                "the server to drop the blocked kernel's socket",
            )
            peer.set_cell("t", "a", "n", 2)
            peer.set_value("note", "edited while the kernel was blocked")
            peer.wait_flush(30)
        finally:
            flag.write_text("go")
            cell.join(120)
        assert result.get("out", "").strip() == "released"

        after = kernel.json(
            "await w.until(lambda: w.status == 'connected' and "
            f"w.persister.get_stats()['resyncs'] > {state['resyncs']}, 60)\n"
            "await w.flush(60)\n"
            "server = await w.server_content()\n"
            "print('@@' + json.dumps({'status': w.status, 'local': w.get_content(),"
            " 'stall_reconnects': w.stats['stall_reconnects'],"
            " 'server': server, 'equal': tuple(server) == w.get_content()}))"
        )
        assert after["status"] == "connected"
        assert after["stall_reconnects"] == 1
        assert after["equal"], after
        assert after["local"] == [
            {"t": {"a": {"n": 2}, "mine": {"n": 10}}},
            {"note": "edited while the kernel was blocked"},
        ]
        peer.wait_until(lambda: peer.get_cell("t", "mine", "n") == 10)
    finally:
        peer.close()


# --------------------------------------------------------------------------------------
# flush, until, close
# --------------------------------------------------------------------------------------


def test_flush_until_and_server_content_in_background_mode(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch)
    a = PartyStoreWidget("flush-bg", server.host)
    b = PartyStoreWidget("flush-bg", server.host)
    try:
        a.wait_ready(30)
        b.wait_ready(30)
        a.set_table("t", {f"r{i}": {"n": i} for i in range(500)})
        assert a.wait_flush(30) is a
        # confirmed: the server holds it now, without waiting for anything else
        assert a.wait_server_content()[0]["t"]["r499"] == {"n": 499}
        assert b.wait_until(lambda: b.get_cell("t", "r499", "n"), 30) == 499
        assert b.wait_until(lambda: "found", 1) == "found"  # returns the predicate's value
        # the coroutines work from another loop than the widget's (here: asyncio.run in
        # the test's thread, the widget on its daemon loop)
        a.set_cell("t", "r0", "n", -5)
        assert asyncio.run(a.flush(30)) is a
        assert asyncio.run(a.server_content())[0]["t"]["r0"] == {"n": -5}
        assert asyncio.run(b.until(lambda: b.get_cell("t", "r0", "n") == -5, 30)) is True
        with pytest.raises(TimeoutError):
            b.wait_until(lambda: b.get_cell("t", "r0", "n") == -1, 0.5)
        # an unblocked loop never triggers the stall guard's reconnect
        assert a.stats["stall_reconnects"] == b.stats["stall_reconnects"] == 0
        assert a.persister.get_stats()["resyncs"] == 0
    finally:
        a.close()
        b.close()
    with pytest.raises(RuntimeError, match="closed"):
        a.wait_until(lambda: False, 5)


async def test_flush_and_until_are_awaitable_on_the_loop(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in a kernel: on the widget's own loop they must be awaited (blocking would
    freeze the loop that does the work)."""
    install(monkeypatch)
    a = PartyStoreWidget("flush-attached", server.host)
    b = PartyStoreWidget("flush-attached", server.host)
    try:
        assert a._runner.attached
        await a.ready(30)
        await b.ready(30)
        a.set_cell("t", "r", "c", "x")
        assert await a.flush(30) is a
        assert (await a.server_content())[0] == {"t": {"r": {"c": "x"}}}
        assert await b.until(lambda: b.get_cell("t", "r", "c"), 30) == "x"
        # the blocking twins refuse to freeze the loop they would wait for
        for blocking in (b.wait_ready, b.wait_flush, b.wait_server_content):
            with pytest.raises(RuntimeError, match="await"):
                blocking()
        with pytest.raises(RuntimeError, match="await"):
            b.wait_until(lambda: True)
        with pytest.raises(TimeoutError):
            await b.until(lambda: False, 0.3)
    finally:
        a.close()
        b.close()
        await asyncio.sleep(0)  # let the spawned closes start


def test_waiting_methods_are_coroutines_with_blocking_twins() -> None:
    """One rule: never a return type that depends on the calling thread."""
    for name in ("ready", "until", "flush", "server_content"):
        assert inspect.iscoroutinefunction(getattr(PartyStoreWidget, name)), name
        twin = getattr(PartyStoreWidget, f"wait_{name}")
        assert not inspect.iscoroutinefunction(twin), name
        assert list(inspect.signature(twin).parameters) == list(
            inspect.signature(getattr(PartyStoreWidget, name)).parameters
        )


def test_flush_waits_for_a_socket_that_is_not_open(
    monkeypatch: pytest.MonkeyPatch, port: int
) -> None:
    install(monkeypatch)
    w = PartyStoreWidget("nobody", f"127.0.0.1:{port}")  # nothing listens there
    try:
        w.set_cell("t", "r", "c", 1)
        with pytest.raises(TimeoutError):
            w.wait_flush(1)
    finally:
        w.close()


def test_close_of_a_never_connected_widget_finishes_its_shutdown(
    monkeypatch: pytest.MonkeyPatch, port: int
) -> None:
    """The initial load waits up to ``open_timeout`` for the socket; close() must not."""
    install(monkeypatch)
    w = PartyStoreWidget(
        "nobody",
        f"127.0.0.1:{port}",
        config={"store_protocol": "http", "resync": {"open_timeout": 3600}},
    )
    wait_for(lambda: w.status in ("error", "offline"), what="a failed attempt")
    w.close()
    # everything was wound down by the time close() returned (before: close() gave up
    # after 10 s with the persister still waiting an hour for the socket to open)
    assert w.socket.ready_state == CLOSED
    destroying = w.persister._destroying
    assert destroying is not None and destroying.done()
    assert w.status == "offline"
