"""Properties of the pure Changes algebra: diff, apply, coalesce, split."""

from __future__ import annotations

import copy
import itertools
import json
from functools import reduce
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partywidget.changes import (
    ChangesTooLargeError,
    apply_changes_to_content,
    cells_equal,
    changes_is_empty,
    coalesce_changes,
    content_from_changes,
    diff_content,
    split_changes,
)
from partywidget.codec import decode_changes, encode_changes, encode_message, is_cell, js_dumps
from partywidget.model import DELETED, Changes, Content

# Few ids, so that sequences of Changes keep hitting the same tables, rows and cells.
IDS = st.sampled_from(["a", "b", "c", "0", "1", "é"])
CELLS = st.one_of(
    st.sampled_from([True, False, 1, 1.0, 0, -0.0, None, "", "x", 2.5, 1e21, 2**60]),
    st.lists(st.sampled_from([1, True, 1.0, "s", None]), max_size=2),
    st.dictionaries(IDS, st.sampled_from([1, True, "s"]), max_size=2),
)
ROW = st.dictionaries(IDS, CELLS, min_size=1, max_size=4)
CONTENT = st.tuples(
    st.dictionaries(IDS, st.dictionaries(IDS, ROW, min_size=1, max_size=3), max_size=3),
    st.dictionaries(IDS, CELLS, max_size=3),
)
CELL_OR_DELETED = st.one_of(CELLS, st.just(DELETED))
CHANGES = st.tuples(
    st.dictionaries(
        IDS,
        st.one_of(
            st.just(DELETED),
            st.dictionaries(
                IDS,
                st.one_of(st.just(DELETED), st.dictionaries(IDS, CELL_OR_DELETED, max_size=3)),
                max_size=3,
            ),
        ),
        max_size=3,
    ),
    st.dictionaries(IDS, CELL_OR_DELETED, max_size=3),
    st.just(1),
)


def canon(content: Any) -> str:
    """Content as comparable text: ids sorted (order is not significant), cells exact.

    Cells compare by JavaScript's JSON text, so ``True`` vs ``1`` (equal in Python)
    differ and ``1`` vs ``1.0`` do not, as in TinyBase.
    """
    tables, values = content
    return json.dumps(
        [
            {
                tid: {rid: {cid: js_dumps(c) for cid, c in row.items()} for rid, row in t.items()}
                for tid, t in tables.items()
            },
            {vid: js_dumps(v) for vid, v in values.items()},
        ],
        sort_keys=True,
    )


def apply_all(content: Any, seq: list[Any]) -> Any:
    return reduce(apply_changes_to_content, seq, content)


def assert_no_empties(content: Any) -> None:
    for table in content[0].values():
        assert table
        for row in table.values():
            assert row


# --------------------------------------------------------------------------- diff / apply


@given(CONTENT, CONTENT)
@settings(max_examples=400)
def test_diff_then_apply_gives_new(old: Any, new: Any) -> None:
    changes = diff_content(old, new)
    assert canon(apply_changes_to_content(old, changes)) == canon(new)


@given(CONTENT, CONTENT)
@settings(max_examples=400)
def test_diff_is_minimal(old: Any, new: Any) -> None:
    tables, values, one = diff_content(old, new)
    assert one == 1
    for tid, table in tables.items():
        if table is DELETED:
            assert tid in old[0] and tid not in new[0]
            continue
        assert table, "no empty tables in a diff"
        for rid, row in table.items():
            if row is DELETED:
                assert rid in old[0][tid] and rid not in new[0][tid]
                continue
            assert row
            old_row = old[0].get(tid, {}).get(rid, {})
            for cid, cell in row.items():
                if cell is DELETED:
                    assert cid in old_row and cid not in new[0][tid][rid]
                else:
                    assert not (cid in old_row and cells_equal(old_row[cid], cell))
    for vid, value in values.items():
        if value is DELETED:
            assert vid in old[1] and vid not in new[1]
        else:
            assert not (vid in old[1] and cells_equal(old[1][vid], value))
    assert changes_is_empty(diff_content(old, old))
    assert changes_is_empty((tables, values, 1)) == (canon(old) == canon(new))


