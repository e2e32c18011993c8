"""PartySocket against real ``websockets`` servers on loopback.

Every server here is a real WebSocket (or TCP) server on 127.0.0.1 with an OS-chosen
port. Delays are small (tens of milliseconds) to keep the file fast; assertions are on
observable behaviour (what the server received, events, the computed backoff), never on
wall time: we wait for conditions with generous timeouts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import Server as WSServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from partywidget.partykit.socket import (
    CLOSED,
    CONNECTING,
    OPEN,
    CloseEvent,
    ErrorEvent,
    MessageEvent,
    OpenEvent,
    PartySocket,
    party_url,
)
from support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
FAST: dict[str, Any] = {
    "min_reconnection_delay": 0.01,
    "max_reconnection_delay": 0.05,
    "connection_timeout": 2.0,
}

Handler = Callable[["Server", ServerConnection], Awaitable[None]]


# --------------------------------------------------------------------------- helpers


async def record_messages(server: Server, ws: ServerConnection) -> None:
    async for message in ws:
        server.received.append(message)


class Server:
    """A real websockets server on 127.0.0.1:0 that records what it sees.

    ``handler(server, ws)`` decides what each connection does (default: record every
    message it receives).
    """

    def __init__(self, handler: Handler = record_messages, **serve_kwargs: Any) -> None:
        self.handler = handler
        self.serve_kwargs = serve_kwargs
        self.connections: list[ServerConnection] = []
        self.paths: list[str] = []
        self.received: list[str | bytes] = []
        self.close_codes: list[int | None] = []
        self._server: WSServer | None = None

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        assert ws.request is not None
        self.paths.append(ws.request.path)
        try:
            await self.handler(self, ws)
        except ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            self.close_codes.append(ws.close_code)

    async def __aenter__(self) -> Server:
        self._server = await serve(self._handle, "127.0.0.1", 0, **self.serve_kwargs)
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        self.host = f"127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


class Events:
    """Records every event a socket dispatches, in order."""

    def __init__(self, socket: PartySocket) -> None:
        self.all: list[Any] = []
        for type_ in ("open", "message", "close", "error"):
            socket.add_event_listener(type_, self.all.append)

    def of(self, cls: type[Any]) -> list[Any]:
        return [e for e in self.all if isinstance(e, cls)]


@pytest.fixture(autouse=True)
async def no_unhandled_task_errors() -> AsyncIterator[None]:
    """Fail the test if any task dies with an unhandled exception on the loop."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield
    import gc

    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert not errors, errors


def supervisor_tasks() -> list[asyncio.Task[Any]]:
    """PartySocket connection supervisors (the only tasks that ever reconnect) still
    running on this loop."""
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and getattr(t.get_coro(), "__qualname__", "") == "PartySocket._run"
    ]


