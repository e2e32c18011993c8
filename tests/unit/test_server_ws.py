"""WebSocket behaviour of the room server, against real uvicorn and real websockets."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.requests import HTTPConnection
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from partywidget.model import DELETED
from partywidget.server import (
    Connection,
    Limits,
    PartyServer,
    ServerThread,
    TinyBasePartyKitServer,
    TinyBaseServerConfig,
    create_app,
    run_in_thread,
)
from partywidget.server.room import Lobby

TIMEOUT = 20


class Guarded(TinyBasePartyKitServer):
    """Hooks with rules that a client can break, to see rejections and reconvergence."""

    calls: list[tuple[Any, ...]] = []  # noqa: RUF012 - shared on purpose, for asserts

    async def can_set_cell(
        self,
        table_id: str,
        row_id: str,
        cell_id: str,
        cell: Any,
        initial_save: bool,
        who: Any,
        old_cell: Any,
    ) -> bool:
        Guarded.calls.append((table_id, row_id, cell_id, cell, initial_save, old_cell))
        return initial_save or table_id != "locked"

    # A plain function on purpose: hooks may be sync or async.
    def can_del_row(self, table_id: str, row_id: str, connection: Connection) -> bool:  # type: ignore[override]
        assert isinstance(connection, Connection)
        return row_id != "keep"

    async def can_set_value(self, value_id: str, value: Any, initial: bool, *rest: Any) -> bool:
        return initial or value_id != "ro"

    async def can_del_value(self, value_id: str, connection: Connection) -> bool:
        return value_id != "ro"


class Prefixed(TinyBasePartyKitServer):
    config = TinyBaseServerConfig(message_prefix="tb:")


class Auth(TinyBasePartyKitServer):
    @staticmethod
    async def on_before_connect(request: HTTPConnection, lobby: Lobby) -> Any:
        return None if request.query_params.get("token") == "s3cret" else False


class Echo(PartyServer):
    """A non-TinyBase party: PartyKit's extension points on their own."""

    async def on_connect(self, connection: Connection, request: HTTPConnection) -> None:
        connection.send(f"hello {connection.id} in {self.party.id}")

    async def on_message(self, message: str, connection: Connection) -> None:
        self.party.broadcast(f"{connection.id}: {message}", [connection.id])

    async def on_close(self, connection: Connection) -> None:
        self.party.broadcast(f"bye {connection.id}")


PARTIES: dict[str, type[PartyServer]] = {
    "main": TinyBasePartyKitServer,
    "guarded": Guarded,
    "prefixed": Prefixed,
    "auth": Auth,
    "echo": Echo,
}


@pytest.fixture(scope="module")
def limited_server() -> Iterator[ServerThread]:
    limits = Limits(max_message_size=4096, max_json_depth=20)
    with run_in_thread(create_app(parties=PARTIES, limits=limits)) as thread:
        yield thread


class Room:
    """Helpers for one room of the module's server."""

    def __init__(self, server: ServerThread, party: str, name: str) -> None:
        self.server, self.party, self.name = server, party, name
        self.path = f"/parties/{party}/{quote(name, safe='')}"
        self.store_url = f"{server.url}{self.path}/store"

    def put(self, body: str) -> int:
        return httpx.put(self.store_url, content=body.encode(), timeout=TIMEOUT).status_code

    def get(self) -> str:
        return httpx.get(self.store_url, timeout=TIMEOUT).text

    def connect(self, pk: str, **query: str) -> Any:
        params = "".join(f"&{k}={v}" for k, v in query.items())
        return connect(
            f"{self.server.ws_url}{self.path}?_pk={pk}{params}",
            open_timeout=TIMEOUT,
        )


@pytest.fixture
def party_room(limited_server: ServerThread, request: pytest.FixtureRequest) -> Room:
    return Room(limited_server, "main", request.node.name)


async def recv(ws: ClientConnection) -> str:
    message = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(message, str)
    return message


@pytest.fixture
async def pair(party_room: Room) -> AsyncIterator[tuple[ClientConnection, ClientConnection]]:
    async with party_room.connect("a") as a, party_room.connect("b") as b:
        yield a, b