def test_diff_uses_javascript_equality() -> None:
    old = ({"t": {"r": {"a": 1, "b": 1, "c": [1], "d": {"x": 1, "y": 2}, "e": 0}}}, {"v": True})
    new = (
        {"t": {"r": {"a": 1.0, "b": True, "c": [True], "d": {"y": 2, "x": 1}, "e": -0.0}}},
        {"v": 1},
    )
    # 1 == 1.0 and 0 == -0 (===), but true !== 1, and JSON cells compare as JSON text.
    assert diff_content(old, new) == (
        {"t": {"r": {"b": True, "c": [True], "d": {"y": 2, "x": 1}}}},
        {"v": 1},
        1,
    )


def test_diff_orders_like_tinybase_set_content() -> None:
    """Sets in the new order first, then deletions (what setRow / setTables send)."""
    old: Content = ({"pets": {"fido": {"species": "cat", "legs": 4}}, "x": {"r": {"c": 1}}}, {})
    new: Content = ({"t": {"r": {"c": 1}}, "pets": {"fido": {"species": "dog"}}}, {})
    assert (
        encode_changes(diff_content(old, new))
        == '[{"t":{"r":{"c":1}},"pets":{"fido":{"species":"dog","legs":"\ufffc"}},"x":"\ufffc"},{},1]'
    )


@given(CONTENT, CHANGES)
@settings(max_examples=400)
def test_apply_is_pure_and_tinybase_shaped(content: Any, changes: Any) -> None:
    content_before = copy.deepcopy(content)
    changes_before = copy.deepcopy(changes)
    result = apply_changes_to_content(content, changes)
    assert canon(content) == canon(content_before)
    assert encode_changes(changes) == encode_changes(changes_before)
    assert_no_empties(result)
    # Every set cell is there; every deleted thing is gone.
    tables, values, _ = changes
    for tid, table in tables.items():
        if table is DELETED:
            assert tid not in result[0]
            continue
        for rid, row in table.items():
            if row is DELETED:
                assert rid not in result[0].get(tid, {})
                continue
            for cid, cell in row.items():
                got = result[0].get(tid, {}).get(rid, {})
                if cell is DELETED:
                    assert cid not in got
                else:
                    assert cells_equal(got[cid], cell)
    for vid, value in values.items():
        assert (vid not in result[1]) if value is DELETED else cells_equal(result[1][vid], value)


@given(CHANGES)
def test_apply_agrees_with_the_wire(changes: Any) -> None:
    """Applying decoded Changes equals applying the originals (empty rows are no-ops)."""
    decoded = decode_changes(encode_changes(changes))
    assert canon(content_from_changes(decoded)) == canon(content_from_changes(changes))


def test_apply_deleting_last_cell_removes_row_and_table() -> None:
    content = ({"t": {"r": {"c": 1}}, "u": {"r": {"c": 1, "d": 2}}}, {"v": 1})
    changes = ({"t": {"r": {"c": DELETED}}, "u": {"r": {"c": DELETED}}}, {"v": DELETED}, 1)
    assert apply_changes_to_content(content, changes) == ({"u": {"r": {"d": 2}}}, {})
    # An empty row in Changes creates nothing; deleting what is absent does nothing.
    assert apply_changes_to_content(
        ({}, {}), ({"t": {"r": {}}, "x": DELETED, "y": {"r": DELETED}}, {"v": DELETED}, 1)
    ) == ({}, {})


# --------------------------------------------------------------------------- coalesce


def _sets_inside_deleted(a: Any, b: Any) -> bool:
    """Does ``b`` set a cell in a table or row that ``a`` deletes?"""
    for tid, table in b[0].items():
        if table is DELETED or tid not in a[0]:
            continue
        for rid, row in table.items():
            if row is DELETED or not any(c is not DELETED for c in row.values()):
                continue
            if a[0][tid] is DELETED or a[0][tid].get(rid) is DELETED:
                return True
    return False


@given(CONTENT, st.lists(CHANGES, max_size=8))
@settings(max_examples=500)
def test_coalesced_equals_sequential(content: Any, seq: list[Any]) -> None:
    seq_before = copy.deepcopy(seq)
    coalesced = coalesce_changes(seq)
    assert canon(apply_all(content, coalesced)) == canon(apply_all(content, seq))
    assert [encode_changes(c) for c in seq] == [encode_changes(c) for c in seq_before]
    assert len(coalesced) <= len(seq)
    assert not any(changes_is_empty(c) for c in coalesced)
    # As few as possible: each boundary is one that a single Changes cannot express.
    for a, b in itertools.pairwise(coalesced):
        assert _sets_inside_deleted(a, b)


