"""Property-based fuzzing of the room server's WebSocket message handler and PUT parser.

The whole Starlette application (routing, the WebSocket endpoint's receive loop, the
room, ``TinyBasePartyKitServer``, storage) runs in-process and is driven through its
ASGI interface, so hundreds of thousands of inputs fit in minutes; ``test_hostile.py``
covers the same handler over real sockets. Each example is checked against an oracle
written from the protocol, not from the server's code:

- nothing raises or is logged as an error (no ``exception`` records at all);
- a message either changed nothing (and was logged with its reason, unless it was a
  valid change with nothing in it) or was broadcast, and the broadcast applied to the
  storage before equals the storage after (nothing stored that was not broadcast and
  vice versa);
- whatever the server stores, clients can load: the GET body always decodes with the
  client's own strict decoder (``partywidget.codec.decode_content``);
- a PUT is 201 (stored exactly what was sent, minus empty rows/tables) or 400 (nothing
  stored, logged with its reason).

Examples per test: ``PARTYWIDGET_FUZZ_EXAMPLES`` (default 1500, i.e. a few thousand in
CI across the tests; the dedicated run uses 100000).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partywidget.codec import CodecError, decode_content
from partywidget.server import Limits, MemoryStorage, create_app

EXAMPLES = int(os.environ.get("PARTYWIDGET_FUZZ_EXAMPLES", "1500"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
pytestmark = pytest.mark.timeout(max(120, EXAMPLES // 50))

DEL = "\ufffc"
JSON_MARK = "\ufffd"
PARTY = "main"
ROOM = "fuzz"
ROOM_EXAMPLES = 1000
LIMITS = Limits(max_json_depth=100, max_id_length=64, max_message_size=1024 * 1024)


# -- oracle helpers ----------------------------------------------------------------------
def _j(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def cell_key(t: str, r: str, c: str) -> str:
    """The storage key layout of docs/protocol.md: ``t"table","row","cell"``."""
    return f"t{_j(t)},{_j(r)},{_j(c)}"


def apply_wire_changes(storage: dict[str, Any], changes: list[Any]) -> dict[str, Any]:
    """What storage must be after the server broadcast ``changes`` (wire form)."""
    out = dict(storage)
    tables, values = changes[0], changes[1]
    for t, table in tables.items():
        if table == DEL:
            prefix = f"t{_j(t)},"
            for key in [k for k in out if k.startswith(prefix)]:
                del out[key]
            continue
        for r, row in table.items():
            if row == DEL:
                prefix = f"t{_j(t)},{_j(r)},"
                for key in [k for k in out if k.startswith(prefix)]:
                    del out[key]
                continue
            for c, cell in row.items():
                if cell == DEL:
                    out.pop(cell_key(t, r, c), None)
                else:
                    out[cell_key(t, r, c)] = cell
    for v, value in values.items():
        if value == DEL:
            out.pop("v" + v, None)
        else:
            out["v" + v] = value
    return out


def as_doubles(obj: Any) -> Any:
    """Numbers as JavaScript holds them (doubles): ``69140031135720370`` (how JS prints
    the double ``6.914003113572037e16``) and that double compare equal."""
    if type(obj) is int:
        return float(obj)
    if type(obj) is list:
        return [as_doubles(x) for x in obj]
    if type(obj) is dict:
        return {k: as_doubles(v) for k, v in obj.items()}
    return obj


def is_empty_changes(obj: Any) -> bool:
    """A well-formed change with no entry in it: legal, changes nothing, says nothing."""
    return (
        isinstance(obj, list)
        and len(obj) == 3
        and isinstance(obj[0], dict)
        and obj[1] == {}
        and all(
            isinstance(table, dict) and all(row == {} for row in table.values())
            for table in obj[0].values()
        )
    )


def deletes_only_absent(obj: Any, stored: dict[str, Any]) -> bool:
    """Well-formed changes whose only entries delete what is not stored: legal, change
    nothing, and are not broadcast."""
    if not (isinstance(obj, list) and len(obj) == 3 and isinstance(obj[0], dict)):
        return False
    if not isinstance(obj[1], dict) or any(v != DEL for v in obj[1].values()):
        return False
    for table in obj[0].values():
        if table == DEL:
            continue
        if not isinstance(table, dict):
            return False
        for row in table.values():
            if row != DEL and not (isinstance(row, dict) and all(c == DEL for c in row.values())):
                return False
    return apply_wire_changes(stored, obj) == stored


class Records(logging.Handler):
    """Collect log records of the server (cheaper than caplog per example)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# -- an in-process WebSocket client speaking ASGI ----------------------------------------
