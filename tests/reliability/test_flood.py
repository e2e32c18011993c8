"""Floods, bursts and reconnects: connections take turns, nothing stale is applied.

Real uvicorn on loopback (a thread, so the test can read the log with caplog and hold a
room's lock through a server hook), real WebSocket clients. Orderings are driven by
protocol: a "gate" value whose ``can_set_value`` hook waits for the test holds the room
while the test lines up messages behind it, and ``on_message`` reports each message as
the server takes it, so the test knows what is queued before it opens the gate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from partywidget.server.app import create_app
from partywidget.server.room import Connection
from partywidget.server.thread import ServerThread, run_in_thread
from partywidget.server.tinybase import TinyBasePartyKitServer
from support.reliability import TIMEOUT

pytestmark = pytest.mark.timeout(180)

GATES: dict[str, threading.Event] = {}
#: (room, connection id, message) as each message is handed to the room's server.
TAKEN: queue.Queue[tuple[str, str, str]] = queue.Queue()


class GatedServer(TinyBasePartyKitServer):
    async def on_message(self, message: str, connection: Connection) -> None:
        TAKEN.put((self.party.id, connection.id, message))
        await super().on_message(message, connection)

    async def can_set_value(
        self, value_id: str, value: Any, initial_save: bool, who: Any, old_value: Any
    ) -> bool:
        if value_id == "gate":
            gate = GATES[self.party.id]
            while not gate.is_set():  # holds the room's lock until the test opens it
                await asyncio.sleep(0.005)
        return True


@pytest.fixture(scope="module")
def gated_server() -> Iterator[ServerThread]:
    with run_in_thread(create_app({"main": GatedServer})) as thread:
        yield thread


async def _taken(room: str, pk: str, needle: str) -> None:
    """Wait until the server has taken a message of ``pk`` containing ``needle``."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            try:
                taken_room, taken_pk, message = TAKEN.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.01)
                continue
            if (taken_room, taken_pk) == (room, pk) and needle in message:
                return


async def _recv_until(ws: ClientConnection, needle: str) -> list[str]:
    seen: list[str] = []
    async with asyncio.timeout(TIMEOUT * 2):
        while True:
            message = await ws.recv()
            assert isinstance(message, str)
            seen.append(message)
            if needle in message:
                return seen


async def _new_room(gated_server: ServerThread, name: str) -> tuple[str, str]:
    GATES[name] = threading.Event()
    store = f"{gated_server.url}/parties/main/{name}/store"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        assert (await client.put(store, content="[{},{}]")).status_code == 201
    return store, f"{gated_server.ws_url}/parties/main/{name}?_pk="


async def _values(store: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        values: dict[str, Any] = json.loads((await client.get(store)).text)[1]
    return values


async def test_connections_take_turns_so_a_flooder_cannot_delay_a_bystander(
    gated_server: ServerThread,
) -> None:
    """With a flooder and a bystander both queued behind the room, their messages are
    applied alternately: the bystander's 5th edit lands before the flooder's 10th."""
    store, ws = await _new_room(gated_server, "turns")
    flood = 400
    async with (
        connect(ws + "flooder", open_timeout=TIMEOUT) as flooder,
        connect(ws + "bystander", open_timeout=TIMEOUT) as bystander,
        connect(ws + "other", open_timeout=TIMEOUT, max_queue=None) as other,
    ):
        await flooder.send('s[{},{"gate":1},1]')
        await _taken("turns", "flooder", '"gate"')
        for i in range(flood):
            await flooder.send(f's[{{}},{{"n":{i}}},1]')
        for i in range(5):
            await bystander.send(f's[{{}},{{"b":{i}}},1]')
        await _taken("turns", "bystander", '"b":0')
        GATES["turns"].set()
        seen = await _recv_until(other, f'"n":{flood - 1}')
    order = [next(iter(json.loads(m[1:])[1].items())) for m in seen]
    assert order[0] == ("gate", 1)
    applied = order[1:]
    assert [v for k, v in applied if k == "n"] == list(range(flood))  # lossless, in order
    assert [v for k, v in applied if k == "b"] == list(range(5))
    assert applied.index(("b", 4)) < applied.index(("n", 9)), applied[:20]
    assert (await _values(store))["n"] == flood - 1


async def test_a_replaced_connection_backlog_is_not_applied(
    gated_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    """A socket floods, then its client reconnects with the same ``_pk`` and writes
    FINAL: the old socket's unread backlog must not overwrite it."""
    caplog.set_level(logging.INFO, logger="partywidget.server")
    store, ws = await _new_room(gated_server, "replaced")
    async with connect(ws + "w", open_timeout=TIMEOUT) as old:
        await old.send('s[{},{"gate":1},1]')
        await _taken("replaced", "w", '"gate"')
        for i in range(200):
            await old.send(f's[{{}},{{"v":{i}}},1]')
        async with connect(ws + "w", open_timeout=TIMEOUT) as new:
            await new.send('s[{},{"v":"FINAL"},1]')
            await _taken("replaced", "w", "FINAL")
            GATES["replaced"].set()
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(TIMEOUT):
                    while True:
                        await old.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000

            def old_loop_ended() -> bool:
                return any(
                    "close main/replaced id=w code=4000" in r.getMessage() for r in caplog.records
                )

            async with asyncio.timeout(TIMEOUT):
                while not old_loop_ended():
                    await asyncio.sleep(0.02)
            values = await _values(store)
            assert values["v"] == "FINAL"
            assert values["gate"] == 1
            await new.send('s[{},{"after":1},1]')  # the new connection still writes
            async with asyncio.timeout(TIMEOUT):
                while (await _values(store)).get("after") != 1:
                    await asyncio.sleep(0.02)
    assert (await _values(store))["v"] == "FINAL"


async def test_a_lone_burst_is_not_throttled_and_fully_applied(
    gated_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    """20,000 separate edits from one client: every one applied in order, nothing
    refused, paused or discarded, and the socket stays open (its keepalive answered)."""
    caplog.set_level(logging.INFO, logger="partywidget.server")
    store, ws = await _new_room(gated_server, "burst")
    count = 20_000
    async with (
        connect(ws + "burster", open_timeout=TIMEOUT) as burster,
        connect(ws + "watcher", open_timeout=TIMEOUT, max_queue=None) as watcher,
    ):
        for i in range(count):
            await burster.send(f's[{{}},{{"n":{i}}},1]')
        seen = await _recv_until(watcher, f'"n":{count - 1}')
        async with asyncio.timeout(TIMEOUT):
            await (await burster.ping())
        await burster.send('s[{},{"done":1},1]')
        await _recv_until(watcher, '"done"')
    numbers = [json.loads(m[1:])[1]["n"] for m in seen]
    assert numbers == list(range(count))
    assert (await _values(store))["n"] == count - 1
    messages = [r.getMessage() for r in caplog.records if "id=burster" in r.getMessage()]
    assert not [m for m in messages if "throttl" in m or "discard" in m or "dropped" in m]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
