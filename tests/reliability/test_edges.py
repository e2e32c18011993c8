"""Small edges of the room server: room names, odd methods, empty stores, no-op deletes.

Real uvicorn on loopback, raw sockets where a client library would refuse to send the
request, real WebSocket clients. Orderings are proved by protocol: messages of one
connection are handled in order, so what a reader receives first tells what was (not)
broadcast before it.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from partywidget.server.thread import ServerThread
from support.reliability import TIMEOUT

pytestmark = pytest.mark.timeout(120)


def _raw(server: ServerThread, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        return sock.recv(4096)


def test_room_names_that_are_not_utf8_are_refused(server: ServerThread) -> None:
    with httpx.Client(timeout=TIMEOUT) as client:
        for name in ["%ff", "%fe", "a%c3", "%ed%a0%80"]:
            url = f"{server.url}/parties/main/{name}/store"
            assert client.put(url, content=b"[{},{}]").status_code == 400, name
            assert client.get(url).status_code == 400, name
        assert (
            client.put(f"{server.url}/parties/main/%c3%a9/store", content=b"[{},{}]").status_code
            == 201
        )


async def test_a_websocket_to_a_non_utf8_room_is_refused(server: ServerThread) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{server.ws_url}/parties/main/%ff", open_timeout=TIMEOUT):
            pass
    assert refused.value.response.status_code == 400


def test_connect_and_other_methods_log_no_error(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    host = f"127.0.0.1:{server.port}".encode()
    for request in [
        b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: " + host + b"\r\n\r\n",
        b"CONNECT /parties/main/x/store HTTP/1.1\r\nHost: " + host + b"\r\n\r\n",
        b"TRACE /parties/main/x/store HTTP/1.1\r\nHost: " + host + b"\r\n\r\n",
    ]:
        status = _raw(server, request).split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.1 "), status
        assert int(status.split()[1]) < 500, status
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_put_of_empty_tables_creates_the_empty_store(server: ServerThread) -> None:
    url = f"{server.url}/parties/main/empty-tables/store"
    with httpx.Client(timeout=TIMEOUT) as client:
        assert client.put(url, content=b'[{"t":{}},{}]').status_code == 201
        assert client.get(url).text == "[{},{}]"
        assert client.put(url, content=b'[{},{"v":1}]').status_code == 205  # it exists


async def test_deletes_of_things_that_do_not_exist_are_not_broadcast(
    server: ServerThread,
) -> None:
    store = f"{server.url}/parties/main/no-op-deletes/store"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        put = await client.put(store, content='[{"t":{"r":{"c":1}}},{"v":1}]')
        assert put.status_code == 201
    ws = f"{server.ws_url}/parties/main/no-op-deletes?_pk="
    async with (
        connect(ws + "writer", open_timeout=TIMEOUT) as writer,
        connect(ws + "reader", open_timeout=TIMEOUT) as reader,
    ):
        for change in [
            '{"x":"\\ufffc"}',
            '{"t":{"x":"\\ufffc"}}',
            '{"t":{"r":{"x":"\\ufffc"}}}',
            '{"x":{"r":{"c":"\\ufffc"}}}',
        ]:
            await writer.send(f"s[{change},{{}},1]")
        await writer.send('s[{},{"x":"\\ufffc"},1]')
        await writer.send('s[{"t":{"r":{"c":"\\ufffc"}}},{"v":"\\ufffc","w":2},1]')
        async with asyncio.timeout(TIMEOUT):
            first = await reader.recv()
    # Only the existing cell and value are deleted in the broadcast.
    assert first == 's[{"t":{"r":{"c":"\ufffc"}}},{"v":"\ufffc","w":2},1]'
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert (await client.get(store)).text == '[{},{"w":2}]'
