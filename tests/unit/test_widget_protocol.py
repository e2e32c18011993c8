"""The kernel <-> front-end message protocol, driven from Python through a real comm path.

Every test runs a real room server (uvicorn on loopback) and real PartySockets; the widget
is in background-loop mode (no running loop here), and a second widget in the same room
plays the remote client.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from partywidget.model import DELETED
from partywidget.server import ServerThread
from partywidget.widget import PartyStoreWidget
from support.waiting import wait_for
from support.widget import (
    comm_of,
    deltas,
    install,
    snapshot_content,
    view_changes,
)


@pytest.fixture
def pair(
    server: ServerThread, room: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[PartyStoreWidget, PartyStoreWidget]]:
    install(monkeypatch)
    a = PartyStoreWidget(room, server.host)
    b = PartyStoreWidget(room, server.host)
    a.wait_ready(30)
    b.wait_ready(30)
    yield a, b
    a.close()
    b.close()


def test_snapshot_then_deltas_with_sequence_numbers(
    pair: tuple[PartyStoreWidget, PartyStoreWidget],
) -> None:
    a, b = pair
    a.set_table("pets", {"fido": {"legs": 4}, "felix": {"legs": 4, "name": "Felix"}})
    a.set_value("open", True)
    c = comm_of(a)
    c.from_view({"kind": "snapshot?", "view": "v1"})
    tables, values, seq = snapshot_content(c.custom(), "v1")
    assert tables == {"pets": {"fido": {"legs": 4}, "felix": {"legs": 4, "name": "Felix"}}}
    assert values == {"open": True}

    start = len(c.custom())
    b.set_cell("pets", "fido", "legs", 3)  # remote change, arrives through the room
    wait_for(lambda: len(deltas(c.custom()[start:])) == 1, what="delta for the remote change")
    a.del_row("pets", "felix")  # local change
    wait_for(lambda: len(deltas(c.custom()[start:])) == 2, what="delta for the local change")
    got = deltas(c.custom()[start:])
    assert got[0] == (seq + 1, ({"pets": {"fido": {"legs": 3}}}, {}, 1))
    assert got[1] == (seq + 2, ({"pets": {"felix": DELETED}}, {}, 1))


def test_no_deltas_before_a_view_asked(pair: tuple[PartyStoreWidget, PartyStoreWidget]) -> None:
    a, b = pair
    c = comm_of(a)
    b.set_cell("t", "r", "c", 1)
    wait_for(lambda: a.get_cell("t", "r", "c") == 1)
    assert [m for m in c.custom() if m["kind"] == "changes"] == []


def test_snapshot_is_chunked(
    pair: tuple[PartyStoreWidget, PartyStoreWidget], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = pair
    monkeypatch.setattr(a._view, "chunk_cells", 10)
    a.set_table("t", {f"r{i}": {"x": i, "y": str(i)} for i in range(25)})
    c = comm_of(a)
    c.from_view({"kind": "snapshot?", "view": "v"})
    parts = [m for m in c.custom() if m["kind"] == "snapshot"]
    assert len(parts) == 5 and {m["parts"] for m in parts} == {5}
    tables, _, _ = snapshot_content(c.custom(), "v")
    assert tables == {"t": {f"r{i}": {"x": i, "y": str(i)} for i in range(25)}}


def test_view_edits_reach_the_other_client_and_are_echoed(
    pair: tuple[PartyStoreWidget, PartyStoreWidget],
) -> None:
    a, b = pair
    a.set_table("pets", {"fido": {"legs": 4}})
    wait_for(lambda: b.get_table("pets") == {"fido": {"legs": 4}})
    c = comm_of(a)
    c.from_view({"kind": "snapshot?", "view": "v"})
    _, _, seq = snapshot_content(c.custom(), "v")
    start = len(c.custom())
    c.from_view(
        view_changes("v", 1, ({"pets": {"fido": {"legs": 5, "tags": ["a"]}}}, {"k": "v"}, 1))
    )
    assert a.get_table("pets") == {"fido": {"legs": 5, "tags": ["a"]}}
    wait_for(
        lambda: b.get_table("pets") == {"fido": {"legs": 5, "tags": ["a"]}}, what="remote copy"
    )
    wait_for(lambda: b.values == {"k": "v"})
    echoed = deltas(c.custom()[start:])
    assert echoed == [(seq + 1, ({"pets": {"fido": {"legs": 5, "tags": ["a"]}}}, {"k": "v"}, 1))]
    # no snapshot: the view's stream had no gap
    assert not [m for m in c.custom()[start:] if m["kind"] == "snapshot"]


def test_gap_in_the_views_stream_triggers_a_new_snapshot(
    pair: tuple[PartyStoreWidget, PartyStoreWidget],
) -> None:
    a, _ = pair
    c = comm_of(a)
    c.from_view({"kind": "snapshot?", "view": "v"})
    c.from_view(view_changes("v", 1, ({"t": {"r": {"x": 1}}}, {}, 1)))
    start = len(c.custom())
    c.from_view(view_changes("v", 3, ({"t": {"r": {"y": 2}}}, {}, 1)))  # seq 2 was lost
    assert a.get_table("t") == {"r": {"x": 1, "y": 2}}
    after = c.custom()[start:]
    assert any(m["kind"] == "snapshot" and m["to"] == "v" for m in after)
    tables, _, _ = snapshot_content(after, "v")
    assert tables == {"t": {"r": {"x": 1, "y": 2}}}
    # the stream continues from the new number without another snapshot
    start = len(c.custom())
    c.from_view(view_changes("v", 4, ({"t": {"r": {"y": 3}}}, {}, 1)))
    assert not [m for m in c.custom()[start:] if m["kind"] == "snapshot"]


def test_refused_edits_are_corrected(
    server: ServerThread, room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch)
    w = PartyStoreWidget(room, server.host, tables_schema={"t": {"n": {"type": "number"}}})
    try:
        w.wait_ready(30)
        w.set_row("t", "r", {"n": 1})
        c = comm_of(w)
        c.from_view({"kind": "snapshot?", "view": "v"})
        start = len(c.custom())
        c.from_view(view_changes("v", 1, ({"t": {"r": {"n": "not a number"}}}, {}, 1)))
        assert w.get_table("t") == {"r": {"n": 1}}
        fixes = deltas(c.custom()[start:])
        assert fixes[-1][1] == ({"t": {"r": {"n": 1}}}, {}, 1)
    finally:
        w.close()


def test_read_only_widget(server: ServerThread, room: str, monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch)
    writer = PartyStoreWidget(room, server.host)
    reader = PartyStoreWidget(room, server.host, read_only=True)
    try:
        writer.wait_ready(30)
        reader.wait_ready(30)
        writer.set_cell("t", "r", "x", 1)
        wait_for(lambda: reader.get_table("t") == {"r": {"x": 1}})
        # every writer refuses, the reads still work
        for write in (
            lambda: reader.set_cell("t", "r", "x", 2),
            lambda: reader.add_row("t", {"x": 3}),
            lambda: reader.transaction(lambda: None),
            lambda: reader.set_table("t", {}),
            reader.del_tables,
        ):
            with pytest.raises(PermissionError):
                write()
        assert reader.get_table_ids() == ["t"] and reader.get_cell("t", "r", "x") == 1
        c = comm_of(reader)
        c.from_view({"kind": "snapshot?", "view": "v"})
        start = len(c.custom())
        c.from_view(view_changes("v", 1, ({"t": {"r": {"x": 9}}}, {}, 1)))
        assert reader.get_table("t") == {"r": {"x": 1}}
        tables, _, _ = snapshot_content(c.custom()[start:], "v")
        assert tables == {"t": {"r": {"x": 1}}}
    finally:
        writer.close()
        reader.close()


def test_one_remote_cell_on_a_big_table_costs_under_1kb(
    pair: tuple[PartyStoreWidget, PartyStoreWidget],
) -> None:
    a, b = pair
    b.set_table("big", {f"row{i}": {"a": i, "b": f"s{i}", "c": i * 0.5} for i in range(20_000)})
    wait_for(lambda: len(a.df("big")) == 20_000, timeout=60, what="big table loaded")
    c = comm_of(a)
    c.from_view({"kind": "snapshot?", "view": "v"})
    start = len(c.published)
    b.set_cell("big", "row12345", "b", "changed")
    wait_for(lambda: a.get_cell("big", "row12345", "b") == "changed")
    wait_for(lambda: deltas(c.custom()), what="delta")
    assert 0 < c.bytes_since(start) < 1024
