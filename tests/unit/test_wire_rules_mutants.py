"""Server wire rules that mutation testing found unpinned: marker misuse inside
object/array cells, and the item list of a plan (what a writer is told was refused)."""

from __future__ import annotations

from partywidget.jsvalue import DELETED_MARKER
from partywidget.model import DELETED
from partywidget.server.wire_rules import Plan, attempted, marker_misuse, table_items


def test_deletion_marker_nested_in_an_object_or_array_cell_is_refused() -> None:
    assert marker_misuse({"t": {"r": {"c": {"a": [1, {"b": DELETED_MARKER}]}}}}, {}) is not None
    assert marker_misuse({}, {"v": [["x", DELETED_MARKER]]}) is not None
    assert marker_misuse({}, {"v": {"k": DELETED_MARKER}}) is not None


def test_object_and_array_cells_without_the_marker_pass() -> None:
    cell = {"a": [1, "text", None, {"b": "\ufffd"}], "c": 2.5}
    assert marker_misuse({"t": {"r": {"c": cell}}}, {"v": ["x", [True]]}) is None


def test_table_items_lists_deleted_rows_and_each_cell() -> None:
    table = {"gone": DELETED, "kept": {"a": 1, "b": DELETED}}
    assert table_items("t", table) == [
        ("row", "t", "gone"),
        ("cell", "t", "kept", "a", True),
        ("cell", "t", "kept", "b", False),
    ]


def test_attempted_lists_rejected_then_accepted_items() -> None:
    plan = Plan(
        accepted_tables={"dropped": DELETED, "t": {"r": {"c": 1}}},
        accepted_values={"v": 2, "w": DELETED},
        rejected=[("table", "refused")],
    )
    assert attempted(plan) == [
        ("table", "refused"),
        ("table", "dropped"),
        ("cell", "t", "r", "c", True),
        ("value", "v", True),
        ("value", "w", False),
    ]


def test_changes_third_element_is_compared_as_javascript_x_equals_one() -> None:
    from partywidget.server.wire_rules import is_content_or_changes

    for one in (1, 1.0, True, "1", " 1 ", [1]):
        assert is_content_or_changes([{}, {}, one], True), one
    others: tuple[object, ...] = (False, None, DELETED, {}, 0, 2, "2", "x", [])
    for other in others:
        assert not is_content_or_changes([{}, {}, other], True), other
