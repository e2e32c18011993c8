"""Hostile input, case by case, against a real ``partywidget serve`` subprocess.

For every case: the server stays up and serves others, no unhandled exception (no
traceback in its log), the room's stored content is unchanged, and the rejection is in
the log with its reason. The log is the subprocess's stderr (``--log-level info``).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from support.reliability import TIMEOUT, ServerProcess

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024
#: Each test's room and its content (unchanged by the test), for the final restart check.
BODIES: dict[str, str] = {}
INITIAL = '[{"t":{"r":{"c":1,"obj":"\\ufffd{\\"a\\":[1]}"}}},{"v":"x"}]'


class Hostile:
    """One server, one room with known content, and log inspection since a mark."""

    def __init__(self, server_subprocess: ServerProcess, room: str) -> None:
        self.server = server_subprocess
        self.room = room
        self.url = server_subprocess.store_url(room)
        self._mark = 0

    def mark(self) -> None:
        self._mark = len(self.server.log_text())

    def new_log(self) -> str:
        return self.server.log_text()[self._mark :]

    async def wait_log(self, pattern: str) -> str:
        """Wait until a log line since the mark matches ``pattern``; return it."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                match = re.search(pattern, self.new_log())
                if match:
                    line_start = self.new_log().rfind("\n", 0, match.start()) + 1
                    line_end = self.new_log().find("\n", match.end())
                    return self.new_log()[line_start:line_end]
                await asyncio.sleep(0.05)

    async def body(self) -> str:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(self.url)
        assert response.status_code == 200
        return response.text

    def ws(self, pk: str) -> Any:
        return connect(self.server.ws_url(self.room, pk), open_timeout=TIMEOUT, max_size=None)

    async def round_trip(self) -> None:
        """A valid edit from one connection reaches another: the server still serves."""
        async with self.ws("rt-a") as a, self.ws("rt-b") as b:
            for edit in ['s[{},{"alive":1},1]', 's[{},{"alive":"\ufffc"},1]']:  # set, delete
                await a.send(edit)
                assert await asyncio.wait_for(b.recv(), TIMEOUT) == edit


@pytest.fixture(scope="module")
def server_subprocess(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("hostile")
    process = ServerProcess(tmp / "rooms.sqlite3", tmp / "server.log").start()
    yield process
    process.stop()


@pytest.fixture
async def hostile(
    server_subprocess: ServerProcess, request: pytest.FixtureRequest
) -> AsyncIterator[Hostile]:
    room = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:60] + uuid.uuid4().hex[:8]
    h = Hostile(server_subprocess, room)
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert (await client.put(h.url, content=INITIAL)).status_code == 201
    before = await h.body()
    h.mark()
    yield h
    assert server_subprocess.running, "the server died"
    assert await h.body() == before, "rejected input changed the room"
    await h.round_trip()
    assert await h.body() == before
    BODIES[h.url] = before
    assert _unexpected_tracebacks(h.new_log()) == []


def _unexpected_tracebacks(log: str) -> list[str]:
    """Tracebacks in the log, except uvicorn's own report of invalid UTF-8 in a text
    frame (logged by uvicorn's websockets-sansio protocol before it closes with 1007;
    our application never sees the frame)."""
    blocks = re.split(r"\n(?=\d{4}-\d\d-\d\d )", log)
    return [
        b[:500]
        for b in blocks
        if "Traceback" in b and "Invalid UTF-8 sequence received from client" not in b
    ]


async def _put(h: Hostile, content: Any, **headers: str) -> int:
    async with httpx.AsyncClient(timeout=60) as client:
        # PUT to a second room: the first exists (205 would hide the validation).
        url = h.url.replace(f"/{h.room}/", f"/{h.room}-put/")
        response = await client.put(url, content=content, headers=headers)
        assert response.headers.get("access-control-allow-origin") == "*"
        if response.status_code >= 400:
            assert (await client.get(url)).text == ""  # nothing stored
        return response.status_code


async def _send(h: Hostile, message: str | bytes, *, text: bool | None = None) -> None:
    """Send from one connection, then a probe; the handler finished the message once the
    probe's broadcast reaches a second connection (messages of one socket are ordered)."""
    async with h.ws("hostile") as bad, h.ws("watcher") as watcher:
        await bad.send(message, text=text)
        await bad.send('s[{},{"probe":1},1]')
        await bad.send('s[{},{"probe":"\ufffc"},1]')  # leaves the room as it was
        got = await asyncio.wait_for(watcher.recv(), TIMEOUT)
        assert got == 's[{},{"probe":1},1]', got  # nothing of the bad message
        got = await asyncio.wait_for(watcher.recv(), TIMEOUT)
        assert got == 's[{},{"probe":"\ufffc"},1]', got


