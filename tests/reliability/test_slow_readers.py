"""A client that never reads is dropped at the TCP level, so it cannot pin memory.

Real uvicorn on loopback; the non-reading client is a raw socket with a small receive
buffer that completes the WebSocket handshake and then never reads, while another
client's large edits are broadcast to it. The verdict waits on the server's log line,
and the room keeps serving the others.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect

from partywidget.server.app import create_app
from partywidget.server.room import Limits
from partywidget.server.thread import ServerThread, run_in_thread
from support.reliability import TIMEOUT

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def send_timeout_server() -> Iterator[ServerThread]:
    with run_in_thread(create_app(limits=Limits(send_timeout=1.0))) as thread:
        yield thread


def _never_reading_socket(send_timeout_server: ServerThread, path: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", send_timeout_server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{send_timeout_server.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)  # the handshake only: nothing after it is ever read
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


async def test_a_client_that_never_reads_is_dropped(
    send_timeout_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="partywidget.server")
    store = f"{send_timeout_server.url}/parties/main/never-reads/store"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert (await client.put(store, content="[{},{}]")).status_code == 201
    sleeper = _never_reading_socket(send_timeout_server, "/parties/main/never-reads?_pk=sleeper")
    try:
        ws = f"{send_timeout_server.ws_url}/parties/main/never-reads?_pk="
        async with (
            connect(ws + "writer", open_timeout=TIMEOUT) as writer,
            connect(ws + "reader", open_timeout=TIMEOUT, max_size=None) as reader,
        ):

            def dropped() -> bool:
                return any("read nothing for" in r.getMessage() for r in caplog.records)

            big = "x" * (256 * 1024)
            async with asyncio.timeout(TIMEOUT):
                i = 0
                while not dropped():  # keep data flowing to it until the server gives up
                    await writer.send(f's[{{}},{{"v":"{i}{big}"}},1]')
                    echoed = await reader.recv()
                    assert isinstance(echoed, str) and echoed.startswith(f's[{{}},{{"v":"{i}')
                    i += 1

            def closed() -> bool:
                return any(
                    "close main/never-reads id=sleeper" in r.getMessage() for r in caplog.records
                )

            async with asyncio.timeout(TIMEOUT):
                while not closed():
                    await asyncio.sleep(0.02)
            await writer.send('s[{},{"after":1},1]')  # the room still serves the others
            async with asyncio.timeout(TIMEOUT):
                assert await reader.recv() == 's[{},{"after":1},1]'
    finally:
        sleeper.close()
