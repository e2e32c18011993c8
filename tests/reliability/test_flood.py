"""A flood of tiny messages from one connection is throttled, losslessly.

Real uvicorn on loopback (a thread, so the test can set a low per-connection rate and
read the log with caplog), real WebSocket clients. The flooder is slowed down (the server
stops reading its socket: TCP back-pressure), others keep being served, and every valid
message of the flood is still applied in order: throttling never drops edits.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from reliability_helpers import TIMEOUT
from websockets.asyncio.client import ClientConnection, connect

from partywidget.server import Limits, ServerThread, create_app, run_in_thread

pytestmark = pytest.mark.timeout(120)

RATE = 300


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    limits = Limits(max_messages_per_second=RATE, message_burst=RATE)
    with run_in_thread(create_app(limits=limits)) as thread:
        yield thread


async def _recv_until(ws: ClientConnection, needle: str) -> list[str]:
    seen: list[str] = []
    async with asyncio.timeout(60):
        while True:
            message = await ws.recv()
            assert isinstance(message, str)
            seen.append(message)
            if needle in message:
                return seen


async def test_flood_is_throttled_logged_and_lossless(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="partywidget.server")
    room = f"{server.url}/parties/main/flood"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert (await client.put(f"{room}/store", content="[{},{}]")).status_code == 201
    ws = f"{server.ws_url}/parties/main/flood?_pk="
    count = 4 * RATE
    async with (
        connect(ws + "flooder", open_timeout=TIMEOUT) as flooder,
        connect(ws + "other", open_timeout=TIMEOUT, max_queue=None) as other,
    ):
        for i in range(count):
            await flooder.send(f's[{{}},{{"n":{i}}},1]')
            if i % 3 == 0:
                await flooder.send("x")  # ignored messages count against the rate too

        def throttled() -> bool:
            return any(
                "messages/s" in r.getMessage()
                and "throttl" in r.getMessage()
                and "id=flooder" in r.getMessage()
                for r in caplog.records
            )

        async with asyncio.timeout(TIMEOUT):
            while not throttled():
                await asyncio.sleep(0.05)
        # Others are served while the flooder waits: a bystander's edit gets through.
        async with connect(ws + "bystander", open_timeout=TIMEOUT) as bystander:
            await bystander.send('s[{},{"bystander":1},1]')
            seen = await _recv_until(other, '"bystander"')
        await flooder.send('s[{},{"flood":"done"},1]')
        seen += await _recv_until(other, '"flood":"done"')
    # Lossless and in order: "other" saw every value of n, ascending.
    numbers = [json.loads(m[1:])[1]["n"] for m in seen if m.startswith('s[{},{"n":')]
    assert numbers == list(range(count))
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        body = json.loads((await client.get(f"{room}/store")).text)
    assert body[1] == {"n": count - 1, "bystander": 1, "flood": "done"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_normal_traffic_is_not_throttled(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="partywidget.server")
    room = f"{server.url}/parties/main/calm"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert (await client.put(f"{room}/store", content="[{},{}]")).status_code == 201
    ws = f"{server.ws_url}/parties/main/calm?_pk="
    async with connect(ws + "a", open_timeout=TIMEOUT) as a, connect(ws + "b") as b:
        for i in range(RATE // 2):  # within the burst
            await a.send(f's[{{}},{{"n":{i}}},1]')
        await _recv_until(b, f'"n":{RATE // 2 - 1}')
    assert not any("throttl" in r.getMessage() for r in caplog.records)