def refused_host() -> str:
    """A loopback address where nothing listens (connection refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


# --------------------------------------------------------------------------- URLs

URL_CASES: list[dict[str, Any]] = [
    {"host": "127.0.0.1:1999", "room": "r1"},
    {"host": "localhost:1999", "room": "r1", "party": "chat"},
    {"host": "localhost", "room": "r1"},
    {"host": "http://localhost:1999/", "room": "r1"},
    {"host": "https://example.com", "room": "r1"},
    {"host": "ws://my.partykit.dev", "room": "r1", "protocol": "ws"},
    {"host": "example.com", "room": "r1", "protocol": "wss"},
    {"host": "192.168.1.2:80", "room": "r"},
    {"host": "10.0.0.1", "room": "r"},
    {"host": "172.16.0.1", "room": "r"},
    {"host": "172.31.9.9", "room": "r"},
    {"host": "172.32.0.1", "room": "r"},
    {"host": "172.2.0.1", "room": "r"},
    {"host": "172.100.0.1", "room": "r"},
    {"host": "[::ffff:7f00:1]:1999", "room": "r"},
    {"host": "127.0.0.1", "room": "r"},
    {"host": "h.example", "room": "r", "path": "a/b", "prefix": "custom"},
    {"host": "h.example", "room": "r", "base_path": "only/this"},
    {"host": "h.example", "room": "r", "party": None},
    {"host": "h.example", "room": "r", "party": ""},
    {
        "host": "127.0.0.1:1",
        "room": "r",
        "query": {"token": "a b&c=d/é~*'()!", "n": 1, "f": 1.5, "t": True, "none": None},
    },
    {"host": "127.0.0.1:1", "room": "r", "query": {"b": "1", "10": "x", "2": "y", "01": "z"}},
    {"host": "127.0.0.1:1", "room": "r", "query": {"e": 1e21, "s": 1e-7, "big": 123e18}},
    {"host": "127.0.0.1:1", "room": "r", "query": {"_pk": "dup", "x": "\U0001f600"}},
    {"host": "127.0.0.1:1", "room": "r", "query": {"a": -2.5e-8, "b": 0.000001, "c": 1 / 3}},
]

EXPECTED_URLS = [
    "ws://127.0.0.1:1999/parties/main/r1?_pk=ID",
    "ws://localhost:1999/parties/chat/r1?_pk=ID",
    "wss://localhost/parties/main/r1?_pk=ID",
    "ws://localhost:1999/parties/main/r1?_pk=ID",
    "wss://example.com/parties/main/r1?_pk=ID",
    "ws://my.partykit.dev/parties/main/r1?_pk=ID",
    "wss://example.com/parties/main/r1?_pk=ID",
    "ws://192.168.1.2:80/parties/main/r?_pk=ID",
    "ws://10.0.0.1/parties/main/r?_pk=ID",
    "ws://172.16.0.1/parties/main/r?_pk=ID",
    "ws://172.31.9.9/parties/main/r?_pk=ID",
    "wss://172.32.0.1/parties/main/r?_pk=ID",
    "ws://172.2.0.1/parties/main/r?_pk=ID",
    "wss://172.100.0.1/parties/main/r?_pk=ID",
    "ws://[::ffff:7f00:1]:1999/parties/main/r?_pk=ID",
    "wss://127.0.0.1/parties/main/r?_pk=ID",
    "wss://h.example/custom/main/r/a/b?_pk=ID",
    "wss://h.example/only/this?_pk=ID",
    "wss://h.example/parties/main/r?_pk=ID",
    "wss://h.example/parties//r?_pk=ID",
    "ws://127.0.0.1:1/parties/main/r?_pk=ID&token=a+b%26c%3Dd%2F%C3%A9%7E*%27%28%29%21&n=1&f=1.5&t=true",
    "ws://127.0.0.1:1/parties/main/r?_pk=ID&2=y&10=x&b=1&01=z",
    "ws://127.0.0.1:1/parties/main/r?_pk=ID&e=1e%2B21&s=1e-7&big=123000000000000000000",
    "ws://127.0.0.1:1/parties/main/r?_pk=ID&_pk=dup&x=%F0%9F%98%80",
    "ws://127.0.0.1:1/parties/main/r?_pk=ID&a=-2.5e-8&b=0.000001&c=0.3333333333333333",
]


def test_party_url_table() -> None:
    """partysocket's URL layout and host rule, read from its source (see the node test
    for the same table checked against partysocket itself)."""
    got = [party_url(**case, id="ID") for case in URL_CASES]
    assert got == EXPECTED_URLS


@pytest.mark.node
def test_party_url_matches_partysocket() -> None:
    """Run the real partysocket 1.3.0 on the same options and compare URL, room URL,
    host, name and id."""
    node = shutil.which("node")
    assert node, "node is required"
    script = r"""