async def test_changes_are_stored_and_broadcast_to_others_only(
    party_room: Room, pair: tuple[ClientConnection, ClientConnection]
) -> None:
    a, b = pair
    assert party_room.put('[{"t":{"r":{"c":1,"d":2}},"u":{"x":{"y":1}}},{"v":1}]') == 201
    async with party_room.connect("c") as c:
        await a.send('s[{"t":{"r":{"c":10,"d":"\ufffc"}},"u":"\ufffc"},{"v":"\ufffc","w":"é"},1]')
        expected = 's[{"t":{"r":{"c":10,"d":"\ufffc"}},"u":"\ufffc"},{"v":"\ufffc","w":"é"},1]'
        assert await recv(b) == expected
        assert await recv(c) == expected
        await b.send('s[{"t":{"r2":{"z":true}}},{},1]')
        assert await recv(a) == 's[{"t":{"r2":{"z":true}}},{},1]'
        assert await recv(c) == 's[{"t":{"r2":{"z":true}}},{},1]'
        # The sender got nothing back: its next message is the one c sends now.
        await c.send('s[{},{"from":"c"},1]')
        assert await recv(a) == 's[{},{"from":"c"},1]'
    assert party_room.get() == '[{"t":{"r":{"c":10},"r2":{"z":true}}},{"from":"c","w":"é"}]'


async def test_row_and_cell_deletions_cascade(
    party_room: Room, pair: tuple[ClientConnection, ClientConnection]
) -> None:
    a, b = pair
    party_room.put('[{"t":{"r":{"c":1},"s":{"c":2}},"u":{"r":{"c":3}}},{}]')
    await a.send('s[{"t":{"r":"\ufffc"},"u":{"r":{"c":"\ufffc"}}},{},1]')
    assert await recv(b) == 's[{"t":{"r":"\ufffc"},"u":{"r":{"c":"\ufffc"}}},{},1]'
    assert party_room.get() == '[{"t":{"s":{"c":2}}},{}]'
    await a.send('s[{"t":"\ufffc","gone":"\ufffc"},{"none":"\ufffc"},1]')
    # Only what changed travels: deletes of things that do not exist are not broadcast.
    assert await recv(b) == 's[{"t":"\ufffc"},{},1]'
    assert party_room.get() == "[{},{}]"


