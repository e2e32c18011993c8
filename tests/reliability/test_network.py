"""Broken networks: connections cut (RST), half-open (black hole), slowed down.

A loopback :class:`~support.proxy.TcpProxy` sits between each client under test and a
``partywidget serve`` subprocess; an editor (real TinyBase in Node) talks to the server
directly and keeps editing while the others are cut off. The same fault hits our client
and a reference TinyBase client (Node, tinybase 10.0.1 + partysocket 1.3.0):

- ours converges to the server's content, with every edit it made while cut off;
- the reference silently misses what was broadcast while it was cut off (asserted: the
  regression witness that these tests can see the failure they guard against).

In the half-open case our client also edits *into* the black hole (bytes lost without
any error): it must notice after reconnecting that the server lacks that edit and send
it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from partywidget.partykit.socket import PartySocket
from support.node import NodePeers, js_equal
from support.proxy import TcpProxy
from support.reliability import (
    NODE_FAST_SOCKET,
    ServerProcess,
    fetch_content,
    py_peer,
)
from support.waiting import eventually

pytestmark = [pytest.mark.node, pytest.mark.timeout(120)]

#: Detect a dead (half-open) link quickly: the failure a laptop lid or a NAT causes.
PING = {"ping_interval": 0.5, "ping_timeout": 0.5}


@pytest.mark.parametrize("mode", ["drop", "half_open", "delay"])
async def test_fault_then_restore_converges_ours_and_shows_reference_divergence(
    mode: str,
    server_process: Callable[..., ServerProcess],
    node_peers: NodePeers,
    room: str,
) -> None:
    server = server_process()
    url = server.store_url(room)
    peers = node_peers
    await peers.connect("editor", host=server.host, room=room)
    await peers.call("editor", "setRow", "t", "base", {"c": 0})
    expected_rows: dict[str, Any] = {"base": {"c": 0}}
    with (
        TcpProxy("127.0.0.1", server.port) as py_proxy,
        TcpProxy("127.0.0.1", server.port) as ref_proxy,
    ):
        await peers.connect("ref", host=ref_proxy.host, room=room, socket_options=NODE_FAST_SOCKET)
        async with py_peer(py_proxy.host, room, socket_options=PING) as py:
            await eventually(lambda: py.store.get_row("t", "base") == {"c": 0})
            await peers.wait_for_content("ref", py.store.get_content())
            opens_before = (await peers.status("ref"))["opens"]

            # -- the fault ------------------------------------------------------------
            proxies = (py_proxy, ref_proxy)
            if mode == "drop":
                for proxy in proxies:
                    proxy.refuse(True)
                    proxy.drop_all()
            elif mode == "half_open":
                for proxy in proxies:
                    proxy.pause(discard=True)  # sockets stay open, bytes vanish
                # Written into the black hole before anyone can know: lost in flight,
                # so our client must find out after reconnecting and send it again.
                py.store.set_cell("t", "blackholed", "c", "py")
                expected_rows["blackholed"] = {"c": "py"}
            else:
                for proxy in proxies:
                    proxy.set_delay(0.25)
            if mode != "delay":
                # Ours notices (RST at once; a dead link via its pings) before editing.
                await eventually(
                    lambda: py.socket.ready_state != PartySocket.OPEN, what="py notices"
                )

            # The room moves on; our client edits "offline" (or through the slow link).
            for i in range(5):
                await peers.call("editor", "setCell", "t", f"during{i}", "c", i)
                expected_rows[f"during{i}"] = {"c": i}
                py.store.set_cell("t", f"py{i}", "c", f"py{i}")
                expected_rows[f"py{i}"] = {"c": f"py{i}"}
            await peers.call("editor", "delRow", "t", "base")
            del expected_rows["base"]

            # -- restore --------------------------------------------------------------
            if mode == "drop":
                for proxy in proxies:
                    proxy.refuse(False)
            elif mode == "half_open":
                # The dead link finally resets (TCP keepalive / NAT timeout): the
                # reference, which has no pings, only reconnects now.
                for proxy in proxies:
                    proxy.drop_all()
                    proxy.resume()
            else:
                for proxy in proxies:
                    proxy.set_delay(0)
            await peers.call("editor", "setCell", "t", "after", "c", "after")
            expected_rows["after"] = {"c": "after"}
            expected: tuple[dict[str, Any], dict[str, Any]] = ({"t": expected_rows}, {})

            async def ours_converged() -> bool:
                if not py.persister.is_settled() or py.socket.ready_state != PartySocket.OPEN:
                    return False
                content = await fetch_content(url)
                return js_equal(content, expected) and js_equal(py.store.get_content(), content)

            await eventually(ours_converged, what="our client converged")
            await peers.wait_for_content("editor", expected)

            # -- the reference, same fault --------------------------------------------
            if mode == "delay":
                # Nothing was lost on the wire: the reference converges as well.
                await peers.wait_for_content("ref", expected)
                assert (await peers.status("ref"))["opens"] == opens_before
            else:
                await peers.wait_for_socket("ref", opens=opens_before + 1, timeout=30)
                # Reconnected and receiving again (it gets the live edit)...
                await peers.call("editor", "setCell", "t", "after", "c", "after2")
                expected_rows["after"] = {"c": "after2"}
                await eventually(lambda: _ref_cell(peers, "after"), what="reference receives again")
                ref: Any = await peers.content("ref")
                # ...but never reloads: it still has the deleted row and misses the
                # editor's edits made while it was cut off.
                server_content = await fetch_content(url)
                assert js_equal(server_content, ({"t": expected_rows}, {}))
                assert not js_equal(ref, server_content)
                assert ref[0]["t"].get("base") == {"c": 0}
                assert "during0" not in ref[0]["t"]
                # Ours stays equal to the server through the live edit too.
                await eventually(lambda: py.store.get_cell("t", "after", "c") == "after2")
            stats = py.persister.get_stats()
            if mode != "delay":
                assert stats["resyncs"] >= 1
            assert all(
                isinstance(e, OSError | ConnectionError | httpx.HTTPError) for e in py.errors
            ), py.errors
    assert "Traceback" not in server.log_text(), server.log_tail()


async def _ref_cell(peers: NodePeers, row: str) -> bool:
    content = await peers.content("ref")
    return bool(content[0].get("t", {}).get(row) == {"c": "after2"})


async def test_stalled_link_resumed_delivers_everything_without_reconnect(
    server_process: Callable[..., ServerProcess], room: str
) -> None:
    """A stall shorter than the keepalive (bytes held, then delivered) loses nothing."""
    server = server_process()
    async with py_peer(server.host, room) as other:
        with TcpProxy("127.0.0.1", server.port) as proxy:
            async with py_peer(proxy.host, room) as py:
                await eventually(lambda: py.persister.is_settled() and other.persister.is_settled())
                opens = py.socket.ready_state
                proxy.pause()
                for i in range(50):
                    py.store.set_cell("t", f"py{i}", "c", i)
                    other.store.set_cell("t", f"other{i}", "c", i)
                    await asyncio.sleep(0.002)
                proxy.resume()

                async def converged() -> bool:
                    if not (py.persister.is_settled() and other.persister.is_settled()):
                        return False
                    content = await fetch_content(server.store_url(room))
                    return (
                        content is not None
                        and len(content[0].get("t", {})) == 100
                        and py.store.get_content() == content == other.store.get_content()
                    )

                await eventually(converged, what="stall resolved")
                assert py.socket.ready_state == opens == PartySocket.OPEN
                assert py.persister.get_stats()["resyncs"] == 0