def test_coalesce_examples() -> None:
    set_c: Changes = ({"t": {"r": {"c": 1}}}, {}, 1)
    del_row: Changes = ({"t": {"r": DELETED}}, {}, 1)
    set_d: Changes = ({"t": {"r": {"d": 2}}}, {}, 1)
    assert coalesce_changes([set_c, ({"t": {"r": {"c": 2}}}, {"v": 1}, 1)]) == [
        ({"t": {"r": {"c": 2}}}, {"v": 1}, 1)
    ]
    assert coalesce_changes([set_c, del_row]) == [del_row]
    # Deleting a row then setting a cell in it needs two messages.
    assert coalesce_changes([set_c, del_row, set_d]) == [del_row, set_d]
    # ... but deleting cells of a deleted row is a no-op that merges.
    assert coalesce_changes([del_row, ({"t": {"r": {"c": DELETED}}}, {}, 1)]) == [del_row]
    assert coalesce_changes([({}, {}, 1), ({"t": {"r": {}}}, {}, 1)]) == []


# --------------------------------------------------------------------------- split


def message_bytes(changes: Any, prefix: str) -> int:
    return len(encode_message(prefix, "s", encode_changes(changes)).encode("utf-8"))


PLAIN_TEXT = st.text(max_size=30).filter(is_cell)
BIG_CHANGES = st.tuples(
    st.dictionaries(
        st.text(min_size=1, max_size=4),
        st.one_of(
            st.just(DELETED),
            st.dictionaries(
                st.text(max_size=4),
                st.one_of(
                    st.just(DELETED),
                    st.dictionaries(
                        st.text(max_size=4),
                        st.one_of(CELL_OR_DELETED, PLAIN_TEXT),
                        max_size=6,
                    ),
                ),
                max_size=6,
            ),
        ),
        max_size=4,
    ),
    st.dictionaries(st.text(max_size=4), st.one_of(CELL_OR_DELETED, PLAIN_TEXT)),
    st.just(1),
)


@given(CONTENT, BIG_CHANGES, st.integers(min_value=40, max_value=400), st.sampled_from(["", "p_"]))
@settings(max_examples=300)
def test_split_parts_fit_and_add_up(
    content: Any, changes: Any, max_bytes: int, prefix: str
) -> None:
    try:
        parts = split_changes(changes, max_bytes, prefix)
    except ChangesTooLargeError as e:
        # Only when some single entry cannot fit alone; the error says which.
        assert "does not fit" in str(e)
        return
    for part in parts:
        assert message_bytes(part, prefix) <= max_bytes
    assert canon(apply_all(content, parts)) == canon(apply_changes_to_content(content, changes))
    if message_bytes(changes, prefix) <= max_bytes:
        assert parts == [changes]


@given(BIG_CHANGES, st.sampled_from(["", "pré_"]))
@settings(max_examples=300)
def test_split_size_accounting_is_exact(changes: Any, prefix: str) -> None:
    """At exactly the encoded size the whole fits; one byte less, it must split."""
    changes = drop_empties(changes)
    size = message_bytes(changes, prefix)
    assert split_changes(changes, size, prefix) == [changes]
    if changes_is_empty(changes):
        return
    try:
        parts = split_changes(changes, size - 1, prefix)
    except ChangesTooLargeError:
        return
    assert len(parts) >= 2
    assert all(message_bytes(p, prefix) <= size - 1 for p in parts)


def drop_empties(changes: Any) -> Any:
    tables: dict[str, Any] = {}
    for tid, table in changes[0].items():
        if table is DELETED:
            tables[tid] = DELETED
        elif t := {rid: row for rid, row in table.items() if row is DELETED or row}:
            tables[tid] = t
    return tables, changes[1], 1


def test_split_names_the_cell_that_cannot_fit() -> None:
    changes: Changes = ({"t": {"r": {"small": 1, "big": "x" * 1000}}}, {}, 1)
    with pytest.raises(ChangesTooLargeError, match=r"'t'/'r'/'big'"):
        split_changes(changes, 500)
    with pytest.raises(ValueError, match=r"value 'v'"):
        split_changes(({}, {"v": ["é" * 400]}, 1), 500)


def test_split_large_changes_into_many_parts() -> None:
    changes: Changes = ({"t": {f"r{i}": {"c": "é" * 50, "n": i} for i in range(2000)}}, {}, 1)
    parts = split_changes(changes, 4096, "pfx")
    assert len(parts) > 10
    assert all(message_bytes(p, "pfx") <= 4096 for p in parts)
    assert apply_all(({}, {}), parts) == content_from_changes(changes)
