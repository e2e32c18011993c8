"""PartyStoreWidget's Python API against a real room server and real second clients.

Background-loop mode (no running loop in the test thread: the widget runs its own daemon
loop) and attached mode (an asyncio test: the widget uses the running loop, as in a
kernel). The second client is either another widget or a bare Store + PartyKit persister.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest

from partywidget.model import DELETED, Changes
from partywidget.partykit.persister import create_partykit_persister
from partywidget.partykit.socket import PartySocket
from partywidget.server import ServerThread
from partywidget.store import create_store
from partywidget.widget import PartyStoreWidget
from support.waiting import eventually, wait_for
from support.widget import comm_of, install

MakeWidget = Callable[..., PartyStoreWidget]
"""Makes a widget on the test's room (keyword arguments go to the constructor)."""


@pytest.fixture
def widgets(
    server: ServerThread, room: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MakeWidget]:
    install(monkeypatch)
    made: list[PartyStoreWidget] = []

    def make(**kwargs: Any) -> PartyStoreWidget:
        w = PartyStoreWidget(room, server.host, **kwargs)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def test_background_mode_two_widgets_sync(widgets: MakeWidget) -> None:
    a, b = widgets(), widgets()
    assert not a._runner.attached
    a.wait_ready(30)
    b.wait_ready(30)
    assert a.status == "connected"
    a.set_table("pets", {"fido": {"species": "dog", "legs": 4}})
    a.set_value("open", True)
    wait_for(lambda: b.get_table("pets") == {"fido": {"species": "dog", "legs": 4}})
    wait_for(lambda: b.values == {"open": True})
    df = b.df("pets")
    assert df.index.name == "row_id" and list(df.columns) == ["species", "legs"]
    assert str(df["legs"].dtype) == "Int64"
    assert set(b.tables) == {"pets"}
    assert b.tables["pets"].loc["fido", "species"] == "dog"
    with pytest.raises(KeyError):
        b.tables["nope"]


def test_set_table_sends_only_the_changed_cells(widgets: MakeWidget) -> None:
    a, b = widgets(), widgets()
    a.wait_ready(30)
    b.wait_ready(30)
    a.set_table("t", {f"r{i}": {"x": i, "y": f"s{i}"} for i in range(200)})
    wait_for(lambda: b.get_cell("t", "r199", "y") == "s199")
    seen: list[Changes] = []
    b.on_change(seen.append)
    df = a.df("t")
    df.loc["r5", "x"] = 500
    df.loc["r7", "y"] = pd.NA
    df = df.drop(index="r9")
    a.tables["t"] = df
    wait_for(lambda: b.get_cell("t", "r5", "x") == 500)
    wait_for(lambda: not b.store.has_row("t", "r9"))
    merged: dict[str, Any] = {}
    for tables, _values, _ in seen:
        for row_id, row in tables["t"].items():
            merged[row_id] = row
    assert merged == {"r5": {"x": 500}, "r7": {"y": DELETED}, "r9": DELETED}


def test_revision_and_on_change(widgets: MakeWidget) -> None:
    a, b = widgets(), widgets()
    a.wait_ready(30)
    b.wait_ready(30)
    r0 = b.revision
    got: list[Changes] = []
    unsubscribe = b.on_change(got.append)
    a.set_cell("t", "r", "c", 1)
    wait_for(lambda: got)
    assert got[0] == ({"t": {"r": {"c": 1}}}, {}, 1)
    wait_for(lambda: b.revision == r0 + 1)
    unsubscribe()
    local = a.revision
    a.transaction(lambda: (a.store.set_cell("t", "r", "c", 2), a.store.set_value("v", 1)))
    wait_for(lambda: a.revision == local + 1)  # one transaction, one revision
    wait_for(lambda: b.get_value("v") == 1)
    assert len(got) == 1


def test_frames_are_cached_until_the_table_changes(widgets: MakeWidget) -> None:
    a = widgets()
    a.wait_ready(30)
    a.set_table("t", {"r": {"x": 1}})
    a.df("t")
    cache = a._frames
    work = cache.builds + cache.patched
    a.df("t")
    a.tables["t"]
    assert cache.builds + cache.patched == work
    a.set_cell("t", "r", "x", 2)
    assert a.df("t").loc["r", "x"] == 2
    assert cache.builds + cache.patched == work + 1