import PartySocket from 'partysocket';
const cases = JSON.parse(process.argv[1]);
class NoWS { constructor() { throw new Error('no connection in this test'); } }
const out = [];
for (const c of cases) {
  const {base_path, ...rest} = c;
  const opts = {...rest, basePath: base_path, id: 'ID', startClosed: true, WebSocket: NoWS};
  if (opts.party === null) delete opts.party;
  const s = new PartySocket(opts);
  const url = typeof s._url === 'string' ? s._url : await s._url();
  out.push({url, roomUrl: s.roomUrl, host: s.host, name: s.name, id: s.id});
}
console.log(JSON.stringify(out));
"""
    cases = [dict(c) for c in URL_CASES]
    for c in cases:
        c.setdefault("base_path", None)
    proc = subprocess.run(
        [node, "--input-type=module", "-e", script, json.dumps(cases)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    js = json.loads(proc.stdout)
    for case, got in zip(URL_CASES, js, strict=True):
        sock = PartySocket(**case, id="ID", start_closed=True)
        assert party_url(**case, id="ID") == got["url"], case
        assert sock.room_url == got["roomUrl"], case
        assert sock.host == got["host"], case
        assert sock.name == got["name"], case
        assert sock.id == got["id"] == "ID"
    # And a query function: evaluated to the same URL.
    assert js[0]["url"] == EXPECTED_URLS[0]


def test_attributes_and_defaults() -> None:
    sock = PartySocket("https://Example.com/", "room-1", party="chat", start_closed=True)
    assert sock.host == "Example.com"
    assert sock.room == "room-1"
    assert sock.name == "chat"
    assert sock.room_url == "wss://Example.com/parties/chat/room-1"
    assert len(sock.id) == 36 and sock.id.count("-") == 4  # a UUID
    assert PartySocket("h", "r", start_closed=True).id != sock.id
    assert sock.url == ""
    assert sock.ready_state == CLOSED
    assert sock.retry_count == 0
    assert sock.party_socket_options["party"] == "chat"
    assert sock.party_socket_options["min_reconnection_delay"] == 3.0
    assert sock.party_socket_options["max_retries"] == math.inf
    # Backoff formula with partysocket's defaults (3 s, x1.3, capped at 10 s).
    assert [round(sock.reconnection_delay(n), 6) for n in range(7)] == [
        0.0,
        3.0,
        3.9,
        5.07,
        6.591,
        8.5683,
        10.0,
    ]
    assert sock.reconnection_delay(10**6) == 10.0  # no float overflow after hours down
    with pytest.raises(ValueError):
        PartySocket("h", "r", path="/x")
    with pytest.raises(ValueError):
        PartySocket("h", "")
    with pytest.raises(ValueError):
        PartySocket("h", "a#b")
    with pytest.raises(TypeError):
        PartySocket("h", "r", query={"x": object()})  # type: ignore[dict-item]


def test_constructed_without_loop_connects_when_started() -> None:
    """No loop at construction: nothing happens until the socket is used in a loop."""
    with ThreadedServer() as server:
        sock = PartySocket(server.host, "r", id="lazy", **FAST)
        assert sock.ready_state == CONNECTING
        assert sock.send("queued before start") is False
        assert sock.url == ""
        assert server.connections == 0

        async def main() -> None:
            async with sock:
                await sock.wait_open(timeout=10)
                await eventually(lambda: server.received == ["queued before start"])

        asyncio.run(main())
        assert server.paths == ["/parties/main/r?_pk=lazy"]
        assert sock.ready_state == CLOSED


def test_loop_on_a_daemon_thread_and_sends_from_the_main_thread() -> None:
    """The widget's layout: the socket lives on a loop in a daemon thread while the
    kernel's main thread calls ``send()``; order is kept, nothing blocks."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        with ThreadedServer() as server:
            sock = PartySocket(server.host, "r", **FAST)  # no loop in this thread
            asyncio.run_coroutine_threadsafe(sock.wait_open(timeout=10), loop).result(15)
            assert sock.ready_state == OPEN
            assert [sock.send(f"m{i}") for i in range(300)] == [True] * 300
            deadline = time.monotonic() + 10
            while len(server.received) < 300 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server.received == [f"m{i}" for i in range(300)]
            sock.close()  # from the main thread too
            asyncio.run_coroutine_threadsafe(sock.aclose(), loop).result(15)
            assert sock.ready_state == CLOSED
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# --------------------------------------------------------------------------- connecting