# -- size ---------------------------------------------------------------------------------
async def test_100_mb_body_with_length_is_refused(hostile: Hostile) -> None:
    assert await _put(hostile, b"[" + b" " * (100 * MIB) + b"]") == 413
    await hostile.wait_log(r"request body over \d+ bytes refused \(413\)")


async def test_100_mb_body_streamed_without_length_is_refused(hostile: Hostile) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * MIB

    assert await _put(hostile, chunks()) == 413
    await hostile.wait_log(r"request body over \d+ bytes refused \(413\)")


async def test_oversize_websocket_message_closes_1009(hostile: Hostile) -> None:
    async with hostile.ws("big") as ws:
        # Refused from the frame header on: the close may already arrive during send.
        with pytest.raises(ConnectionClosed) as closed:
            await ws.send('s[{"t":{"r":{"c":"' + "x" * (17 * MIB) + '"}}},{},1]')
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    await hostile.wait_log(r"message over \d+ bytes, closing with 1009")


# -- depth, ids ---------------------------------------------------------------------------
DEEP = "[" * 10_000 + "]" * 10_000


async def test_10000_deep_json_body(hostile: Hostile) -> None:
    assert await _put(hostile, DEEP) == 400
    deep_cell = '[{"t":{"r":{"c":' + DEEP + "}}},{}]"
    assert await _put(hostile, deep_cell) == 400
    await hostile.wait_log(r"PUT refused \(400\): JSON nested")


async def test_10000_deep_json_message(hostile: Hostile) -> None:
    await _send(hostile, "s" + DEEP)
    await _send(hostile, 's[{"t":{"r":{"c":' + DEEP + "}}},{},1]")
    await hostile.wait_log(r"rejected changes: JSON nested")


@pytest.mark.parametrize("where", ["table", "row", "cell", "value"])
async def test_1_mb_ids(hostile: Hostile, where: str) -> None:
    big = "i" * MIB
    ids = {"table": (big, "r", "c"), "row": ("t", big, "c"), "cell": ("t", "r", big)}
    if where == "value":
        tables: dict[str, Any] = {}
        values = {big: 1}
    else:
        t, r, c = ids[where]
        tables, values = {t: {r: {c: 1}}}, {}
    assert await _put(hostile, json.dumps([tables, values])) == 400
    await hostile.wait_log(r"PUT refused \(400\): id too long")
    await _send(hostile, "s" + json.dumps([tables, values, 1]))
    await hostile.wait_log(r"rejected changes: id too long")


async def test_overlong_and_control_room_names(hostile: Hostile) -> None:
    base = f"http://{hostile.server.host}/parties/main/"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert (await client.get(base + "r" * 300 + "/store")).status_code == 400
        assert (await client.get(base + "a%00b/store")).status_code == 400
        # A newline never matches a route at all (404 from the router, nothing touched).
        assert (await client.get(base + "a%0Ab/store")).status_code in (400, 404)
    # A 1 MB URL is refused by the HTTP parser itself; the server stays up.
    status = await asyncio.to_thread(
        _raw_status, hostile.server.host, "/parties/main/" + "r" * MIB + "/store"
    )
    assert status is None or status >= 400
    await hostile.wait_log(r"refused invalid room name")


# -- encodings ----------------------------------------------------------------------------
async def test_invalid_utf8_body(hostile: Hostile) -> None:
    # Decoded with U+FFFD replacements, which then misuse the JSON-cell marker.
    assert await _put(hostile, b'[{"t":{"r":{"c":"\xff\xfe"}}},{}]') == 400
    assert await _put(hostile, b'[{"t":{"r":{"c":"\xed\xa0\x80"}}},{}]') == 400  # CESU
    await hostile.wait_log(r"PUT refused \(400\)")


async def test_invalid_utf8_text_frame_closes_1007(hostile: Hostile) -> None:
    async with hostile.ws("utf8") as ws:
        await ws.send(b's[{},{"v":"\xff"},1]', text=True)  # a *text* frame, bad bytes
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    await hostile.wait_log(r"close main/\S+ id=utf8 code=1007")


@pytest.mark.parametrize(
    "payload",
    [
        '[{"t":{"r":{"c":"\\ud800"}}},{}]',
        '[{"t":{"r":{"\\udfff":1}}},{}]',
        '[{},{"v":"a\\ud83d"}]',
    ],
)
async def test_lone_surrogates(hostile: Hostile, payload: str) -> None:
    assert await _put(hostile, payload) == 400
    await hostile.wait_log(r"PUT refused \(400\): .*surrogate")
    await _send(hostile, "s" + payload[:-1] + ",1]")
    await hostile.wait_log(r"rejected changes: .*surrogate")