class AsgiSocket:
    """One WebSocket connection to the ASGI app, without TCP.

    ``send`` returns once the endpoint has handled the message: the endpoint reads the
    next message only after ``on_message`` returned, so its next ``receive()`` call is
    the completion signal.
    """

    def __init__(self, app: Any, pk: str, room: str) -> None:
        self.app = app
        self.pk = pk
        self.room = room
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.receives = 0
        self._receive_called = asyncio.Event()
        self._sent_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _receive(self) -> dict[str, Any]:
        self.receives += 1
        self._receive_called.set()
        return await self.inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        self._sent_event.set()

    async def open(self) -> None:
        path = f"/parties/{PARTY}/{self.room}"
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": f"_pk={self.pk}".encode(),
            "headers": [(b"host", b"fuzz")],
            "client": ("127.0.0.1", 1),
            "server": ("fuzz", 80),
            "subprotocols": [],
            "extensions": {},
        }
        self.task = asyncio.get_running_loop().create_task(
            self.app(scope, self._receive, self._send)
        )
        await self.inbox.put({"type": "websocket.connect"})
        await self.wait_for(lambda: any(m["type"] == "websocket.accept" for m in self.sent))

    async def wait_for(self, condition: Any) -> None:
        async with asyncio.timeout(10):
            while not condition():
                self._sent_event.clear()
                self._receive_called.clear()
                if self.task is not None and self.task.done():
                    self.task.result()
                    raise AssertionError("the endpoint ended")
                waiters = [
                    asyncio.ensure_future(self._sent_event.wait()),
                    asyncio.ensure_future(self._receive_called.wait()),
                ]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED, timeout=1)
                finally:
                    for waiter in waiters:
                        waiter.cancel()

    async def send(self, *, text: str | None = None, data: bytes | None = None) -> None:
        before = self.receives
        message: dict[str, Any] = {"type": "websocket.receive"}
        if text is not None:
            message["text"] = text
        else:
            message["bytes"] = data
        await self.inbox.put(message)
        await self.wait_for(lambda: self.receives > before and self.inbox.empty())

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send" and "text" in m]

    async def close(self) -> None:
        await self.inbox.put({"type": "websocket.disconnect", "code": 1000})
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)