async def test_connects_sends_and_receives() -> None:
    async def echo(server: Server, ws: ServerConnection) -> None:
        async for message in ws:
            server.received.append(message)
            await ws.send(message)

    async with Server(echo) as server:
        sock = PartySocket(server.host, "room", id="abc", query={"token": "t 1"}, **FAST)
        events = Events(sock)
        await sock.wait_open(timeout=10)
        assert sock.ready_state == OPEN
        assert sock.url == f"ws://{server.host}/parties/main/room?_pk=abc&token=t+1"
        assert server.paths == ["/parties/main/room?_pk=abc&token=t+1"]
        assert sock.send("hello") is True
        assert sock.send(b"\x00\x01") is True
        await eventually(lambda: len(events.of(MessageEvent)) == 2)
        assert [e.data for e in events.of(MessageEvent)] == ["hello", b"\x00\x01"]
        assert events.of(OpenEvent) == [OpenEvent(sock.url)]
        await sock.aclose()
        assert sock.ready_state == CLOSED
        await eventually(lambda: server.close_codes == [1000])
        assert events.all[-1] == CloseEvent(1000, "", True)


async def test_async_iteration_yields_messages_until_closed() -> None:
    async def talk(server: Server, ws: ServerConnection) -> None:
        await ws.send("one")
        await ws.send(b"two")
        await ws.send("three")
        await ws.wait_closed()

    async with Server(talk) as server, PartySocket(server.host, "r", **FAST) as sock:
        got: list[str | bytes] = []
        async for message in sock:
            got.append(message)
            if len(got) == 3:
                sock.close()
        assert got == ["one", b"two", "three"]
        # Closed for good: a new iteration ends at once, wait_open refuses.
        assert [m async for m in sock] == []
        with pytest.raises(ConnectionError):
            await sock.wait_open(timeout=5)


async def test_iterator_buffers_from_creation_and_headers_are_sent() -> None:
    """Messages arriving between ``aiter()`` and the first ``await`` are not lost;
    several iterators each get every message; ``headers`` reach the server."""
    seen_auth: list[str | None] = []

    async def talk(server: Server, ws: ServerConnection) -> None:
        assert ws.request is not None
        seen_auth.append(ws.request.headers.get("Authorization"))
        async for message in ws:
            assert isinstance(message, str)
            await ws.send(f"echo {message}")

    async with Server(talk) as server:
        sock = PartySocket(server.host, "r", headers={"Authorization": "Bearer x"}, **FAST)
        await sock.wait_open(timeout=10)
        first, second = aiter(sock), aiter(sock)
        got: list[str | bytes] = []
        sock.add_event_listener("message", lambda e: got.append(e.data))
        sock.send("a")
        sock.send("b")
        await eventually(lambda: len(got) == 2)
        assert [await anext(first), await anext(first)] == ["echo a", "echo b"]
        assert [await anext(second), await anext(second)] == ["echo a", "echo b"]
        assert seen_auth == ["Bearer x"]
        with pytest.raises(TypeError):
            sock.send(123)  # type: ignore[arg-type]
        await sock.aclose()
        with pytest.raises(StopAsyncIteration):
            await anext(first)


async def test_pk_kept_and_query_reevaluated_before_each_connect() -> None:
    """Server drops the first connections; each reconnect uses the same _pk and a
    fresh token from the (sync, then async) query function."""

    async def drop_first_three(server: Server, ws: ServerConnection) -> None:
        if len(server.connections) <= 3:
            await ws.close(4000, "go away")
            return
        await record_messages(server, ws)

    tokens = iter(range(100))

    def sync_query() -> dict[str, str]:
        return {"token": f"s{next(tokens)}"}

    async def async_query() -> dict[str, str | None]:
        await asyncio.sleep(0)
        return {"token": f"a{next(tokens)}", "skip": None}

    for query, prefix in ((sync_query, "s"), (async_query, "a")):
        async with Server(drop_first_three) as server:
            sock = PartySocket(server.host, "r", query=query, **FAST)
            events = Events(sock)
            await eventually(lambda: len(events.of(OpenEvent)) == 4)  # noqa: B023
            pks = {p.split("_pk=")[1].split("&")[0] for p in server.paths}
            assert pks == {sock.id}
            got = [p.split("token=")[1] for p in server.paths]
            n = int(got[0][1:])
            assert got == [f"{prefix}{i}" for i in range(n, n + 4)]
            assert sock.url.endswith(f"token={got[-1]}")
            closes = events.of(CloseEvent)
            assert [(c.code, c.reason, c.was_clean) for c in closes] == [
                (4000, "go away", True)
            ] * 3
            await sock.aclose()


