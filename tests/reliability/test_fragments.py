"""Fragmented WebSocket messages cannot pin memory: capped at the message limit, and
closed when they do not finish in time.

Real uvicorn on loopback with the server's own protocol settings; the client sends real
continuation frames (websockets fragments a message given as an async iterator) and
then stalls, as a hostile client would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from partywidget.server.app import create_app
from partywidget.server.room import MIB, Limits
from partywidget.server.thread import ServerThread, run_in_thread
from support.reliability import TIMEOUT
from support.waiting import eventually

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def fragment_limited_server() -> Iterator[ServerThread]:
    limits = Limits(max_message_size=1 * MIB, fragment_timeout=1.0)
    with run_in_thread(create_app(limits=limits)) as thread:
        yield thread


async def _fragments(stall: asyncio.Event, *chunks: str) -> AsyncIterator[str]:
    for chunk in chunks:
        yield chunk
    await stall.wait()  # never finishes the message
    yield "]"


async def _refused(
    fragment_limited_server: ServerThread,
    caplog: pytest.LogCaptureFixture,
    room: str,
    log: str,
    *chunks: str,
) -> int | None:
    """Send ``chunks`` as fragments of a message that never finishes; wait until the
    server logs ``log``. Returns the close code received, or ``None`` when the server's
    close frame was lost to a TCP reset (it closes while unread data is pending)."""
    stall = asyncio.Event()
    async with connect(
        f"{fragment_limited_server.ws_url}/parties/main/{room}", open_timeout=TIMEOUT
    ) as ws:
        sender = asyncio.ensure_future(ws.send(_fragments(stall, *chunks)))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(TIMEOUT):
                await ws.recv()
        sender.cancel()
        stall.set()
    await eventually(lambda: any(log in r.getMessage() for r in caplog.records), TIMEOUT, log)
    return None if closed.value.rcvd is None else closed.value.rcvd.code


async def test_reassembly_is_capped_at_the_message_limit(
    fragment_limited_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="partywidget.server")
    chunk = "x" * (256 * 1024)
    code = await _refused(
        fragment_limited_server, caplog, "cap", "closing with 1009", 's[{},{"v":"', *[chunk] * 5
    )
    assert code in (1009, None)


async def test_an_unfinished_fragmented_message_times_out(
    fragment_limited_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="partywidget.server")
    code = await _refused(
        fragment_limited_server, caplog, "stall", "did not finish in", 's[{},{"v":"', "x" * 1000
    )
    assert code in (1008, None)


async def test_a_finished_fragmented_message_is_applied(
    fragment_limited_server: ServerThread,
) -> None:
    url = f"{fragment_limited_server.ws_url}/parties/main/whole"
    async with connect(url + "?_pk=a", open_timeout=TIMEOUT) as a:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            put = await client.put(
                f"{fragment_limited_server.url}/parties/main/whole/store", content="[{},{}]"
            )
            assert put.status_code == 201
        async with connect(url + "?_pk=b", open_timeout=TIMEOUT) as b:

            async def parts() -> AsyncIterator[str]:
                for part in ['s[{},{"v":', '"whole"', "},1]"]:
                    yield part

            await a.send(parts())
            async with asyncio.timeout(TIMEOUT):
                assert await b.recv() == 's[{},{"v":"whole"},1]'
