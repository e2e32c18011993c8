"""Reconnects: our client converges and keeps its offline edits; the reference does not.

Real servers (ours on uvicorn, and ``partykit dev`` with TinyBase's server), real TinyBase
clients in Node, and a loopback TCP proxy (``support.proxy.TcpProxy``) between a client
and the server to cut its connection at a moment the test chooses. The same cut is
applied to our Python client and to a reference TinyBase client, while another TinyBase
client keeps editing the room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from test_partykit_client import (
    NODE_FAST_SOCKET,
    get_store,
    new_room,
    partykit_server,
    peers,
    py_client,
    python_server,
    server,
    store_url,
    wait_until,
)

from partywidget.partykit.socket import PartySocket
from support.node import NodePeers, js_equal
from support.proxy import TcpProxy

__all__ = ["partykit_server", "peers", "python_server", "server"]  # fixtures re-used

pytestmark = [pytest.mark.node, pytest.mark.timeout(120)]

RESYNC = {"resync": {"quiet_period": 0.2}}


def split_host(host: str) -> tuple[str, int]:
    name, port = host.rsplit(":", 1)
    return name, int(port)


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Poll an async condition until it holds."""
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.05)


async def test_cut_connection_converges_and_keeps_offline_edits(
    server: Any, peers: NodePeers
) -> None:
    room = new_room("cut")
    url = store_url(server, room)
    await peers.connect("editor", host=server.host, room=room)
    await peers.call("editor", "setRow", "t", "base", {"c": 0})
    with (
        TcpProxy(*split_host(server.host)) as py_proxy,
        TcpProxy(*split_host(server.host)) as ref_proxy,
    ):
        await peers.connect("ref", host=ref_proxy.host, room=room, socket_options=NODE_FAST_SOCKET)
        async with py_client(py_proxy.host, room, RESYNC) as py:
            assert py.store.get_row("t", "base") == {"c": 0}
            await peers.wait_for_content("ref", py.store.get_content())

            # Cut both clients off and keep them off.
            for proxy in (py_proxy, ref_proxy):
                proxy.refuse(True)
                proxy.drop_all()
            await wait_until(lambda: py.socket.ready_state != PartySocket.OPEN)
            await peers.wait_for_socket("ref", closes=1)

            # The room moves on without them...
            for i in range(5):
                await peers.call("editor", "setCell", "t", f"e{i}", "c", i)
            await peers.call("editor", "setValue", "shared", "editor")
            await peers.call("editor", "delRow", "t", "base")
            # ...and both edit offline.
            py.store.set_cell("t", "py-offline", "c", "py")
            py.store.set_value("shared", "python")  # later than the editor's: must win
            await peers.call("ref", "setCell", "t", "ref-offline", "c", "ref")

            # Reconnect over a slow link while the editor keeps editing, so that
            # broadcasts arrive while our reload (GET) is in flight.
            py_proxy.set_delay(0.05)
            for proxy in (py_proxy, ref_proxy):
                proxy.refuse(False)
            live = 0
            while live < 10 or py.persister.get_stats()["resyncs"] == 0:
                await peers.call("editor", "setCell", "t", f"live{live}", "c", live)
                live += 1
                await asyncio.sleep(0.01)
                assert live < 2000, "our client never reloaded"
            await peers.wait_for_socket("ref", opens=2, timeout=30)

            expected_tables = {
                "t": {
                    **{f"e{i}": {"c": i} for i in range(5)},
                    **{f"live{i}": {"c": i} for i in range(live)},
                    "py-offline": {"c": "py"},
                    "ref-offline": {"c": "ref"},
                }
            }
            expected = (expected_tables, {"shared": "python"})

            async def python_converged() -> bool:
                if not py.persister.is_settled():
                    return False
                _, content = await get_store(url)
                return js_equal(content, py.store.get_content()) and js_equal(content, expected)

            await eventually(python_converged)
            await peers.wait_for_content("editor", expected)

            # The reference client is connected again and receives new broadcasts...
            await peers.call("editor", "setCell", "t", "after", "c", "after")
            await wait_until(lambda: py.store.get_cell("t", "after", "c") == "after")
            ref_content = await peers.content("ref")
            for _ in range(200):
                if ref_content[0].get("t", {}).get("after") == {"c": "after"}:
                    break
                await asyncio.sleep(0.05)
                ref_content = await peers.content("ref")
            assert ref_content[0]["t"]["after"] == {"c": "after"}
            # ...but never reloads: what happened while it was offline is lost for it.
            _, server_content = await get_store(url)
            assert js_equal(server_content, py.store.get_content())
            assert not js_equal(ref_content, server_content)
            assert "e0" not in ref_content[0]["t"]
            assert ref_content[0]["t"].get("base") == {"c": 0}
            assert py.errors == []
            stats = py.persister.get_stats()
            assert stats["resyncs"] >= 1 and stats["verifies"] >= 1