async def test_query_function_failure_is_an_error_event_then_retried() -> None:
    calls = 0

    def flaky() -> dict[str, str]:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError(f"token service down {calls}")
        return {"token": "ok"}

    async with Server() as server:
        sock = PartySocket(server.host, "r", query=flaky, **FAST)
        events = Events(sock)
        await sock.wait_open(timeout=10)
        errors = events.of(ErrorEvent)
        assert [str(e.error) for e in errors] == ["token service down 1", "token service down 2"]
        assert server.paths == [f"/parties/main/r?_pk={sock.id}&token=ok"]
        await sock.aclose()


# --------------------------------------------------------------------------- the queue


async def test_queue_while_disconnected_flushes_in_order_before_open() -> None:
    async with Server() as server:
        sock = PartySocket(server.host, "r", start_closed=True, **FAST)
        assert sock.ready_state == CLOSED
        assert [sock.send(f"q{i}") for i in range(5)] == [False] * 5
        assert sock.buffered_amount == 10

        def on_open(_e: OpenEvent) -> None:
            sock.send("from open listener")
            sock.remove_event_listener("open", on_open)

        sock.add_event_listener("open", on_open)
        sock.reconnect()
        await eventually(lambda: len(server.received) == 6)
        assert server.received == [f"q{i}" for i in range(5)] + ["from open listener"]
        assert sock.buffered_amount == 0

        # Drop the connection from the server side; send while the socket waits to
        # reconnect (inside the close listener it is certainly disconnected).
        results: list[bool] = []

        def on_close(_e: CloseEvent) -> None:
            results.extend(sock.send(f"offline{i}") for i in range(3))

        sock.add_event_listener("close", on_close)
        await server.connections[0].close(4001)
        await eventually(lambda: len(server.received) == 9)
        assert results == [False, False, False]
        assert server.received[6:] == ["offline0", "offline1", "offline2"]
        assert len(server.connections) == 2
        sock.remove_event_listener("close", on_close)
        await sock.aclose()


async def test_max_enqueued_messages_drops_the_excess() -> None:
    async with Server() as server:
        sock = PartySocket(server.host, "r", start_closed=True, max_enqueued_messages=2, **FAST)
        assert [sock.send(str(i)) for i in range(5)] == [False] * 5
        assert sock.drain_queued_messages() == ["0", "1"]
        for i in range(5):
            sock.send(f"m{i}")
        sock.reconnect()
        await sock.wait_open(timeout=10)
        assert sock.send("live") is True  # the limit only applies while disconnected
        await eventually(lambda: len(server.received) == 3)
        assert server.received == ["m0", "m1", "live"]
        await sock.aclose()


async def test_send_from_another_thread_keeps_order() -> None:
    async with Server() as server, PartySocket(server.host, "r", **FAST) as sock:
        await sock.wait_open(timeout=10)

        def worker() -> list[bool]:
            assert threading.current_thread() is not threading.main_thread()
            return [sock.send(f"t{i}") for i in range(200)]

        results = await asyncio.to_thread(worker)
        assert all(results)
        await eventually(lambda: len(server.received) == 200)
        assert server.received == [f"t{i}" for i in range(200)]

        # close() from a thread is handed over too.
        await asyncio.to_thread(sock.close, 4002, "from thread")
        await eventually(lambda: server.close_codes == [4002])
        assert sock.ready_state == CLOSED


