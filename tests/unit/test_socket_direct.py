"""PartySocket's direct delivery: messages reach listeners in order, with no queue hop.

PartySocket hands each whole message to its listeners as soon as the websockets
connection parses it (``_DirectClientConnection``), like a browser's ``onmessage``.
These tests pin the ordering rules that makes safe, against real ``websockets`` servers
on loopback: messages sent right after the handshake (parsed before PartySocket took the
connection over), fragmented messages (which switch the connection to the stock queue)
mixed with whole ones, binary messages, async iteration, and a listener reconnecting.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.server import ServerConnection

from partywidget.partykit.socket import MessageEvent, PartySocket
from support.waiting import eventually
from support.wsserver import ws_server

FAST: dict[str, Any] = {
    "min_reconnection_delay": 0.01,
    "max_reconnection_delay": 0.05,
    "connection_timeout": 5.0,
}


def collect(sock: PartySocket) -> list[str | bytes]:
    got: list[str | bytes] = []
    sock.add_event_listener("message", lambda event: got.append(event.data))
    return got


async def test_messages_sent_with_the_handshake_arrive_first_and_in_order() -> None:
    """The server writes right after accepting: those bytes can arrive in the same read
    as the handshake response, before PartySocket serves the connection."""

    async def burst(ws: ServerConnection) -> None:
        for i in range(50):
            await ws.send(f"m{i}")
        await ws.wait_closed()

    async with ws_server(burst) as host:
        sock = PartySocket(host, "r", **FAST)
        got = collect(sock)
        await sock.wait_open(timeout=10)
        await eventually(lambda: len(got) == 50)
        assert got == [f"m{i}" for i in range(50)]
        await sock.aclose()


async def test_fragmented_messages_keep_their_place() -> None:
    async def mixed(ws: ServerConnection) -> None:
        await ws.send("whole 1")
        await ws.send(["frag", "mented ", "2"])  # one message in three frames
        await ws.send("whole 3")
        await ws.send(b"\x00binary 4")
        await ws.send([b"bin", b"frag 5"])
        await ws.send("whole 6")
        await ws.wait_closed()

    async with ws_server(mixed) as host:
        sock = PartySocket(host, "r", **FAST)
        got = collect(sock)
        iterated: list[str | bytes] = []

        async def iterate() -> None:
            async for message in sock:
                iterated.append(message)

        task = asyncio.create_task(iterate())
        await sock.wait_open(timeout=10)
        expected = ["whole 1", "fragmented 2", "whole 3", b"\x00binary 4", b"binfrag 5", "whole 6"]
        await eventually(lambda: len(got) == 6 and len(iterated) == 6)
        assert got == expected
        assert iterated == expected
        await sock.aclose()
        await asyncio.wait_for(task, 10)


async def test_a_listener_that_reconnects_stops_the_old_connections_messages() -> None:
    connections: list[ServerConnection] = []

    async def talk(ws: ServerConnection) -> None:
        connections.append(ws)
        n = len(connections)
        if n == 1:
            for i in range(20):
                await ws.send(f"old{i}")
        else:
            await ws.send("new")
        await ws.wait_closed()

    async with ws_server(talk) as host:
        sock = PartySocket(host, "r", **FAST)
        got: list[Any] = []

        def on_message(event: MessageEvent) -> None:
            got.append(event.data)
            if event.data == "old0":
                sock.reconnect()

        sock.add_event_listener("message", on_message)
        await sock.wait_open(timeout=10)
        await eventually(lambda: "new" in got)
        # Once the old connection is closed nothing more of it can arrive: check then.
        await asyncio.wait_for(connections[0].wait_closed(), 10)
        assert got[0] == "old0"
        assert not [m for m in got[1:] if isinstance(m, str) and m.startswith("old")]
        await sock.aclose()
