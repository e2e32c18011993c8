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

from partywidget.codec import decode_content
from partywidget.server import MemoryStorage, create_app
from support.fuzz import DEL, JSON_MARK, LIMITS, PARTY, Harness, Records, as_doubles

EXAMPLES = int(os.environ.get("PARTYWIDGET_FUZZ_EXAMPLES", "1500"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
pytestmark = pytest.mark.timeout(max(120, EXAMPLES // 50))


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