@pytest.mark.parametrize(
    "content",
    [
        [{"t": {"r": {"c": "\ufffc"}}}, {}],  # a deletion inside Content
        [{}, {"v": "\ufffc"}],
        [{"t": {"r": {"c": "\ufffdnot json"}}}, {}],  # JSON-cell marker, not JSON
        [{"t": {"r": {"c": "\ufffd"}}}, {}],
        [{}, {"v": "\ufffd[1,"}],
        [{}, {"v": '\ufffd"just a string"'}],  # JSON, but not an object/array
        [{"t": {"r": {"c": {"a": ["\ufffc"]}}}}, {}],  # deletion inside a raw cell
    ],
)
async def test_markers_where_they_do_not_belong(hostile: Hostile, content: Any) -> None:
    """Such cells would be stored and then break every client's load of the room."""
    text = json.dumps(content, ensure_ascii=False)
    assert await _put(hostile, text) == 400
    await hostile.wait_log(r"PUT refused \(400\): .*(marker|reserved|\\ufff)")
    changes = json.dumps([*content, 1], ensure_ascii=False)
    if '"\ufffc"' in changes and "\ufffd" not in changes:
        return  # in Changes a bare "\ufffc" cell/value is a deletion: legal
    await _send(hostile, "s" + changes)
    await hostile.wait_log(r"rejected changes: .*(marker|reserved|\\ufff)")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_non_finite_numbers(hostile: Hostile, literal: str) -> None:
    assert await _put(hostile, '[{"t":{"r":{"c":' + literal + "}}},{}]") == 400
    await _send(hostile, 's[{},{"v":' + literal + "},1]")
    await hostile.wait_log(r"rejected changes: .*(not JSON|overflows)")


@pytest.mark.parametrize(
    "payload",
    [
        "[]",
        "[{}]",
        "[{},{},1,2]",
        '{"t":1}',
        "[[],{},1]",
        '[{"t":[]},{},1]',
        '[{"t":{"r":[]}},{},1]',
        '[{"t":{"r":{"c":1}}},{},0]',
        '[{"t":{"r":{"c":1}}},{},"one"]',
        "null",
        '"s"',
        '[{"t":{"r":{"c":1}}},{}]',  # Content is not Changes
        '[{"t":1},{},1]',
        "[{},[],1]",
        "",
        "not json",
    ],
)
async def test_wrong_shapes(hostile: Hostile, payload: str) -> None:
    await _send(hostile, "s" + payload)
    await hostile.wait_log(r"rejected changes: ")
    if payload.endswith((",1]", ",0]", '"one"]')) or payload == '[{"t":{"r":{"c":1}}},{}]':
        return  # a 3-element payload or valid Content: not a PUT shape question
    status = await _put(hostile, payload)
    assert status == 400, (payload, status)


async def test_binary_frames_and_foreign_types(hostile: Hostile) -> None:
    await _send(hostile, b"\x00\x01s[{},{},1]")
    await hostile.wait_log(r"ignored binary message")
    await _send(hostile, "x[{},{},1]")
    await hostile.wait_log(r"ignored message of type 'x'")


def _raw_status(host: str, path: str) -> int | None:
    """Status of a raw ``GET path`` (no client-side URL checks); None if reset."""
    name, port = host.rsplit(":", 1)
    try:
        with socket.create_connection((name, int(port)), timeout=TIMEOUT) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = sock.recv(4096)
    except OSError:
        return None
    return int(head.split()[1]) if head else None


async def _recv_until(ws: ClientConnection, needle: str) -> list[str]:
    seen: list[str] = []
    async with asyncio.timeout(60):
        while True:
            message = await ws.recv()
            assert isinstance(message, str)
            seen.append(message)
            if needle in message:
                return seen


async def test_zz_storage_on_disk_is_unchanged_after_kill_9(
    server_subprocess: ServerProcess,
) -> None:
    """Runs last in this module: what the server answered from memory is what is on
    disk. SIGKILL (no shutdown), restart on the same file: every room reads back the
    same, and the whole log holds no unexpected traceback."""
    assert BODIES, "run with the rest of the module"
    assert _unexpected_tracebacks(server_subprocess.log_text()) == []
    server_subprocess.kill9()
    server_subprocess.restart()
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        for url, body in BODIES.items():
            assert (await client.get(url)).text == body, url
