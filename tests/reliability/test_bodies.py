"""Slow and concurrent request bodies are bounded: a deadline, and a budget in flight.

Real uvicorn on loopback; bodies are streamed by a real HTTP client from a generator the
test controls, so "never finishes" and "many at once" are driven by protocol.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from partywidget.server.app import create_app
from partywidget.server.room import MIB, Limits
from partywidget.server.thread import ServerThread, run_in_thread
from support.reliability import TIMEOUT

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def body_limited_server() -> Iterator[ServerThread]:
    limits = Limits(body_timeout=1.0, max_body_size=4 * MIB, max_bodies_in_flight=7 * MIB)
    with run_in_thread(create_app(limits=limits)) as thread:
        yield thread


def test_a_body_that_never_finishes_gets_408(body_limited_server: ServerThread) -> None:
    """Half a body, then silence (a raw socket: HTTP clients only read a response
    once their request is sent)."""
    with socket.create_connection(("127.0.0.1", body_limited_server.port), timeout=TIMEOUT) as sock:
        sock.sendall(
            b"PUT /parties/main/slow-body/store HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 100\r\n\r\n[{},"
        )
        response = sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 408"), response
    url = f"{body_limited_server.url}/parties/main/slow-body/store"
    with httpx.Client(timeout=TIMEOUT) as client:
        assert client.get(url).content == b""  # nothing stored
        assert client.put(url, content=b"[{},{}]").status_code == 201


async def test_bodies_in_flight_are_capped_with_503(body_limited_server: ServerThread) -> None:
    """Two 3 MiB bodies held open leave under 1 MiB of the 7 MiB budget: a third body
    of 1 MiB is refused (503, Retry-After), and once they finish it is accepted."""
    release = asyncio.Event()
    sent = [asyncio.Event(), asyncio.Event()]

    def held(i: int) -> AsyncIterator[bytes]:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b" " * MIB
            sent[i].set()
            await release.wait()
            yield b"[{},{}]"

        return body()

    base = f"{body_limited_server.url}/parties/main/budget-"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        holders = [
            asyncio.ensure_future(client.put(f"{base}{i}/store", content=held(i))) for i in range(2)
        ]
        for event in sent:
            await asyncio.wait_for(event.wait(), TIMEOUT)
        budget = body_limited_server.app.state.registry.body_budget
        async with asyncio.timeout(TIMEOUT):
            while budget.used < 6 * MIB:  # the server has read both bodies so far
                await asyncio.sleep(0.01)
        third = await client.put(f"{base}x/store", content=b" " * MIB + b"[{},{}]")
        assert third.status_code == 503
        assert third.headers["retry-after"] == "1"
        release.set()
        statuses = [(await h).status_code for h in holders]
        assert statuses == [201, 201]
        after = await client.put(f"{base}y/store", content=b" " * MIB + b"[{},{}]")
        assert after.status_code == 201