# --------------------------------------------------------------------------- backoff


async def test_backoff_sequence_and_max_retries() -> None:
    """A server refusing every handshake: attempts follow partysocket's formula, then
    after ``max_retries`` the socket stays closed with a final close event."""
    attempts = 0

    def refuse(_conn: ServerConnection, _request: Any) -> Response:
        nonlocal attempts
        attempts += 1
        return Response(403, "Forbidden", Headers(), b"no")

    async with Server(process_request=refuse) as server:
        sock = PartySocket(
            server.host,
            "r",
            min_reconnection_delay=0.01,
            reconnection_delay_grow_factor=2,
            max_reconnection_delay=0.05,
            max_retries=5,
        )
        delays: list[tuple[int, float]] = []
        sock.add_event_listener(
            "close", lambda _e: delays.append((sock.retry_count, sock.last_delay))
        )
        events = Events(sock)
        async with asyncio.timeout(10):
            got = [m async for m in sock]  # iteration ends when the socket gives up
        assert got == []
        assert attempts == 6  # the first attempt and 5 retries
        assert delays == [
            (1, 0.01),
            (2, 0.02),
            (3, 0.04),
            (4, 0.05),
            (5, 0.05),
            (5, 0.05),  # retries exhausted: no further attempt
        ]
        assert [type(e).__name__ for e in events.all] == ["ErrorEvent", "CloseEvent"] * 6
        assert all("403" in str(e.error) for e in events.of(ErrorEvent))
        assert all(e.code == 1006 and not e.was_clean for e in events.of(CloseEvent))
        assert sock.ready_state == CLOSED
        assert sock.retry_count == 5
        assert sock.should_reconnect  # as in partysocket: only close() clears it
        with pytest.raises(ConnectionError):
            await sock.wait_open(timeout=5)
        # reconnect() starts over with a fresh retry count.
        sock.reconnect()
        await eventually(lambda: attempts == 12)
        await sock.aclose()


async def test_connection_refused_retries_until_server_appears() -> None:
    host = refused_host()
    sock = PartySocket(host, "r", **FAST)
    events = Events(sock)
    await eventually(lambda: len(events.of(ErrorEvent)) >= 3)
    assert all(isinstance(e.error, OSError) for e in events.of(ErrorEvent))
    assert sock.ready_state in (CLOSED, CONNECTING)
    await sock.aclose()


async def test_min_uptime_resets_retry_count() -> None:
    """Quick drops grow the backoff; a connection that stays up ``min_uptime`` resets
    the retry count, so the next drop waits ``min_reconnection_delay`` again."""

    async def drop_first_three(server: Server, ws: ServerConnection) -> None:
        if len(server.connections) <= 3:
            await ws.close(4000)
            return
        await record_messages(server, ws)

    async with Server(drop_first_three) as server:
        sock = PartySocket(
            server.host,
            "r",
            min_reconnection_delay=0.01,
            reconnection_delay_grow_factor=2,
            max_reconnection_delay=1.0,
            min_uptime=0.2,
        )
        seen: list[tuple[int, float]] = []
        sock.add_event_listener(
            "close", lambda _e: seen.append((sock.retry_count, sock.last_delay))
        )
        opens: list[int] = []
        sock.add_event_listener("open", lambda _e: opens.append(sock.retry_count))
        await eventually(lambda: len(server.connections) == 4 and sock.ready_state == OPEN)
        assert seen == [(1, 0.01), (2, 0.02), (3, 0.04)]
        assert opens == [0, 1, 2, 3]
        await eventually(lambda: sock.retry_count == 0)  # after min_uptime
        await server.connections[3].close(4000)
        await eventually(lambda: len(seen) == 4)
        assert seen[3] == (1, 0.01)
        await eventually(lambda: len(server.connections) == 5)
        await sock.aclose()