async def test_reference_mode_does_not_resync(python_server: Any, peers: NodePeers) -> None:
    """With ``resync=False`` our client behaves like the reference (and diverges)."""
    room = new_room("noresync")
    await peers.connect("editor", host=python_server.host, room=room)
    with TcpProxy(*split_host(python_server.host)) as proxy:
        async with py_client(proxy.host, room, {"resync": False}) as py:
            await wait_until(py.persister.is_settled)
            proxy.refuse(True)
            proxy.drop_all()
            await wait_until(lambda: py.socket.ready_state != PartySocket.OPEN)
            await peers.call("editor", "setCell", "t", "missed", "c", 1)
            py.store.set_cell("t", "offline", "c", 2)
            proxy.refuse(False)
            await wait_until(lambda: py.socket.ready_state == PartySocket.OPEN)
            await peers.wait_for_content(
                "editor", ({"t": {"missed": {"c": 1}, "offline": {"c": 2}}}, {})
            )
            await peers.call("editor", "setCell", "t", "after", "c", 3)
            await wait_until(lambda: py.store.get_cell("t", "after", "c") == 3)
            assert py.store.get_row("t", "missed") == {}


async def test_crossed_edits_converge_once_quiet(server: Any, peers: NodePeers) -> None:
    """Two clients editing the same value at once: broadcasts cross, each would keep the
    other's value; verification once quiet brings both back to the server's."""
    room = new_room("crossed")
    url = store_url(server, room)
    async with (
        py_client(server.host, room, RESYNC) as a,
        py_client(server.host, room, RESYNC) as b,
    ):
        for i in range(30):
            a.store.set_value("x", f"a{i}")
            b.store.set_value("x", f"b{i}")
            await asyncio.sleep(0.002)

        async def converged() -> bool:
            if not (a.persister.is_settled() and b.persister.is_settled()):
                return False
            _, content = await get_store(url)
            return js_equal(content, a.store.get_content()) and js_equal(
                content, b.store.get_content()
            )

        await eventually(converged)
        assert a.errors == b.errors == []


async def test_room_that_lost_its_store_is_reinitialised(peers: NodePeers) -> None:
    """A memory-only server restarts empty: the resync PUTs our content back."""
    from partywidget.server import run_in_thread

    room = new_room("lost")
    first = run_in_thread()
    host = first.host
    port = first.port
    try:
        async with py_client(host, room, RESYNC) as py:
            py.store.set_cell("t", "r", "c", "kept")
            await wait_until(py.persister.is_settled)
            first.stop()
            await wait_until(lambda: py.socket.ready_state != PartySocket.OPEN)
            second = run_in_thread(port=port)
            try:
                url = store_url(second, room)

                async def restored() -> bool:
                    if not py.persister.is_settled() or py.socket.ready_state != PartySocket.OPEN:
                        return False
                    _, content = await get_store(url)
                    return js_equal(content, ({"t": {"r": {"c": "kept"}}}, {}))

                await eventually(restored)
                await peers.connect("late", host=host, room=room)
                await peers.wait_for_content("late", ({"t": {"r": {"c": "kept"}}}, {}))
            finally:
                second.stop()
    finally:
        first.stop()