class Harness:
    """The app with a room holding a store, a fuzzing connection and a watcher."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.storage = MemoryStorage()
        self.app = create_app(storage=self.storage, limits=LIMITS)
        self.records = Records()
        self.logger = logging.getLogger("partywidget.server")
        self.logger.addHandler(self.records)
        self._level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        self.probe = 0
        self.rooms = 0
        self.room = ROOM
        self.fuzzer: AsgiSocket
        self.watcher: AsgiSocket
        self.examples = 0
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://fuzz"
        )
        self.run(self._new_room())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _new_room(self) -> None:
        """A fresh room (every ROOM_EXAMPLES examples, so per-example cost stays flat)."""
        if self.rooms:
            await self.fuzzer.close()
            await self.watcher.close()
        self.rooms += 1
        self.room = f"{ROOM}{self.rooms}"
        response = await self.http.put(
            f"/parties/{PARTY}/{self.room}/store",
            content='[{"t":{"r":{"c":1,"o":"\\ufffd{\\"a\\":1}"}}},{"v":"x"}]',
        )
        assert response.status_code == 201
        self.fuzzer = AsgiSocket(self.app, "fuzzer", self.room)
        self.watcher = AsgiSocket(self.app, "watcher", self.room)
        await self.fuzzer.open()
        await self.watcher.open()

    async def stored(self) -> dict[str, Any]:
        return await self.storage.list((PARTY, self.room))

    async def get_body(self) -> str:
        response = await self.http.get(f"/parties/{PARTY}/{self.room}/store")
        assert response.status_code == 200
        return response.text

    def close(self) -> None:
        async def shutdown() -> None:
            await self.fuzzer.close()
            await self.watcher.close()
            await self.http.aclose()

        self.run(shutdown())
        self.loop.close()
        self.logger.removeHandler(self.records)
        self.logger.setLevel(self._level)

    async def check_message(self, text: str | None, data: bytes | None = None) -> None:
        self.examples += 1
        if self.examples % ROOM_EXAMPLES == 0:
            await self._new_room()
        records = self.records.records
        records.clear()
        # Only this example's frames matter: keep the per-example work constant.
        self.watcher.sent.clear()
        self.fuzzer.sent.clear()
        before = await self.stored()
        seen = 0
        await self.fuzzer.send(text=text, data=data)
        # The probe: once the watcher has it, it has every broadcast of the message.
        self.probe += 1
        probe = f's[{{}},{{"probe":{self.probe}}},1]'
        await self.fuzzer.send(text=probe)
        await self.watcher.wait_for(lambda: probe in self.watcher.texts()[seen:])
        broadcasts = self.watcher.texts()[seen:]
        assert broadcasts[-1] == probe
        broadcasts = broadcasts[:-1]
        after = await self.stored()
        after.pop("vprobe", None)
        before.pop("vprobe", None)

        bad = [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
        assert not bad, [r.getMessage() for r in bad]
        # Nothing sent back to the fuzzer except reconverging messages (none here: no
        # hooks) - it must stay connected.
        assert not any(m["type"] == "websocket.close" for m in self.fuzzer.sent)

        expected = before
        for message in broadcasts:
            assert message.startswith("s")
            expected = apply_wire_changes(expected, json.loads(message[1:]))
        assert as_doubles(after) == as_doubles(expected), (text, broadcasts)
        if not broadcasts and after == before:
            reasons = [r.getMessage() for r in records if r.levelno >= logging.INFO]
            if not reasons:
                # Silent only for valid changes without entries.
                assert text is not None and text.startswith("s")
                changes = json.loads(text[1:])
                assert is_empty_changes(changes) or deletes_only_absent(changes, before), text
            else:
                assert any(
                    word in " ".join(reasons) for word in ("rejected", "ignored", "dropped")
                ), reasons
        # Whatever was stored, clients can load it.
        body = await self.get_body()
        try:
            decode_content(body)
        except CodecError as error:  # pragma: no cover - the failure we look for
            raise AssertionError(f"stored content no client can load: {error}: {text!r}") from None


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


# -- strategies --------------------------------------------------------------------------
ids = st.one_of(
    st.sampled_from(["t", "r", "c", "v", "0", "1", "", "a,b", '"', "\\", "é", "𝄞"]),
    st.text(max_size=8),
    st.text(min_size=60, max_size=70),  # around the id limit (64 here)
)
plain_cells = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
json_docs = st.recursive(
    plain_cells,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(ids, kids, max_size=3),
    max_leaves=6,
)
object_cells = st.one_of(
    st.lists(json_docs, max_size=3), st.dictionaries(ids, json_docs, max_size=3)
).map(lambda doc: JSON_MARK + json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
cells = st.one_of(
    plain_cells,
    object_cells,
    st.just(DEL),
    st.sampled_from([JSON_MARK, JSON_MARK + "x", JSON_MARK + "[1,", JSON_MARK + '"s"', "a" + DEL]),
    st.lists(plain_cells, max_size=2),  # raw (unencoded) array cell
    st.dictionaries(ids, st.sampled_from([DEL, JSON_MARK + "x", 1, [DEL]]), max_size=2),
)
rows = st.one_of(st.just(DEL), st.dictionaries(ids, cells, max_size=3))
tables = st.one_of(st.just(DEL), st.dictionaries(ids, rows, max_size=3))
flags: st.SearchStrategy[Any] = st.one_of(
    st.just(1), st.sampled_from([0, 2, "1", True, 1.0, [1], None, "x", {}])
)
changes = st.builds(
    lambda t, v, f: [t, v, f],
    st.dictionaries(ids, tables, max_size=3),
    st.dictionaries(ids, cells, max_size=3),
    flags,
)


def _dump(obj: Any, nan: bool) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=nan)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    text = draw(base)
    op = draw(st.integers(0, 6))
    if not text or op == 0:
        return text
    i = draw(st.integers(0, len(text) - 1))
    if op == 1:
        return text[:i]
    if op == 2:
        inserted: str = draw(st.sampled_from([*'[]{}",:1\\', DEL, JSON_MARK]))
        return text[:i] + inserted + text[i:]
    if op == 3:
        return text[:i] + text[i + 1 :]
    if op == 4:
        depth = draw(st.integers(90, 200))
        return text[:i] + "[" * depth + "]" * depth + text[i:]
    if op == 5:
        return (
            text[:i]
            + draw(st.sampled_from(["NaN", "Infinity", "1e999", "-0", '"\\ud800"']))
            + text[i:]
        )
    return text + text


messages = st.one_of(
    changes.map(lambda c: "s" + _dump(c, False)),
    mutated(changes.map(lambda c: "s" + _dump(c, False))),
    st.text(max_size=40),
    st.text(max_size=40).map(lambda t: "s" + t),
    st.sampled_from(["", "s", "x[{},{},1]", "s[{},{},1]", "s[{},{}]", "s[]", "snull"]),
)


# -- tests -------------------------------------------------------------------------------
@FUZZ
@given(message=messages)
def test_fuzz_websocket_messages(harness: Harness, message: str) -> None:
    harness.run(harness.check_message(message))


@FUZZ
@given(data=st.binary(max_size=40))
def test_fuzz_binary_frames(harness: Harness, data: bytes) -> None:
    harness.run(harness.check_message(None, data))


@pytest.fixture(scope="module")
def put_app() -> Iterator[tuple[asyncio.AbstractEventLoop, httpx.AsyncClient, Records]]:
    loop = asyncio.new_event_loop()
    app = create_app(storage=MemoryStorage(), limits=LIMITS)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fuzz")
    records = Records()
    logger = logging.getLogger("partywidget.server")
    logger.addHandler(records)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield loop, client, records
    loop.run_until_complete(client.aclose())
    loop.close()
    logger.removeHandler(records)
    logger.setLevel(level)


def _without_empty(content: list[Any]) -> list[Any]:
    tables = {
        t: {r: row for r, row in table.items() if row}
        for t, table in content[0].items()
        if any(table.values())
    }
    return [tables, content[1]]


bodies = st.one_of(
    st.builds(
        lambda t, v: _dump([t, v], False),
        st.dictionaries(
            ids,
            st.dictionaries(ids, st.dictionaries(ids, cells, max_size=3), max_size=3),
            max_size=3,
        ),
        st.dictionaries(ids, cells, max_size=3),
    ),
    mutated(changes.map(lambda c: _dump(c[:2], False))),
    st.text(max_size=40),
).map(lambda s: s.encode("utf-8", "surrogatepass")) | st.binary(max_size=40)

_room_counter = iter(range(10**9))


@FUZZ
@given(body=bodies)
def test_fuzz_put_bodies(
    put_app: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient, Records], body: bytes
) -> None:
    loop, client, records = put_app

    async def check() -> None:
        records.records.clear()
        url = f"/parties/{PARTY}/put{next(_room_counter)}/store"
        response = await client.put(url, content=body)
        got = (await client.get(url)).text
        bad = [r for r in records.records if r.levelno >= logging.ERROR or r.exc_info]
        assert not bad, [r.getMessage() for r in bad]
        assert response.status_code in (201, 400), (response.status_code, body)
        if response.status_code == 400:
            assert got == ""
            assert any("PUT refused (400)" in r.getMessage() for r in records.records)
            return
        sent = json.loads(body.decode("utf-8", "replace").removeprefix("\ufeff"))
        if got == "":
            # Like the reference: tables with no cell in them store nothing, and the
            # room stays without a store.
            assert _without_empty(sent) == [{}, {}] and sent != [{}, {}], body
            return
        decode_content(got)  # clients can load whatever was accepted
        assert as_doubles(json.loads(got)) == as_doubles(_without_empty(sent)), body

    loop.run_until_complete(check())
