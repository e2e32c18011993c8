"""The kernel side of the kernel <-> view protocol (``partywidget.view``), with plain data.

No kernel, no comm, no server: messages in, messages out. Corrections read a real
(pure, synchronous) Store.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from partywidget.codec import decode_changes, decode_content, encode_changes
from partywidget.model import DELETED, Changes, Content
from partywidget.store import create_store
from partywidget.view import (
    CHANGES,
    SNAPSHOT,
    SNAPSHOT_REQUEST,
    Received,
    ViewProtocol,
    chunk_tables,
    corrections,
)


def protocol(chunk_cells: int | None = None) -> ViewProtocol:
    counter = itertools.count(1)
    return ViewProtocol(chunk_cells, new_sid=lambda: f"s{next(counter)}")


def edit(view: str, seq: Any, changes: Any) -> dict[str, Any]:
    return {"kind": CHANGES, "view": view, "seq": seq, "changes": encode_changes(changes)}


def reassemble(messages: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the view rebuilds from one snapshot's parts (see js/protocol.ts)."""
    tables: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for message in messages:
        part_tables, part_values = decode_content(message["content"])
        for table_id, rows in part_tables.items():
            tables.setdefault(table_id, {}).update(rows)
        if message["part"] == 0:
            values = part_values
    return tables, values


CONTENT: Content = (
    {"t": {f"r{i}": {"x": i, "y": str(i)} for i in range(25)}, "u": {"a": {"j": [1, {"k": 2}]}}},
    {"open": True},
)


def test_message_kinds_match_the_front_end() -> None:
    assert (SNAPSHOT_REQUEST, SNAPSHOT, CHANGES) == ("snapshot?", "snapshot", "changes")


def test_no_deltas_before_a_view_asked() -> None:
    p = protocol()
    assert p.delta(({"t": {"r": {"c": 1}}}, {}, 1)) == []
    assert p.seq == 0 and p.deltas == 0


def test_snapshot_request_then_numbered_deltas() -> None:
    p = protocol()
    assert p.receive({"kind": SNAPSHOT_REQUEST, "view": "v"}) == Received("v", resync=True)
    [snapshot] = p.snapshot("v", CONTENT)
    assert snapshot["kind"] == SNAPSHOT and snapshot["to"] == "v" and snapshot["seq"] == 0
    assert reassemble([snapshot]) == CONTENT
    first = p.delta(({"t": {"r0": {"x": -1}}}, {}, 1))
    second = p.delta(({"t": {"r1": DELETED}}, {"open": DELETED}, 1))
    assert [m["seq"] for m in first + second] == [1, 2]
    assert decode_changes(second[0]["changes"]) == ({"t": {"r1": DELETED}}, {"open": DELETED}, 1)
    # a later snapshot continues the numbering: the view resumes after its seq
    assert p.snapshot(None, CONTENT)[0]["seq"] == 2
    assert (p.snapshots, p.deltas) == (2, 2)


def test_snapshots_are_chunked_by_whole_rows() -> None:
    p = protocol(chunk_cells=10)
    parts = p.snapshot("v", CONTENT)
    # 25 rows of 2 cells in parts of >= 10 cells (5 rows), the 1-cell table in a 6th part
    assert [len(m["content"]) > 0 for m in parts] == [True] * 6
    assert {m["parts"] for m in parts} == {6} and [m["part"] for m in parts] == list(range(6))
    assert {m["sid"] for m in parts} == {"s1"}
    assert reassemble(parts) == CONTENT
    # values travel once, in the first part
    assert all(decode_content(m["content"])[1] == {} for m in parts[1:])
    assert p.snapshot_parts == 6
    assert p.snapshot("v", CONTENT)[0]["sid"] == "s2"  # a new snapshot, a new id


def test_an_empty_store_is_one_empty_part() -> None:
    assert chunk_tables({}, 10) == [{}]
    [only] = protocol().snapshot("v", ({}, {}))
    assert (only["part"], only["parts"]) == (0, 1)
    assert reassemble([only]) == ({}, {})


def test_view_edits_in_order_are_applied_without_a_snapshot() -> None:
    p = protocol()
    p.receive({"kind": SNAPSHOT_REQUEST, "view": "v"})
    for seq in (1, 2, 3):
        got = p.receive(edit("v", seq, ({"t": {"r": {"n": seq}}}, {}, 1)))
        assert got == Received("v", changes=({"t": {"r": {"n": seq}}}, {}, 1))


@pytest.mark.parametrize(
    ("sequence", "resyncs"),
    [
        ([1, 3, 4], [False, True, False]),  # a lost message: resync, then continue from 3
        ([1, 1, 2], [False, True, False]),  # a duplicate
        ([2, 1, 3], [True, True, True]),  # early, then late (each is a gap)
    ],
)
def test_a_gap_in_a_views_stream_asks_for_a_snapshot(
    sequence: list[int], resyncs: list[bool]
) -> None:
    p = protocol()
    p.receive({"kind": SNAPSHOT_REQUEST, "view": "v"})
    got = [p.receive(edit("v", seq, ({"t": {"r": {"n": seq}}}, {}, 1))) for seq in sequence]
    assert [r is not None and r.resync for r in got] == resyncs
    # the edits themselves are still applied: the snapshot then heals the view
    assert all(r is not None and r.changes is not None for r in got)


