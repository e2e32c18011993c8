"""The in-process oracle harness shared by the hypothesis fuzz tests
(``tests/fuzz/test_fuzz_server.py``) and the atheris fuzzer (``tests/fuzz/atheris_server.py``).

:class:`Harness` drives the whole Starlette app through its ASGI interface and checks
each message against an oracle written from the protocol (see the test module's docstring).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

from partywidget.codec import CodecError, decode_content
from partywidget.server import Limits, MemoryStorage, create_app

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
