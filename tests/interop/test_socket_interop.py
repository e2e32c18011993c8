"""PartySocket against the reference: real ``partykit dev`` and real Node TinyBase clients.

Why: the unit tests prove partysocket's semantics against plain websockets servers;
here our socket joins rooms on PartyKit's own runtime (workerd, TinyBase's
``TinyBasePartyKitServer``) next to TinyBase's JavaScript client over partysocket 1.3.0,
and exchanges TinyBase's raw change messages with it in both directions.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from partywidget.partykit.socket import CloseEvent, OpenEvent, PartySocket, SocketOptions
from support.node import NodePeers
from support.partykit import PartykitDev
from support.waiting import eventually

pytestmark = pytest.mark.node

FAST: dict[str, Any] = {
    "min_reconnection_delay": 0.05,
    "max_reconnection_delay": 0.2,
    "connection_timeout": 10.0,
}
NODE_FAST = {"minReconnectionDelay": 50, "maxReconnectionDelay": 200}
INITIAL: Any = ({"t": {"r": {"c": 0}}}, {})


def messages(sock: PartySocket) -> list[str | bytes]:
    got: list[str | bytes] = []
    sock.add_event_listener("message", lambda e: got.append(e.data))
    return got


async def test_messages_flow_both_ways_with_a_node_tinybase_client(
    partykit_dev: PartykitDev, node_peers: NodePeers, room: str
) -> None:
    await node_peers.connect(
        "a", host=partykit_dev.host, room=room, initial_content=INITIAL, socket_options=NODE_FAST
    )
    async with PartySocket(partykit_dev.host, room, query={"token": "t"}, **FAST) as sock:
        got = messages(sock)
        await sock.wait_open(timeout=20)
        assert sock.url.startswith(f"ws://{partykit_dev.host}/parties/main/{room}?_pk={sock.id}")

        # Node (TinyBase + partysocket) -> server -> us: the server's broadcast.
        await node_peers.call("a", "setCell", "t", "r", "c", 1)
        await eventually(lambda: len(got) == 1)
        node_sent = await node_peers.sent("a")
        assert got == [node_sent[-1]] == ['s[{"t":{"r":{"c":1}}},{},1]']

        # Us -> server -> Node's TinyBase store.
        assert sock.send('s[{"t":{"r":{"c":2,"d":"é😀"}}},{},1]') is True
        await node_peers.wait_for_content("a", ({"t": {"r": {"c": 2, "d": "é😀"}}}, {}))
        assert await node_peers.received("a") == ['s[{"t":{"r":{"c":2,"d":"é😀"}}},{},1]']
        # The server excludes the sender (by connection): nothing comes back to us. Node
        # writes a marker after it got our change, so an echo would arrive before it.
        await node_peers.call("a", "setValue", "marker", 1)
        await eventually(lambda: len(got) == 2)
        assert got == [node_sent[-1], 's[{},{"marker":1},1]']

        # Messages queued while disconnected reach the room after reconnecting.
        sock.close()
        assert sock.send('s[{"t":{"r":{"c":3}}},{},1]') is False
        sock.reconnect()
        await node_peers.wait_for_content("a", ({"t": {"r": {"c": 3, "d": "é😀"}}}, {"marker": 1}))


async def test_survives_a_partykit_restart(
    fresh_partykit_dev: PartykitDev, node_peers: NodePeers, room: str
) -> None:
    """The server goes away and comes back on the same port: the socket reconnects
    with the same ``_pk``, and the room works again in both directions."""
    server = fresh_partykit_dev
    sock = PartySocket(server.host, room, **FAST)
    events: list[Any] = []
    for type_ in ("open", "close"):
        sock.add_event_listener(type_, events.append)
    got = messages(sock)
    await sock.wait_open(timeout=20)
    first_url = sock.url

    await asyncio.to_thread(server.restart)
    await eventually(lambda: sum(isinstance(e, OpenEvent) for e in events) >= 2, timeout=60)
    closes = [e for e in events if isinstance(e, CloseEvent)]
    assert closes and closes[0].code in (1001, 1006, 1011, 1012)
    assert sock.url == first_url  # same _pk (and query) after the restart

    await node_peers.connect(
        "a", host=server.host, room=room, initial_content=INITIAL, socket_options=NODE_FAST
    )
    await node_peers.call("a", "setValue", "v", "after restart")
    await eventually(lambda: got == ['s[{},{"v":"after restart"},1]'])
    sock.send('s[{},{"w":true},1]')
    await node_peers.wait_for_content(
        "a", ({"t": {"r": {"c": 0}}}, {"v": "after restart", "w": True})
    )
    await sock.aclose()


async def test_oversize_message_closes_with_1009_then_reconnects(
    partykit_dev: PartykitDev, room: str
) -> None:
    """PartyKit/Cloudflare refuse messages over 1 MiB with close code 1009: the socket
    reports it as a close event and reconnects by itself. (Configured from the same
    partysocket options object the Node clients use.)"""
    options = SocketOptions.from_partysocket({**NODE_FAST, "connectionTimeout": 10_000})
    async with PartySocket(partykit_dev.host, room, options=options) as sock:
        events: list[Any] = []
        for type_ in ("open", "close"):
            sock.add_event_listener(type_, events.append)
        await sock.wait_open(timeout=20)
        sock.send("x" * (1024 * 1024 + 1024))
        await eventually(lambda: any(isinstance(e, CloseEvent) for e in events))
        close = next(e for e in events if isinstance(e, CloseEvent))
        assert close.code == 1009, close
        await eventually(lambda: sum(isinstance(e, OpenEvent) for e in events) == 2)


async def test_python_and_node_sockets_exchange_through_a_query_function(
    partykit_dev: PartykitDev, node_peers: NodePeers, room: str
) -> None:
    """An async query function (auth token) is called before each connect; a Node
    client's changes reach us through async iteration."""
    calls: list[int] = []

    async def query() -> dict[str, str]:
        calls.append(len(calls))
        return {"token": f"tok{len(calls)}"}

    await node_peers.connect(
        "a", host=partykit_dev.host, room=room, initial_content=INITIAL, socket_options=NODE_FAST
    )
    async with PartySocket(partykit_dev.host, room, query=query, **FAST) as sock:
        await sock.wait_open(timeout=20)
        sock.reconnect()
        await eventually(lambda: len(calls) == 2 and sock.ready_state == PartySocket.OPEN)
        assert sock.url.endswith("&token=tok2")
        # The iterator buffers from its creation: the broadcast may well arrive before
        # Node's reply to our command does.
        incoming = aiter(sock)
        await node_peers.call("a", "setCell", "t", "r", "c", 42)
        async with asyncio.timeout(20):
            message = await anext(incoming)
        assert isinstance(message, str)
        assert json.loads(message[1:]) == [{"t": {"r": {"c": 42}}}, {}, 1]
