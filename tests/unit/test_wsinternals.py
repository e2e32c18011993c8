"""What PartySocket relies on beneath websockets' documented API, checked loudly.

If a websockets upgrade fails here, read ``partywidget/partykit/_wsinternals.py``: check
the hooks it names against the new version's source, then widen
``SUPPORTED_VERSIONS``. Until then the socket still works on the stock connection, one
event-loop turn slower per message. Real websockets servers on loopback.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection
from websockets.version import version as websockets_version

from partywidget.partykit import _wsinternals
from partywidget.partykit.socket import MessageEvent, PartySocket
from support.wsserver import ws_server

FAST: dict[str, Any] = {"min_reconnection_delay": 0.01, "max_reconnection_delay": 0.05}


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def test_the_installed_websockets_is_one_the_internals_were_checked_against() -> None:
    low, high = _wsinternals.SUPPORTED_VERSIONS
    assert low <= _wsinternals.WEBSOCKETS_VERSION < high, (
        f"websockets {websockets_version} is outside {low}..{high}: re-check "
        "partywidget/partykit/_wsinternals.py and widen SUPPORTED_VERSIONS"
    )
    assert _wsinternals.missing_hooks() == []
    assert _wsinternals.AVAILABLE
    assert _wsinternals.connection_class() is _wsinternals.DirectClientConnection


async def test_messages_are_delivered_from_the_network_callback() -> None:
    """Direct delivery means the listener runs inside ``data_received``, a plain loop
    callback, not in the task that ``recv()`` would wake a turn later."""
    async with ws_server(echo) as host:
        sock = PartySocket(host, "r", **FAST)
        tasks: list[asyncio.Task[Any] | None] = []
        got: list[Any] = []
        arrived = asyncio.get_running_loop().create_future()

        def on_message(event: MessageEvent) -> None:
            tasks.append(asyncio.current_task())
            got.append(event.data)
            if event.data == "m2":
                arrived.set_result(None)

        sock.add_event_listener("message", on_message)
        await sock.wait_open(timeout=10)
        for i in range(3):
            sock.send(f"m{i}")
        await asyncio.wait_for(arrived, 10)
        assert got == ["m0", "m1", "m2"]
        assert tasks == [None, None, None]
        await sock.aclose()


async def test_the_stock_connection_still_works() -> None:
    """What a websockets version outside the checked range gets: the same behaviour."""
    async with ws_server(echo) as host:
        sock = PartySocket(
            host, "r", connect_kwargs={"create_connection": ClientConnection}, **FAST
        )
        got: list[Any] = []
        done = asyncio.get_running_loop().create_future()

        def on_message(event: MessageEvent) -> None:
            got.append(event.data)
            if len(got) == 50:
                done.set_result(None)

        sock.add_event_listener("message", on_message)
        await sock.wait_open(timeout=10)
        for i in range(50):
            sock.send(f"m{i}" if i % 2 else f"m{i}".encode())
        await asyncio.wait_for(done, 10)
        assert got == [f"m{i}" if i % 2 else f"m{i}".encode() for i in range(50)]
        await sock.aclose()


async def test_write_now_writes_until_flow_control_would_wait() -> None:
    """``write_now`` writes synchronously while the transport's buffer is at or under its
    low-water mark, refuses (writing nothing) above it, and every message it accepted
    arrives once, in order."""
    release = asyncio.Event()
    received: list[str | bytes] = []

    async def slow_reader(ws: ServerConnection) -> None:
        await release.wait()  # read nothing until released: TCP pushes back
        async for message in ws:
            received.append(message)

    chunk = "x" * 65536
    async with ws_server(slow_reader, max_queue=1, max_size=None) as host:
        # No compression: repeated text would shrink to nothing and never push back.
        ws = await connect(
            f"ws://{host}/",
            create_connection=_wsinternals.DirectClientConnection,
            compression=None,
        )
        low, _high = ws.transport.get_write_buffer_limits()
        written = 0
        while _wsinternals.write_now(ws, f"{written:06d}{chunk}"):
            written += 1
            assert written < 2000, "the transport never pushed back"
        assert ws.transport.get_write_buffer_size() > low
        assert written > 0
        release.set()
        # Nothing was written by the refused call: exactly the accepted ones arrive.
        await ws.send("end")
        async with asyncio.timeout(30):
            while not received or received[-1] != "end":
                await asyncio.sleep(0.01)
        assert [m[:6] for m in received[:-1]] == [f"{i:06d}" for i in range(written)]
        assert _wsinternals.write_now(ws, "after")  # the buffer drained: direct again
        await ws.close()


async def test_close_frames_report_both_sides() -> None:
    async def closer(ws: ServerConnection) -> None:
        await ws.close(4001, "bye")

    async with ws_server(closer) as host:
        ws = await connect(f"ws://{host}/", create_connection=_wsinternals.DirectClientConnection)
        await ws.wait_closed()
        rcvd, sent = _wsinternals.close_frames(ws)
        assert rcvd is not None and (rcvd.code, rcvd.reason) == (4001, "bye")
        assert sent is not None and sent.code == 4001  # the echo of the server's frame
