"""Every rejection path reconverges its writer: one case per hook, new and existing items.

Real app (uvicorn on loopback, real WebSocket clients). A hook refuses every id that
starts with ``locked``. For each case the writer sends one change that the hook refuses
and must receive, as the next ``s`` message, the room's value for exactly what it tried
to change (``DELETED`` for what did not exist), so its store snaps back; storage is
unchanged. Refusing a deletion of something that does not exist needs no correction:
the writer's next message is then the correction of a later probe, by in-order
handling.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from partywidget.codec import decode_changes, encode_changes
from partywidget.model import DELETED, Content
from partywidget.server.app import create_app
from partywidget.server.room import Connection
from partywidget.server.thread import ServerThread, run_in_thread
from partywidget.server.tinybase import TinyBasePartyKitServer

pytestmark = pytest.mark.timeout(120)
TIMEOUT = 30.0

INITIAL = (
    '[{"lockedT":{"r":{"c":1}},"t":{"lockedR":{"c":1},"r":{"lockedC":1,"c":1}}},'
    '{"lockedV":1,"v":1}]'
)


def _locked(*ids: str) -> bool:
    return any(i.startswith("locked") for i in ids)


class LockedServer(TinyBasePartyKitServer):
    async def can_set_table(self, table_id: str, initial_save: bool, who: Any) -> bool:
        return initial_save or not _locked(table_id)

    async def can_del_table(self, table_id: str, connection: Connection) -> bool:
        return not _locked(table_id)

    async def can_set_row(self, table_id: str, row_id: str, initial_save: bool, who: Any) -> bool:
        return initial_save or not _locked(row_id)

    async def can_del_row(self, table_id: str, row_id: str, connection: Connection) -> bool:
        return not _locked(row_id)

    async def can_set_cell(
        self,
        table_id: str,
        row_id: str,
        cell_id: str,
        cell: Any,
        initial_save: bool,
        who: Any,
        old_cell: Any,
    ) -> bool:
        return initial_save or not _locked(cell_id)

    async def can_del_cell(
        self, table_id: str, row_id: str, cell_id: str, connection: Connection
    ) -> bool:
        return not _locked(cell_id)

    async def can_set_value(
        self, value_id: str, value: Any, initial_save: bool, who: Any, old_value: Any
    ) -> bool:
        return initial_save or not _locked(value_id)

    async def can_del_value(self, value_id: str, connection: Connection) -> bool:
        return not _locked(value_id)


D = DELETED
CASES: dict[str, tuple[tuple[dict[str, Any], dict[str, Any]], tuple[Any, Any]]] = {
    # name: ((tables, values) sent, (tables, values) the writer must be sent back)
    "set existing table": (({"lockedT": {"r": {"c": 2}}}, {}), ({"lockedT": {"r": {"c": 1}}}, {})),
    "set new table": (({"lockedN": {"r": {"c": 2}}}, {}), ({"lockedN": {"r": {"c": D}}}, {})),
    "delete table": (({"lockedT": D}, {}), ({"lockedT": {"r": {"c": 1}}}, {})),
    "set existing row": (({"t": {"lockedR": {"c": 2}}}, {}), ({"t": {"lockedR": {"c": 1}}}, {})),
    "set new row": (({"t": {"lockedN": {"c": 2}}}, {}), ({"t": {"lockedN": {"c": D}}}, {})),
    "delete row": (({"t": {"lockedR": D}}, {}), ({"t": {"lockedR": {"c": 1}}}, {})),
    "set existing cell": (({"t": {"r": {"lockedC": 2}}}, {}), ({"t": {"r": {"lockedC": 1}}}, {})),
    "set new cell": (({"t": {"r": {"lockedN": 2}}}, {}), ({"t": {"r": {"lockedN": D}}}, {})),
    "delete cell": (({"t": {"r": {"lockedC": D}}}, {}), ({"t": {"r": {"lockedC": 1}}}, {})),
    "set existing value": (({}, {"lockedV": 2}), ({}, {"lockedV": 1})),
    "set new value": (({}, {"lockedN": 2}), ({}, {"lockedN": D})),
    "delete value": (({}, {"lockedV": D}), ({}, {"lockedV": 1})),
    "mixed: accepted parts stay, refused parts revert": (
        ({"t": {"r": {"c": 5, "lockedC": 5}}}, {"v": 5, "lockedV": 5}),
        ({"t": {"r": {"lockedC": 1}}}, {"lockedV": 1}),
    ),
}
PROBE: tuple[Content, Content] = (({}, {"lockedV": 9}), ({}, {"lockedV": 1}))
#: Deletions of things that do not exist: refused, nothing to correct.
ABSENT = {
    "delete absent table": ({"lockedX": D}, {}),
    "delete absent row": ({"t": {"lockedX": D}}, {}),
    "delete absent cell": ({"t": {"r": {"lockedX": D}}}, {}),
    "delete absent value": ({}, {"lockedX": D}),
}


@pytest.fixture(scope="module")
def locked_server() -> Iterator[ServerThread]:
    with run_in_thread(create_app({"main": LockedServer})) as thread:
        yield thread


async def _room(locked_server: ServerThread, name: str) -> tuple[str, str]:
    room = name.replace(" ", "-").replace(":", "").replace(",", "")
    store = f"{locked_server.url}/parties/main/{room}/store"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert (await client.put(store, content=INITIAL)).status_code == 201
    return store, f"{locked_server.ws_url}/parties/main/{room}?_pk=writer"


async def _next_correction(ws: Any) -> tuple[Any, Any]:
    async with asyncio.timeout(TIMEOUT):
        message = await ws.recv()
    assert isinstance(message, str) and message.startswith("s"), message
    tables, values, _ = decode_changes(message[1:])
    return tables, values


@pytest.mark.parametrize("case", list(CASES))
async def test_a_refused_change_is_corrected_for_its_writer(
    locked_server: ServerThread, case: str
) -> None:
    (tables, values), expected = CASES[case]
    store, ws_url = await _room(locked_server, case)
    async with connect(ws_url, open_timeout=TIMEOUT) as writer:
        await writer.send("s" + encode_changes((tables, values, 1)))
        assert await _next_correction(writer) == expected
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        body = json.loads((await client.get(store)).text)
    initial = json.loads(INITIAL)
    if case.startswith("mixed"):
        initial[0]["t"]["r"]["c"] = initial[1]["v"] = 5
    assert body == initial


@pytest.mark.parametrize("case", list(ABSENT))
async def test_a_refused_deletion_of_nothing_sends_nothing(
    locked_server: ServerThread, case: str
) -> None:
    store, ws_url = await _room(locked_server, case)
    async with connect(ws_url, open_timeout=TIMEOUT) as writer:
        tables, values = ABSENT[case]
        await writer.send("s" + encode_changes((tables, values, 1)))
        (probe_tables, probe_values), expected = PROBE
        await writer.send("s" + encode_changes((probe_tables, probe_values, 1)))
        assert await _next_correction(writer) == expected
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert json.loads((await client.get(store)).text) == json.loads(INITIAL)
