"""A kernel cell that blocks the event loop longer than the keepalive.

In a notebook the client runs on the kernel's loop, so a cell doing ``time.sleep`` (or a
long computation) freezes it: no pongs, no reads. Here the client runs on the test's
loop and ``time.sleep`` blocks it while another client (a raw WebSocket on its own thread,
speaking the real protocol) keeps editing the room. Afterwards our client must notice,
reconnect, resync and end up equal to the server, with the edits it made itself.

The keepalive is shortened through the socket options the persister's PartySocket takes
(``ping_interval``/``ping_timeout``) so that a 2.5 s block exceeds it; the same path with
the widget's default 20 s keepalive and a 60 s block runs with ``PARTYWIDGET_SLOW=1`` and
in CI (``PARTYWIDGET_REQUIRE_ALL=1``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from websockets.sync.client import connect

from partywidget.codec import encode_changes
from partywidget.partykit.socket import PartySocket
from partywidget.server import create_app
from partywidget.server.thread import bind_socket, uvicorn_config
from support.reliability import TIMEOUT, ServerProcess, fetch_content, py_peer
from support.tools import run_slow
from support.waiting import eventually

pytestmark = pytest.mark.timeout(180)


def _edit_from_thread(ws_url: str, edits: int, started: threading.Event) -> threading.Thread:
    """Another client editing the room from its own thread while our loop is blocked."""

    def run() -> None:
        with connect(ws_url, open_timeout=TIMEOUT) as ws:
            started.set()
            for i in range(edits):
                ws.send("s" + encode_changes(({"t": {f"remote{i}": {"c": i}}}, {}, 1)))
                time.sleep(0.02)
            # A probe round trip: our own messages were all handled when it is answered.
            ws.send("s" + encode_changes(({}, {"remote-done": True}, 1)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def _block_and_recover(
    server: Any,
    room: str,
    block: float,
    socket_options: dict[str, Any],
    *,
    must_reconnect: bool = True,
) -> None:
    async with py_peer(server.host, room, socket_options=socket_options) as py:
        py.store.set_cell("t", "before", "c", 0)
        await eventually(py.persister.is_settled, what="settled")
        opens = []
        py.socket.add_event_listener("open", lambda event: opens.append(event))
        started = threading.Event()
        thread = _edit_from_thread(server.ws_url(room, "remote-editor"), 20, started)
        assert await asyncio.to_thread(started.wait, TIMEOUT)
        # The blocking "cell": freezes this loop (and with it our client) entirely. Its
        # edits around the block are written to a socket the server may already have
        # dropped: the client must notice they were lost in flight and re-send them.
        py.store.set_cell("t", "during-cell", "c", "queued")
        time.sleep(block)
        py.store.set_cell("t", "after-cell", "c", "after")
        await asyncio.to_thread(thread.join, TIMEOUT)
        expected_rows: dict[str, Any] = {
            "before": {"c": 0},
            "during-cell": {"c": "queued"},
            "after-cell": {"c": "after"},
            **{f"remote{i}": {"c": i} for i in range(20)},
        }
        if must_reconnect:
            # Once reconnected and resynced, a new edit must arrive.
            await eventually(
                lambda: (
                    py.persister.get_stats()["resyncs"] >= 1
                    and py.persister.is_settled()
                    and py.socket.ready_state == PartySocket.OPEN
                ),
                what="reconnected and resynced",
            )
            py.store.set_cell("t", "after-reconnect", "c", "kept")
            expected_rows["after-reconnect"] = {"c": "kept"}

        async def converged() -> bool:
            if not py.persister.is_settled() or py.socket.ready_state != PartySocket.OPEN:
                return False
            content = await fetch_content(server.store_url(room))
            if content is None or py.store.get_content() != content:
                return False
            return content[0] == {"t": expected_rows} and content[1] == {"remote-done": True}

        try:
            await eventually(converged, what="converged after the block")
        except AssertionError as error:
            content = await fetch_content(server.store_url(room))
            raise AssertionError(
                f"{error}: server={content} client={py.store.get_content()} "
                f"settled={py.persister.is_settled()} state={py.socket.ready_state} "
                f"stats={py.persister.get_stats()} errors={py.errors[:3]} opens={len(opens)}"
            ) from None
        if must_reconnect:
            # It did lose the connection (keepalive exceeded) and recovered by resyncing.
            assert py.persister.get_stats()["resyncs"] >= 1


class _KeepaliveServer:
    """Our server on real uvicorn (a thread) with a short *server-side* keepalive, so a
    client that stops answering pings is disconnected by the server, as a long-blocked
    kernel is by any server after ~40 s with uvicorn's defaults."""

    def __init__(self, interval: float) -> None:
        app = create_app()
        self._sock = bind_socket("127.0.0.1", 0)
        self.port = self._sock.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        config = uvicorn_config(app, ws_ping_interval=interval, ws_ping_timeout=interval)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self._sock])), daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + TIMEOUT
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)

    def store_url(self, room: str) -> str:
        return f"http://{self.host}/parties/main/{room}/store"

    def ws_url(self, room: str, pk: str) -> str:
        return f"ws://{self.host}/parties/main/{room}?_pk={pk}"

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(TIMEOUT)
        self._sock.close()