async def test_connection_timeout_against_a_silent_tcp_server() -> None:
    """A TCP server that accepts and never answers the HTTP upgrade."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    tcp = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        sock = PartySocket(
            f"127.0.0.1:{port}",
            "r",
            connection_timeout=0.2,
            max_retries=1,
            **{k: v for k, v in FAST.items() if k != "connection_timeout"},
        )
        events = Events(sock)
        with pytest.raises(ConnectionError):
            await sock.wait_open(timeout=10)
        assert len(accepted) == 2
        errors = events.of(ErrorEvent)
        assert [(type(e.error), e.message) for e in errors] == [(TimeoutError, "TIMEOUT")] * 2
        assert events.of(CloseEvent) == [CloseEvent(1006, "timeout", False)] * 2
        assert sock.ready_state == CLOSED
    finally:
        for w in accepted:
            w.close()
        tcp.close()
        await tcp.wait_closed()


# --------------------------------------------------------------------------- closing


async def test_server_close_then_reconnect() -> None:
    async with Server() as server:
        sock = PartySocket(server.host, "r", **FAST)
        events = Events(sock)
        await sock.wait_open(timeout=10)
        await server.connections[0].close(4003, "restart")
        await eventually(lambda: len(events.of(OpenEvent)) == 2)
        assert events.of(CloseEvent) == [CloseEvent(4003, "restart", True)]
        assert sock.send("after") is True
        await eventually(lambda: server.received == ["after"])
        await sock.aclose()


async def test_close_stops_for_good_and_reconnect_revives() -> None:
    async with Server() as server:
        sock = PartySocket(server.host, "r", **FAST)
        events = Events(sock)
        await sock.wait_open(timeout=10)
        assert len(supervisor_tasks()) == 1
        sock.close(4004, "bye")
        # The close event is dispatched synchronously by close(), as in partysocket.
        assert events.all[-1] == CloseEvent(4004, "bye", True)
        assert sock.ready_state == CLOSED
        assert not sock.should_reconnect
        await sock.aclose()  # waits for every internal task (and the handshake, up to 1 s)
        await eventually(lambda: server.close_codes == [4004])
        # No reconnect can follow: only the socket's supervisor task reconnects, and it
        # has ended (a proof by state, not by waiting a while).
        assert supervisor_tasks() == []
        assert len(server.connections) == 1
        assert sock.send("while closed") is False
        sock.reconnect()
        await eventually(lambda: server.received == ["while closed"])
        assert len(server.connections) == 2
        await sock.aclose()


async def test_reconnect_forces_a_new_connection() -> None:
    async with Server() as server:
        sock = PartySocket(server.host, "r", **FAST)
        events = Events(sock)
        await sock.wait_open(timeout=10)
        sock.reconnect(4005, "again")
        assert events.all[-1] == CloseEvent(4005, "again", True)
        await eventually(lambda: len(events.of(OpenEvent)) == 2)
        await eventually(lambda: server.close_codes == [4005])
        assert server.paths[0] == server.paths[1]  # same _pk
        assert sock.retry_count == 0
        with pytest.raises(ValueError):
            sock.reconnect(1001)  # not an application close code
        await sock.aclose()


async def test_oversize_message_close_1009_is_surfaced() -> None:
    async with Server(max_size=1000) as server:
        sock = PartySocket(server.host, "r", **FAST)
        events = Events(sock)
        await sock.wait_open(timeout=10)
        sock.send("x" * 2000)
        await eventually(lambda: len(events.of(CloseEvent)) == 1)
        assert events.of(CloseEvent)[0].code == 1009
        await eventually(lambda: len(events.of(OpenEvent)) == 2)  # and it reconnects
        await sock.aclose()

    # The client's own receive limit: the server's message is too big for us.
    async def big(server: Server, ws: ServerConnection) -> None:
        await ws.send("y" * 500)
        await ws.wait_closed()

    async with Server(big) as server:
        sock = PartySocket(server.host, "r", max_message_size=100, max_retries=0, **FAST)
        events = Events(sock)
        await eventually(lambda: len(events.of(CloseEvent)) == 1)
        assert events.of(CloseEvent)[0].code == 1009
        assert events.of(MessageEvent) == []
        await sock.aclose()


# --------------------------------------------------------------------------- keepalive


class ThreadedServer:
    """A websockets server on its own loop in a daemon thread, so that blocking the
    test's loop does not block the server (and vice versa)."""

    def __init__(self, **serve_kwargs: Any) -> None:
        self.serve_kwargs = serve_kwargs
        self.connections = 0
        self.paths: list[str] = []
        self.received: list[str | bytes] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        assert ws.request is not None
        self.paths.append(ws.request.path)
        try:
            async for message in ws:
                self.received.append(message)
        except ConnectionClosed:
            pass

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.server = await serve(self._handle, "127.0.0.1", 0, **self.serve_kwargs)
            self.host = f"127.0.0.1:{next(iter(self.server.sockets)).getsockname()[1]}"
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def test_blocked_loop_loses_keepalive_then_reconnects() -> None:
    """A cell blocking the loop longer than the server's keepalive: the server drops
    the connection; when the loop resumes the socket notices and reconnects."""
    with ThreadedServer(ping_interval=0.1, ping_timeout=0.1) as server:
        sock = PartySocket(server.host, "r", ping_interval=0.3, ping_timeout=0.3, **FAST)
        events = Events(sock)
        await sock.wait_open(timeout=10)
        time.sleep(1.0)  # block the loop, as a long synchronous notebook cell does
        await eventually(lambda: len(events.of(OpenEvent)) == 2)
        assert events.of(CloseEvent)[0].code == 1011  # the server's keepalive timeout
        assert server.connections == 2
        assert sock.send("alive") is True
        await sock.aclose()