async def test_messages_before_the_store_exists_are_dropped(
    party_room: Room,
    pair: tuple[ClientConnection, ClientConnection],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = pair
    with caplog.at_level(logging.INFO, logger="partywidget.server"):
        await a.send('s[{},{"early":1},1]')
        assert party_room.put("[{},{}]") == 201
        await a.send('s[{},{"late":1},1]')
        assert await recv(b) == 's[{},{"late":1},1]'
    assert party_room.get() == '[{},{"late":1}]'
    assert any("no store yet" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "bad",
    [
        "x[{},{},1]",
        "s",
        "snot json",
        "s[{},{}]",
        "s[{},{},2]",
        's[{},{},"x"]',
        "s[{},{},[1,2]]",
        "s[{},{},{}]",
        "s[{},{},null]",
        's[{},{},"\ufffc"]',
        's[{"t":{"r":1}},{},1]',
        's[{},{"v":{}},1,1]',
        "s" + "[" * 30 + "]" * 30,
        's[{"' + "i" * 1025 + '":"\ufffc"},{},1]',
        "",
    ],
)
async def test_invalid_messages_are_ignored(
    party_room: Room, pair: tuple[ClientConnection, ClientConnection], bad: str
) -> None:
    a, b = pair
    party_room.put("[{},{}]")
    await a.send(bad)
    await a.send('s[{},{"ok":1},1]')
    assert await recv(b) == 's[{},{"ok":1},1]'  # nothing from the bad one came first
    assert party_room.get() == '[{},{"ok":1}]'


@pytest.mark.parametrize("third", ["1", "true", '"1"', '" 0x1 "', "[[1]]", "1.0"])
async def test_changes_flag_uses_javascript_loose_equality(
    party_room: Room, pair: tuple[ClientConnection, ClientConnection], third: str
) -> None:
    a, b = pair
    party_room.put("[{},{}]")
    await a.send(f's[{{}},{{"v":1}},{third}]')
    assert await recv(b) == 's[{},{"v":1},1]'


async def test_binary_frames_are_ignored(
    party_room: Room, pair: tuple[ClientConnection, ClientConnection]
) -> None:
    a, b = pair
    party_room.put("[{},{}]")
    await a.send(b's[{},{"bin":1},1]')
    await a.send('s[{},{"text":1},1]')
    assert await recv(b) == 's[{},{"text":1},1]'


async def test_message_prefix(limited_server: ServerThread, request: pytest.FixtureRequest) -> None:
    party_room = Room(limited_server, "prefixed", request.node.name)
    party_room.put("[{},{}]")
    async with party_room.connect("a") as a, party_room.connect("b") as b:
        await a.send('s[{},{"unprefixed":1},1]')
        await a.send('tb:s[{},{"v":1},1]')
        assert await recv(b) == 'tb:s[{},{"v":1},1]'
    assert party_room.get() == '[{},{"v":1}]'


async def test_rejected_items_reconverge_the_sender(
    limited_server: ServerThread, request: pytest.FixtureRequest
) -> None:
    party_room = Room(limited_server, "guarded", request.node.name)
    initial = '[{"locked":{"r":{"c":1}},"t2":{"keep":{"k":1},"drop":{"k":2}}},{"ro":"x","rw":0}]'
    assert party_room.put(initial) == 201
    async with party_room.connect("a") as a, party_room.connect("b") as b:
        await a.send(
            's[{"locked":{"r":{"c":9,"new":1}},"open":{"r":{"c":2}},'
            '"t2":{"keep":"\ufffc","drop":"\ufffc"}},{"ro":"\ufffc","rw":5},1]'
        )
        assert await recv(b) == 's[{"open":{"r":{"c":2}},"t2":{"drop":"\ufffc"}},{"rw":5},1]'
        assert await recv(a) == (
            's[{"locked":{"r":{"c":1,"new":"\ufffc"}},"t2":{"keep":{"k":1}}},{"ro":"x"},1]'
        )
        # Fully rejected: nothing is broadcast, only the sender hears back.
        await a.send('s[{},{"ro":"y"},1]')
        assert await recv(a) == 's[{},{"ro":"x"},1]'
        await a.send('s[{},{"rw":6},1]')
        assert await recv(b) == 's[{},{"rw":6},1]'
    assert party_room.get() == (
        '[{"locked":{"r":{"c":1}},"open":{"r":{"c":2}},"t2":{"keep":{"k":1}}},{"ro":"x","rw":6}]'
    )


async def test_hooks_see_decoded_cells_and_old_cells(
    limited_server: ServerThread, request: pytest.FixtureRequest
) -> None:
    party_room = Room(limited_server, "guarded", request.node.name)
    Guarded.calls.clear()
    assert party_room.put('[{"t":{"r":{"j":"\ufffd[1]"}}},{}]') == 201
    async with party_room.connect("a") as a, party_room.connect("b") as b:
        await a.send('s[{"t":{"r":{"j":"\ufffd{\\"a\\":1}","n":null}}},{},1]')
        await recv(b)
    assert Guarded.calls == [
        ("t", "r", "j", [1], True, DELETED),
        ("t", "r", "j", {"a": 1}, False, [1]),
        ("t", "r", "n", None, False, DELETED),
    ]


async def test_same_id_replaces_the_first_socket(party_room: Room) -> None:
    party_room.put("[{},{}]")
    async with (
        party_room.connect("same") as first,
        party_room.connect("other") as other,
        party_room.connect("same") as second,
    ):
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(first.recv(), TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        await other.send('s[{},{"v":1},1]')
        assert await recv(second) == 's[{},{"v":1},1]'
        await second.send('s[{},{"v":2},1]')
        assert await recv(other) == 's[{},{"v":2},1]'


async def test_oversize_message_closes_with_1009(
    party_room: Room, caplog: pytest.LogCaptureFixture
) -> None:
    party_room.put("[{},{}]")
    with caplog.at_level(logging.WARNING, logger="partywidget.server"):
        async with party_room.connect("big") as big, party_room.connect("peer") as peer:
            await big.send('s[{},{"v":"' + "é" * 2100 + '"},1]')  # 2100 chars, 4200 bytes
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(big.recv(), TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
            async with party_room.connect("next") as nxt:
                await nxt.send('s[{},{"small":1},1]')
                assert await recv(peer) == 's[{},{"small":1},1]'
    assert party_room.get() == '[{},{"small":1}]'
    assert any("1009" in r.getMessage() for r in caplog.records)


async def test_auth_refusal(limited_server: ServerThread, request: pytest.FixtureRequest) -> None:
    party_room = Room(limited_server, "auth", request.node.name)
    with pytest.raises(InvalidStatus) as refused:
        async with party_room.connect("a"):
            pass
    assert refused.value.response.status_code == 403
    async with party_room.connect("a", token="s3cret") as a:
        await a.ping()


async def test_unknown_party_and_bad_room_are_refused(limited_server: ServerThread) -> None:
    with pytest.raises(InvalidStatus) as unknown:
        async with connect(f"{limited_server.ws_url}/parties/nope/r?_pk=a", open_timeout=TIMEOUT):
            pass
    assert unknown.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as bad:
        async with connect(
            f"{limited_server.ws_url}/parties/main/a%01b?_pk=a", open_timeout=TIMEOUT
        ):
            pass
    assert bad.value.response.status_code == 400


async def test_party_extension_points(
    limited_server: ServerThread, request: pytest.FixtureRequest
) -> None:
    party_room = Room(limited_server, "echo", request.node.name)
    async with party_room.connect("a") as a:
        assert await recv(a) == f"hello a in {party_room.name}"
        async with party_room.connect("b") as b:
            assert await recv(b) == f"hello b in {party_room.name}"
            await b.send("hi")
            assert await recv(a) == "b: hi"
        assert await recv(a) == "bye b"


async def test_rooms_are_isolated(
    limited_server: ServerThread, request: pytest.FixtureRequest
) -> None:
    one, two = (Room(limited_server, "main", f"{request.node.name}-{i}") for i in (1, 2))
    one.put("[{},{}]")
    two.put("[{},{}]")
    async with one.connect("a") as a1, one.connect("b") as b1, two.connect("b") as b2:
        await a1.send('s[{},{"room":1},1]')
        await b2.send('s[{},{"room":2},1]')
        assert await recv(b1) == 's[{},{"room":1},1]'
    assert one.get() == '[{},{"room":1}]'
    assert two.get() == '[{},{"room":2}]'


async def test_sqlite_durable_across_server_restart(tmp_path: Path) -> None:
    db = tmp_path / "rooms.sqlite3"
    with run_in_thread(storage=db) as first:
        party_room = Room(first, "main", "durable")
        assert party_room.put('[{"t":{"r":{"c":1}}},{}]') == 201
        async with party_room.connect("a") as a, party_room.connect("b") as b:
            await a.send('s[{"t":{"r":{"c":2,"d":"\ufffd{}"}}},{"v":true},1]')
            await recv(b)
        before = party_room.get()
    with run_in_thread(storage=db) as second:
        party_room = Room(second, "main", "durable")
        assert party_room.get() == before == '[{"t":{"r":{"c":2,"d":"\ufffd{}"}}},{"v":true}]'
        assert party_room.put("[{},{}]") == 205


def raw_websocket(limited_server: ServerThread, path: str, receive_buffer: int) -> socket.socket:
    """A WebSocket client that never reads after the handshake: a tiny kernel receive
    buffer, so what the server sends to it piles up on the server's side."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", limited_server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {limited_server.host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # byte by byte: leave any frame unread
        byte = sock.recv(1)
        assert byte, f"connection closed during the handshake: {head!r}"
        head += byte
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def read_until_close(sock: socket.socket) -> int:
    """Read (unmasked) server frames until a close frame; returns its status code."""
    buffer = bytearray()

    def need(size: int) -> None:
        while len(buffer) < size:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection ended without a close frame")
            buffer.extend(chunk)

    while True:
        need(2)
        opcode, length, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
        if length >= 126:
            offset = 4 if length == 126 else 10
            need(offset)
            length = int.from_bytes(buffer[2:offset], "big")
        need(offset + length)
        payload = bytes(buffer[offset : offset + length])
        del buffer[: offset + length]
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big")


async def test_a_slow_client_is_dropped_without_stalling_the_room(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Driven by protocol, not by speed: the slow client stops reading right after its
    handshake; the fast one reads every message before the writer sends the next, so
    its backlog on the server never exceeds one message. The slow client's backlog
    grows by one message per broadcast once its socket buffers are full, until the
    server drops it; the fast client keeps receiving, in order, before and after."""
    chunk_size, backlog = 256 * 1024, 1024 * 1024
    limits = Limits(max_message_size=2 * chunk_size, max_send_backlog=backlog)
    # Bound on messages before the drop: the slow socket's kernel buffers (a few MiB at
    # most on Linux loopback) plus the backlog, with a wide margin.
    bound = 4 * (64 * 1024 * 1024 + backlog) // chunk_size
    with (
        caplog.at_level(logging.WARNING, logger="partywidget.server"),
        run_in_thread(create_app(limits=limits)) as limited_server,
    ):
        party_room = Room(limited_server, "main", "slow")
        assert party_room.put("[{},{}]") == 201
        slow = raw_websocket(limited_server, f"{party_room.path}?_pk=slow", receive_buffer=4096)
        fast = await connect(f"{limited_server.ws_url}{party_room.path}?_pk=fast", max_size=None)
        writer = await connect(
            f"{limited_server.ws_url}{party_room.path}?_pk=writer", max_size=None
        )
        chunk = "x" * chunk_size

        def dropped(id: str) -> bool:
            return any(f"id={id}: client too slow" in r.getMessage() for r in caplog.records)

        async def send_and_see(i: int) -> None:
            await writer.send(f's[{{}},{{"v":"{chunk}","i":{i}}},1]')
            assert f'"i":{i}}}' in await recv(fast)  # the broadcast that follows the send

        sent = 0
        try:
            # The slow client's drop is logged while the server broadcasts message i,
            # before the fast client's copy of message i is written: a positive event.
            while not dropped("slow"):
                assert sent < bound, f"slow client never dropped after {sent} messages"
                await send_and_see(sent)
                sent += 1
            for _ in range(5):  # the room goes on for the others
                await send_and_see(sent)
                sent += 1
            assert not dropped("fast")
            assert await asyncio.to_thread(read_until_close, slow) == 1013
        finally:
            slow.close()
            for ws in (writer, fast):
                await ws.close()
