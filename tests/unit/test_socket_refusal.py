"""A server refusing the WebSocket handshake: the socket reports status and reason.

Real uvicorn on loopback running our room server, with a party whose
``on_before_connect`` refuses by token (403 with a reason) or crashes (500). A browser
only says "error"; the socket's ``error`` event and ``last_error`` carry the HTTP status
and the server's text, so a persister or widget can show why it is not connected.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, Response

from partywidget.partykit.socket import CloseEvent, ErrorEvent, OpenEvent, PartySocket
from partywidget.server import ServerThread, TinyBasePartyKitServer, create_app, run_in_thread

FAST: dict[str, Any] = {
    "min_reconnection_delay": 0.01,
    "max_reconnection_delay": 0.05,
    "connection_timeout": 10.0,
}


class Guarded(TinyBasePartyKitServer):
    """Lets ``token=ok`` in, refuses other tokens with 403, and fails on ``token=crash``."""

    @staticmethod
    async def on_before_connect(request: HTTPConnection, lobby: Any) -> Response | None:
        token = request.query_params.get("token")
        if token == "crash":
            raise RuntimeError("token service down")
        if token != "ok":
            return PlainTextResponse(f"token {token!r} expired", status_code=403)
        return None


@pytest.fixture(scope="module")
def guarded() -> Iterator[ServerThread]:
    with run_in_thread(create_app({"main": Guarded})) as server:
        yield server


class Recorder:
    def __init__(self, sock: PartySocket) -> None:
        self.events: list[Any] = []
        self.changed = asyncio.Event()
        for kind in ("open", "close", "error"):
            sock.add_event_listener(kind, self.record)

    def record(self, event: Any) -> None:
        self.events.append(event)
        self.changed.set()

    async def until(self, count: int, cls: type[Any]) -> list[Any]:
        async with asyncio.timeout(20):
            while len(found := [e for e in self.events if isinstance(e, cls)]) < count:
                self.changed.clear()
                await self.changed.wait()
        return found


async def test_a_403_refusal_carries_status_and_reason(guarded: ServerThread) -> None:
    token = {"token": "stale"}
    sock = PartySocket(guarded.host, "lab", query=lambda: token, **FAST)
    seen = Recorder(sock)
    errors = await seen.until(2, ErrorEvent)
    assert [(e.status, e.reason, e.refused) for e in errors] == [
        (403, "token 'stale' expired", True)
    ] * 2
    assert sock.last_error == errors[-1]
    assert sock.ready_state != PartySocket.OPEN
    # Each refusal is followed by a close event, as for any failed attempt.
    assert isinstance(seen.events[seen.events.index(errors[0]) + 1], CloseEvent)

    # The token is fixed: the next attempt opens and clears the error.
    token["token"] = "ok"
    await sock.wait_open(timeout=20)
    assert sock.last_error is None
    assert isinstance(seen.events[-1], OpenEvent)
    await sock.aclose()


async def test_a_500_and_an_unreachable_server_are_told_apart(guarded: ServerThread) -> None:
    sock = PartySocket(guarded.host, "lab", query={"token": "crash"}, max_retries=0, **FAST)
    seen = Recorder(sock)
    (error,) = await seen.until(1, ErrorEvent)
    assert error.status == 500
    assert error.refused and error.reason
    await sock.aclose()

    with socket.socket() as bound:  # a port held but not listening: connection refused
        bound.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{bound.getsockname()[1]}"
        sock = PartySocket(host, "lab", max_retries=0, **FAST)
        seen = Recorder(sock)
        (error,) = await seen.until(1, ErrorEvent)
        assert error.status is None and not error.refused
        assert isinstance(error.error, OSError)
        assert sock.last_error == error
        await sock.aclose()