async def test_blocked_loop_beyond_server_keepalive_reconnects_and_resyncs(room: str) -> None:
    """The server drops the frozen client (no pongs); after the block the client finds
    its connection gone, reconnects and resyncs what it missed."""
    server = _KeepaliveServer(0.3)
    try:
        await _block_and_recover(
            server, room, block=2.5, socket_options={"ping_interval": 0.3, "ping_timeout": 0.3}
        )
    finally:
        server.stop()


async def test_blocked_loop_beyond_client_keepalive_converges(
    server_process: Callable[..., ServerProcess], room: str
) -> None:
    """Against ``partywidget serve`` (20 s server keepalive) a 2.5 s freeze beyond the
    client's own 0.3 s keepalive: whether the client reconnects or finds everything
    buffered, it converges with every edit."""
    server = server_process()
    await _block_and_recover(
        server,
        room,
        block=2.5,
        socket_options={"ping_interval": 0.3, "ping_timeout": 0.3},
        must_reconnect=False,
    )
    assert "Traceback" not in server.log_text(), server.log_tail()


@pytest.mark.skipif(not run_slow(), reason="a minute long: PARTYWIDGET_SLOW=1 runs it")
async def test_blocked_loop_for_60s_with_default_keepalive(
    server_process: Callable[..., ServerProcess], room: str
) -> None:
    """The scenario users hit: default keepalive (20 s), a cell blocking the loop for 60 s."""
    server = server_process()
    await _block_and_recover(server, room, block=60.0, socket_options={})


async def test_widget_in_a_blocked_kernel_reconnects_and_resyncs(room: str) -> None:
    """The same with the widget itself, attached to this loop as it is to a kernel's."""
    from partywidget.widget import PartyStoreWidget

    server = _KeepaliveServer(0.3)
    w = PartyStoreWidget(
        room,
        server.host,
        config={"store_protocol": "http", "resync": {"quiet_period": 0.2}},
        socket_options={
            "ping_interval": 0.3,
            "ping_timeout": 0.3,
            "min_reconnection_delay": 0.05,
            "max_reconnection_delay": 0.3,
        },
    )
    try:
        assert w._runner.loop is asyncio.get_running_loop()
        await w.ready(timeout=TIMEOUT)
        w.set_cell("t", "before", "c", 0)
        await eventually(
            lambda: w.persister.get_status() == 0 and not w.persister.has_pending_changes()
        )
        started = threading.Event()
        thread = _edit_from_thread(server.ws_url(room, "remote-editor"), 20, started)
        assert await asyncio.to_thread(started.wait, TIMEOUT)
        time.sleep(2.5)  # the blocking cell
        w.set_cell("t", "after-cell", "c", "after")  # written into a dead connection
        await asyncio.to_thread(thread.join, TIMEOUT)
        await eventually(
            lambda: w.persister.get_stats()["resyncs"] >= 1 and w.status == "connected",
            what="the widget reconnected and resynced",
        )
        await eventually(lambda: not w.persister.has_pending_changes())
        w.set_cell("t", "after-reconnect", "c", "kept")
        expected = {
            "before": {"c": 0},
            "after-reconnect": {"c": "kept"},
            "after-cell": {"c": "after"},
            **{f"remote{i}": {"c": i} for i in range(20)},
        }

        async def converged() -> bool:
            content = await fetch_content(server.store_url(room))
            if content is None or w.store.get_content() != content or w.status != "connected":
                return False
            return bool(content[0] == {"t": expected})

        await eventually(converged, what="widget converged after the block")
        assert w.persister.get_stats()["resyncs"] >= 1
    finally:
        w.close()
        server.stop()
