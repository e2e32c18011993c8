"""Reconnects: our client converges and keeps its offline edits; the reference does not.

Real servers (ours on uvicorn, and ``partykit dev`` with TinyBase's server), real TinyBase
clients in Node, and a loopback TCP proxy (``support.proxy.TcpProxy``) between a client
and the server to cut its connection at a moment the test chooses. The same cut is
applied to our Python client and to a reference TinyBase client, while another TinyBase
client keeps editing the room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from partywidget.partykit.socket import PartySocket
from partywidget.server import ServerThread
from support.clients import NODE_FAST_SOCKET, RoomServer, get_store, new_room, py_client, store_url
from support.evil_room import EvilRoom
from support.node import NodePeers, js_equal
from support.proxy import TcpProxy
from support.waiting import eventually

pytestmark = [pytest.mark.node, pytest.mark.timeout(120)]

RESYNC = {"resync": {"quiet_period": 0.2}}


def split_host(host: str) -> tuple[str, int]:
    name, port = host.rsplit(":", 1)
    return name, int(port)


async def test_cut_connection_converges_and_keeps_offline_edits(
    each_server: RoomServer, node_peers: NodePeers
) -> None:
    room = new_room("cut")
    url = store_url(each_server, room)
    await node_peers.connect("editor", host=each_server.host, room=room)
    await node_peers.call("editor", "setRow", "t", "base", {"c": 0})
    with (
        TcpProxy(*split_host(each_server.host)) as py_proxy,
        TcpProxy(*split_host(each_server.host)) as ref_proxy,
    ):
        await node_peers.connect(
            "ref", host=ref_proxy.host, room=room, socket_options=NODE_FAST_SOCKET
        )
        async with py_client(py_proxy.host, room, RESYNC) as py:
            assert py.store.get_row("t", "base") == {"c": 0}
            await node_peers.wait_for_content("ref", py.store.get_content())

            # Cut both clients off and keep them off.
            for proxy in (py_proxy, ref_proxy):
                proxy.refuse(True)
                proxy.drop_all()
            await eventually(lambda: py.socket.ready_state != PartySocket.OPEN)
            await node_peers.wait_for_socket("ref", closes=1)

            # The room moves on without them...
            for i in range(5):
                await node_peers.call("editor", "setCell", "t", f"e{i}", "c", i)
            await node_peers.call("editor", "setValue", "shared", "editor")
            await node_peers.call("editor", "delRow", "t", "base")

            async def room_moved_on() -> bool:
                # The server holds all of it before anyone may reconnect (a loaded
                # server may still be applying the editor's messages).
                _, content = await get_store(url)
                table = content[0].get("t", {})
                return (
                    all(f"e{i}" in table for i in range(5))
                    and "base" not in table
                    and content[1].get("shared") == "editor"
                )

            await eventually(room_moved_on, what="the room applied the editor's edits")
            # ...and both edit offline.
            py.store.set_cell("t", "py-offline", "c", "py")
            py.store.set_value("shared", "python")  # later than the editor's: must win
            await node_peers.call("ref", "setCell", "t", "ref-offline", "c", "ref")

            # Reconnect over a slow link while the editor keeps editing, so that
            # broadcasts arrive while our reload (GET) is in flight.
            py_proxy.set_delay(0.05)
            for proxy in (py_proxy, ref_proxy):
                proxy.refuse(False)
            live = 0
            while live < 10 or py.persister.get_stats()["resyncs"] == 0:
                await node_peers.call("editor", "setCell", "t", f"live{live}", "c", live)
                live += 1
                await asyncio.sleep(0.01)
                assert live < 2000, "our client never reloaded"
            await node_peers.wait_for_socket("ref", opens=2, timeout=30)

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
            await node_peers.wait_for_content("editor", expected)

            # The reference client is connected again and receives new broadcasts...
            await node_peers.call("editor", "setCell", "t", "after", "c", "after")
            await eventually(lambda: py.store.get_cell("t", "after", "c") == "after")
            ref_content = await node_peers.content("ref")
            for _ in range(200):
                if ref_content[0].get("t", {}).get("after") == {"c": "after"}:
                    break
                await asyncio.sleep(0.05)
                ref_content = await node_peers.content("ref")
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


async def test_reference_mode_does_not_resync(server: ServerThread, node_peers: NodePeers) -> None:
    """With ``resync=False`` our client behaves like the reference (and diverges)."""
    room = new_room("noresync")
    await node_peers.connect("editor", host=server.host, room=room)
    with TcpProxy(*split_host(server.host)) as proxy:
        async with py_client(proxy.host, room, {"resync": False}) as py:
            await eventually(py.persister.is_settled)
            proxy.refuse(True)
            proxy.drop_all()
            await eventually(lambda: py.socket.ready_state != PartySocket.OPEN)
            await node_peers.call("editor", "setCell", "t", "missed", "c", 1)
            py.store.set_cell("t", "offline", "c", 2)
            proxy.refuse(False)
            await eventually(lambda: py.socket.ready_state == PartySocket.OPEN)
            await node_peers.wait_for_content(
                "editor", ({"t": {"missed": {"c": 1}, "offline": {"c": 2}}}, {})
            )
            await node_peers.call("editor", "setCell", "t", "after", "c", 3)
            await eventually(lambda: py.store.get_cell("t", "after", "c") == 3)
            assert py.store.get_row("t", "missed") == {}


async def test_crossed_edits_converge_once_quiet(
    each_server: RoomServer, node_peers: NodePeers
) -> None:
    """Two clients editing the same value at once: broadcasts cross, each would keep the
    other's value; verification once quiet brings both back to the server's."""
    room = new_room("crossed")
    url = store_url(each_server, room)
    async with (
        py_client(each_server.host, room, RESYNC) as a,
        py_client(each_server.host, room, RESYNC) as b,
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


async def test_room_that_lost_its_store_is_reinitialised(node_peers: NodePeers) -> None:
    """A memory-only server restarts empty: the resync PUTs our content back."""
    from partywidget.server import run_in_thread

    room = new_room("lost")
    first = run_in_thread()
    host = first.host
    port = first.port
    try:
        async with py_client(host, room, RESYNC) as py:
            py.store.set_cell("t", "r", "c", "kept")
            await eventually(py.persister.is_settled)
            first.stop()
            await eventually(lambda: py.socket.ready_state != PartySocket.OPEN)
            second = run_in_thread(port=port)
            try:
                url = store_url(second, room)

                async def restored() -> bool:
                    if not py.persister.is_settled() or py.socket.ready_state != PartySocket.OPEN:
                        return False
                    _, content = await get_store(url)
                    return js_equal(content, ({"t": {"r": {"c": "kept"}}}, {}))

                await eventually(restored)
                await node_peers.connect("late", host=host, room=room)
                await node_peers.wait_for_content("late", ({"t": {"r": {"c": "kept"}}}, {}))
            finally:
                second.stop()
    finally:
        first.stop()


# -- edits lost in flight ---------------------------------------------------------------------
async def _black_hole_an_edit(py: Any, proxy: TcpProxy, edit: Callable[[], Any]) -> None:
    """Make ``edit`` while the link silently drops every byte; return once it is written.

    The socket stays OPEN the whole time, so the persister writes the message into the
    connection (no error, nothing queued): exactly what a killed server, a cut network
    or a loop blocked past the keepalive do to an edit. The caller cuts the link after.
    """
    await eventually(py.persister.is_settled, what="settled before the fault")
    proxy.pause(discard=True)
    sent = py.persister.messages_sent
    edit()
    await eventually(lambda: py.persister.messages_sent > sent, what="edit written")
    assert py.socket.ready_state == PartySocket.OPEN
    assert not py.persister.has_pending_changes()


async def _converged(url: str, *clients: Any) -> Any:
    """Poll until every client is open, settled and equal to the server; return it."""
    result: list[Any] = []

    async def check() -> bool:
        if not all(
            c.persister.is_settled() and c.socket.ready_state == PartySocket.OPEN for c in clients
        ):
            return False
        _, content = await get_store(url)
        result[:] = [content]
        return all(js_equal(content, c.store.get_content()) for c in clients)

    await eventually(check)
    return result[0]


async def test_edit_written_into_a_dead_connection_is_resent(server: ServerThread) -> None:
    """The edit went into a connection that was already dead: after the reconnect the
    persister finds it missing on the server and sends it again (without the fix,
    ``confirm=False``, it is lost everywhere, its writer included)."""
    room = new_room("inflight")
    url = store_url(server, room)
    with TcpProxy(*split_host(server.host)) as proxy:
        async with (
            py_client(proxy.host, room, RESYNC) as py,
            py_client(server.host, room, RESYNC) as other,
        ):
            py.store.set_row("t", "r", {"before": 1, "gone": "x"})
            py.store.set_value("v", "before")
            await eventually(lambda: other.store.get_cell("t", "r", "gone") == "x")

            def edit() -> None:
                with py.store.transaction():
                    py.store.set_cell("t", "r", "in-flight", 2)
                    py.store.del_cell("t", "r", "gone")
                    py.store.set_value("v", "in-flight")

            await _black_hole_an_edit(py, proxy, edit)
            proxy.drop_all()
            proxy.resume()

            content = await _converged(url, py, other)
            assert content == ({"t": {"r": {"before": 1, "in-flight": 2}}}, {"v": "in-flight"})
            assert py.persister.get_stats()["recovered"] == 1
            assert py.errors == other.errors == []


async def test_lost_edit_does_not_overwrite_a_newer_one(server: ServerThread) -> None:
    """Our edit is lost in flight; another client then sets the same cell (its broadcast
    to us is lost too). The server's value is newer than ours: it must survive the
    reconnect, and we must adopt it. An unrelated lost cell is still re-sent."""
    room = new_room("inflight-conflict")
    url = store_url(server, room)
    with TcpProxy(*split_host(server.host)) as proxy:
        async with (
            py_client(proxy.host, room, RESYNC) as py,
            py_client(server.host, room, RESYNC) as other,
        ):
            py.store.set_row("t", "r", {"c": "base", "d": "base"})
            py.store.set_row("t", "gone", {"c": 1})
            await eventually(lambda: other.store.get_cell("t", "gone", "c") == 1)

            def edit() -> None:
                with py.store.transaction():
                    py.store.set_cell("t", "r", "c", "mine")
                    py.store.set_cell("t", "r", "d", "mine")
                    py.store.del_row("t", "gone")

            await _black_hole_an_edit(py, proxy, edit)
            # Later, another client writes the same cell and into the row we deleted.
            other.store.set_cell("t", "r", "c", "theirs")
            other.store.set_cell("t", "gone", "new", 2)

            async def server_has_theirs() -> bool:
                _, content = await get_store(url)
                return content is not None and content[0]["t"]["gone"].get("new") == 2

            await eventually(server_has_theirs)
            resyncs = py.persister.get_stats()["resyncs"]
            proxy.drop_all()
            proxy.resume()
            await eventually(lambda: py.persister.get_stats()["resyncs"] > resyncs)

            content = await _converged(url, py, other)
            assert content == (
                {"t": {"r": {"c": "theirs", "d": "mine"}, "gone": {"c": 1, "new": 2}}},
                {},
            )
            assert py.errors == other.errors == []


async def test_sent_edit_the_server_silently_drops_is_given_up_after_one_reconnect(
    evil: tuple[EvilRoom, ServerThread],
) -> None:
    """A verification finds a sent edit missing while the socket looks open: presumed
    swallowed by a dead connection, the client reconnects and re-sends it once. A server
    that silently drops it again (here one that ignores every message; TinyBase's
    refusing a ``canSetCell``) is then believed: the client reports it and adopts the
    server's content rather than reconnecting forever."""
    room, server = evil
    url = store_url(server, "dropping")
    config = {"resync": {"quiet_period": 0.2, "confirm_after": 1}}
    async with py_client(server.host, "dropping", config) as py:
        assert py.store.get_content() == ({"t": {"r": {"c": 1}}}, {})
        py.store.set_cell("t", "r", "c", 2)
        await eventually(lambda: any(isinstance(e, RuntimeError) for e in py.errors))
        await eventually(py.persister.is_settled)
        assert py.store.get_content() == ({"t": {"r": {"c": 1}}}, {})
        assert room.received == ['s[{"t":{"r":{"c":2}}},{},1]'] * 2
        stats = py.persister.get_stats()
        assert stats["resyncs"] == 1 and stats["recovered"] == 1 and stats["adopted"] == 1
        assert [str(e) for e in py.errors] == [
            f"{url} did not keep 1 sent change set(s) after a reconnect: adopting its content"
        ]