def test_set_table_type_errors_change_nothing(widgets: MakeWidget) -> None:
    a = widgets()
    a.wait_ready(30)
    a.set_table("t", {"r": {"x": 1}})
    df = pd.DataFrame({"x": [2], "bad": [object()]}, index=["r"])
    with pytest.raises(TypeError, match="'bad'"):
        a.set_table("t", df)
    assert a.get_table("t") == {"r": {"x": 1}}


async def test_attached_mode_uses_the_running_loop(
    server: ServerThread, room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in a kernel: created on a running loop, awaited with ``await w.ready()``."""
    install(monkeypatch)
    w = PartyStoreWidget(room, server.host)
    try:
        assert w._runner.attached
        assert w._runner.loop is asyncio.get_running_loop()
        with pytest.raises(RuntimeError, match="await"):
            w.wait_ready(1)
        await w.ready(timeout=30)
        statuses: list[int] = []
        w.observe(lambda change: statuses.append(threading.get_ident()), names=["revision"])
        # a second client: a bare Store + persister on this same loop
        other = create_store()
        socket = PartySocket(server.host, room)
        persister = create_partykit_persister(other, socket, "http")
        await persister.start_auto_persisting()
        other.set_cell("pets", "fido", "legs", 4)
        await eventually(lambda: w.store.get_cell("pets", "fido", "legs") == 4, what="remote edit")
        assert w.df("pets").loc["fido", "legs"] == 4
        assert statuses and set(statuses) == {threading.get_ident()}  # traitlets on our thread
        w.set_cell("pets", "fido", "legs", 3)  # synchronous on the loop thread
        await eventually(lambda: other.get_cell("pets", "fido", "legs") == 3, what="local edit")
        assert other.get_cell("pets", "fido", "legs") == 3
        await persister.destroy()
        await socket.aclose()
    finally:
        w.close()


def test_status_reports_an_unreachable_host(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    install(monkeypatch)
    w = PartyStoreWidget("r", f"127.0.0.1:{port}")  # nothing listens there
    try:
        wait_for(lambda: w.status in ("error", "offline"), what="error status")
        assert w.error
        with pytest.raises(TimeoutError):
            w.wait_ready(0.5)
    finally:
        w.close()


def test_initial_content_and_schema(widgets: MakeWidget) -> None:
    a = widgets(
        tables_schema={"t": {"n": {"type": "number", "default": 0}}},
        initial_content=({"t": {"r": {"n": 1}}}, {}),
    )
    a.wait_ready(30)
    assert a.get_table("t") == {"r": {"n": 1}}
    a.set_row("t", "q", {})
    assert a.df("t")["n"].tolist() == [1.0, 0.0]


def test_columns_follow_the_schema_order_in_frames_and_grid(widgets: MakeWidget) -> None:
    schema = {
        "pets": {
            "species": {"type": "string"},
            "legs": {"type": "number"},
            "name": {"type": "string"},
        }
    }
    a = widgets(tables_schema=schema)
    a.wait_ready(30)
    a.set_row("pets", "fido", {"name": "Fido", "legs": 4})  # first seen: name, legs
    assert list(a.df("pets").columns) == ["species", "legs", "name"]
    # the grid orders its columns by the synced schema, sent in that order on the comm
    assert list(sent_schema(a)["pets"]) == ["species", "legs", "name"]
    a.set_tables_schema({"pets": {"name": {"type": "string"}, "legs": {"type": "number"}}})
    # (TinyBase updates a schema in place: kept ids keep their place, like its JSON)
    assert list(a.df("pets").columns) == list(sent_schema(a)["pets"]) == ["legs", "name"]


def sent_schema(widget: PartyStoreWidget) -> dict[str, Any]:
    """The last ``tables_schema`` state the kernel sent to the front-end (open or update)."""
    states: list[dict[str, Any]] = [
        m["data"]["state"]["tables_schema"]
        for m in comm_of(widget).published
        if m["msg_type"] in ("comm_open", "comm_msg")
        and "tables_schema" in (m["data"] or {}).get("state", {})
    ]
    return states[-1]


def test_without_schema_columns_are_first_seen(widgets: MakeWidget) -> None:
    a = widgets()
    a.wait_ready(30)
    a.set_row("t", "r1", {"b": 1, "a": 2})
    a.set_row("t", "r2", {"c": 3, "a": 4})
    assert list(a.df("t").columns) == ["b", "a", "c"]
    assert a.tables_schema == {}