async def test_silent_server_detected_by_client_keepalive() -> None:
    """The server's loop freezes (no pongs): our keepalive closes the connection and
    the socket reconnects once the server answers again."""
    with ThreadedServer(ping_interval=None) as server:
        sock = PartySocket(
            server.host, "r", ping_interval=0.1, ping_timeout=0.1, close_timeout=0.2, **FAST
        )
        events = Events(sock)
        await sock.wait_open(timeout=10)
        frozen = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), server.loop)
        frozen.result(5)
        server.loop.call_soon_threadsafe(time.sleep, 1.0)  # freeze the server's loop
        await eventually(lambda: len(events.of(CloseEvent)) >= 1)
        first = events.of(CloseEvent)[0]
        assert (first.code, first.reason, first.was_clean) == (
            1011,
            "keepalive ping timeout",
            False,
        )
        await eventually(lambda: sock.ready_state == OPEN and len(events.of(OpenEvent)) >= 2)
        await sock.aclose()


# --------------------------------------------------------------------------- listeners


async def test_listener_errors_are_logged_and_do_not_break_the_socket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def talk(server: Server, ws: ServerConnection) -> None:
        await ws.send("m1")
        await ws.send("m2")
        await ws.wait_closed()

    async with Server(talk) as server:
        sock = PartySocket(server.host, "r", **FAST)
        got: list[str] = []
        async_got: list[str] = []

        def bad(_e: MessageEvent) -> None:
            raise RuntimeError("sync listener bug")

        async def bad_async(e: MessageEvent) -> None:
            await asyncio.sleep(0)
            async_got.append(str(e.data))
            raise RuntimeError("async listener bug")

        sock.add_event_listener("message", bad)
        sock.add_event_listener("message", bad_async)
        sock.add_event_listener("message", lambda e: got.append(e.data))
        sock.add_event_listener("message", bad)  # duplicate: ignored
        with caplog.at_level(logging.ERROR, logger="partywidget.partykit.socket"):
            # (each async listener logs its error in the step that appended)
            await eventually(lambda: got == ["m1", "m2"] and len(async_got) == 2)
        assert sock.ready_state == OPEN
        texts = [r.getMessage() for r in caplog.records]
        assert sum("message listener" in t for t in texts) == 4
        sock.remove_event_listener("message", bad)
        sock.remove_event_listener("message", bad)  # absent: no error
        with pytest.raises(ValueError):
            sock.add_event_listener("nope", bad)  # type: ignore[arg-type]
        await sock.aclose()