def test_each_view_has_its_own_stream() -> None:
    p = protocol()
    p.receive({"kind": SNAPSHOT_REQUEST, "view": "a"})
    p.receive({"kind": SNAPSHOT_REQUEST, "view": "b"})
    assert not p.receive(edit("a", 1, ({}, {"x": 1}, 1))).resync  # type: ignore[union-attr]
    assert not p.receive(edit("b", 1, ({}, {"x": 2}, 1))).resync  # type: ignore[union-attr]
    # a view that asks again starts its stream over
    p.receive({"kind": SNAPSHOT_REQUEST, "view": "a"})
    assert not p.receive(edit("a", 1, ({}, {"x": 3}, 1))).resync  # type: ignore[union-attr]


def test_undecodable_or_read_only_edits_are_answered_with_a_snapshot() -> None:
    p = protocol()
    p.receive({"kind": SNAPSHOT_REQUEST, "view": "v"})
    bad = p.receive({"kind": CHANGES, "view": "v", "seq": 1, "changes": "[not json"})
    assert bad is not None and bad.changes is None and bad.resync and "bad changes" in bad.problem
    refused = p.receive(edit("v", 2, ({}, {"x": 1}, 1)), read_only=True)
    assert refused is not None and refused.changes is None and refused.resync
    assert "read-only" in refused.problem


def test_what_is_not_a_view_message_is_ignored() -> None:
    p = protocol()
    assert p.receive("hello") is None
    assert p.receive({"kind": "something else", "view": "v"}) is None
    assert p.views == {}


def test_an_unnumbered_edit_is_applied_then_healed_by_a_snapshot() -> None:
    p = protocol()
    p.receive({"kind": SNAPSHOT_REQUEST, "view": "v"})
    got = p.receive(edit("v", None, ({}, {"x": 1}, 1)))
    assert got is not None and got.changes == ({}, {"x": 1}, 1) and got.resync
    assert p.views["v"] == 1  # it took the next number: the stream goes on from 2
    assert not p.receive(edit("v", 2, ({}, {"x": 2}, 1))).resync  # type: ignore[union-attr]


def test_forget_stops_deltas() -> None:
    p = protocol()
    p.receive({"kind": SNAPSHOT_REQUEST, "view": "v"})
    assert p.delta(({}, {"x": 1}, 1))
    p.forget()
    assert p.delta(({}, {"x": 2}, 1)) == []


# -- corrections ------------------------------------------------------------------------


def test_corrections_are_the_stores_cells_where_it_refused() -> None:
    store = create_store().set_tables_schema({"t": {"n": {"type": "number"}}})
    store.set_row("t", "r", {"n": 1})
    requested: Changes = ({"t": {"r": {"n": "not a number"}, "q": {"n": 2}}}, {}, 1)
    store.apply_changes(requested)  # the string is refused, the new row taken
    assert corrections(requested, store) == ({"t": {"r": {"n": 1}}}, {}, 1)


def test_corrections_restore_deletions_the_store_did_not_make() -> None:
    store = create_store().set_tables({"t": {"r": {"n": 1}}}).set_values({"v": 1})
    requested = ({"t": DELETED, "u": {"r": DELETED}}, {"v": DELETED, "w": 2}, 1)
    # nothing applied (as if the Store refused everything)
    assert corrections(requested, store) == ({"t": {"r": {"n": 1}}}, {"v": 1, "w": DELETED}, 1)
    store.del_table("t").del_value("v").set_value("w", 2)
    assert corrections(requested, store) is None


def test_corrections_compare_as_javascript_does() -> None:
    store = create_store().set_row("t", "r", {"n": 4, "b": True, "j": [1, {"a": 1}]})
    # 4 == 4.0 in JavaScript, but true !== 1
    assert corrections(({"t": {"r": {"n": 4.0, "j": [1, {"a": 1}]}}}, {}, 1), store) is None
    assert corrections(({"t": {"r": {"b": 1}}}, {}, 1), store) == ({"t": {"r": {"b": True}}}, {}, 1)


def test_the_protocol_sends_corrections_as_a_numbered_delta() -> None:
    store = create_store().set_values({"v": 1})
    p = protocol()
    p.receive({"kind": SNAPSHOT_REQUEST, "view": "v"})
    assert p.corrections(({}, {"v": 1}, 1), store) == []
    [fix] = p.corrections(({}, {"v": 2}, 1), store)
    assert fix["seq"] == 1 and decode_changes(fix["changes"]) == ({}, {"v": 1}, 1)
