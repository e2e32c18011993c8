"""Acknowledged implies committed, every time: the order is driven through storage seams.

The server is real (uvicorn on loopback, SQLite on disk, WebSocket clients). The seams
``before_commit``/``after_commit`` run on the storage thread around the COMMIT of the
batch holding a client's edit. Just before the COMMIT, the room must not show the edit
to anyone (a GET, served from the room's mirror, still has the old value); just after
it, the edit is in the file as another SQLite connection sees it. A server that
acknowledged (applied or broadcast) before committing fails the first check on every
run, with no dependence on when a kill -9 lands.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from partywidget.server.app import create_app
from partywidget.server.storage import SQLiteStorage
from partywidget.server.thread import run_in_thread
from support.reliability import TIMEOUT

pytestmark = pytest.mark.timeout(120)


def _stored_value(db: Path, key: str) -> Any:
    with sqlite3.connect(db) as other:  # another connection: sees committed data only
        row = other.execute(
            "SELECT value FROM kv WHERE party='main' AND room='order' AND key=?", (key,)
        ).fetchone()
    return None if row is None else json.loads(row[0])


async def test_an_edit_is_committed_before_anyone_sees_it(tmp_path: Path) -> None:
    db = tmp_path / "rooms.sqlite3"
    storage = SQLiteStorage(db)
    seen: dict[str, Any] = {}
    with run_in_thread(create_app(storage=storage, close_storage=True)) as server:
        store = f"{server.url}/parties/main/order/store"
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            assert (await client.put(store, content='[{},{"v":0}]')).status_code == 201

        def before_commit() -> None:
            if "before" not in seen:
                seen["before"] = httpx.get(store, timeout=TIMEOUT).text
                seen["file_before"] = _stored_value(db, "vv")

        def after_commit() -> None:
            if "after" not in seen:
                seen["after"] = _stored_value(db, "vv")

        ws = f"{server.ws_url}/parties/main/order?_pk="
        async with (
            connect(ws + "writer", open_timeout=TIMEOUT) as writer,
            connect(ws + "observer", open_timeout=TIMEOUT) as observer,
        ):
            storage.before_commit, storage.after_commit = before_commit, after_commit
            await writer.send('s[{},{"v":1},1]')
            async with asyncio.timeout(TIMEOUT):
                broadcast = await observer.recv()
            storage.before_commit = storage.after_commit = None
    assert broadcast == 's[{},{"v":1},1]'
    assert seen == {"before": '[{},{"v":0}]', "file_before": 0, "after": 1}
