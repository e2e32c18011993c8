"""The pure rules of a TinyBase room's wire data: what the reference server accepts.

The reference (``persister-partykit-server``) validates payloads with JavaScript
semantics; these functions reproduce exactly which inputs pass, turn wire values into
what hooks see, and describe one save as a :class:`Plan` (accepted, to write, rejected).
No I/O: :mod:`partywidget.server.tinybase` runs hooks and storage around them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from partywidget.codec import CodecError, decode_cell, js_loads
from partywidget.jsvalue import DELETED_MARKER, JSON_MARKER
from partywidget.jsvalue import js_string as _js_to_string
from partywidget.jsvalue import js_to_number as _js_to_number
from partywidget.model import DELETED

__all__ = [
    "OFF_LOOP_CHARS",
    "OFF_LOOP_ITEMS",
    "Plan",
    "attempted",
    "hook_cell",
    "is_content_or_changes",
    "longest_id",
    "marker_misuse",
    "parse_changes",
    "row_items",
    "strip_deleted",
    "table_items",
    "to_wire",
]


# JavaScript semantics the reference relies on, reproduced so that exactly the same
# inputs are accepted.


def _js_equals_one(x: Any) -> bool:
    """JavaScript's ``x == 1`` (the reference's check of a Changes' third element)."""
    if x is True:
        return True
    if x is False or x is None or x is DELETED or isinstance(x, dict):
        return False
    if isinstance(x, int | float):
        return bool(x == 1)
    return _js_to_number(_js_to_string(x)) == 1


def _replace_undefined(obj: Any) -> Any:
    """The reference's ``jsonParseWithUndefined``: ``"\\uFFFC"`` at any depth -> DELETED."""
    if type(obj) is str:
        return DELETED if obj == DELETED_MARKER else obj
    if type(obj) is list:
        return [_replace_undefined(item) for item in obj]
    if type(obj) is dict:
        return {key: _replace_undefined(value) for key, value in obj.items()}
    return obj


def strip_deleted(cell: Any) -> Any:
    """Inside an (unencoded) object/array cell, ``undefined`` is not storable: drop it
    from objects and make it ``null`` in arrays, as JSON.stringify does."""
    if type(cell) is dict:
        return {k: strip_deleted(v) for k, v in cell.items() if v is not DELETED}
    if type(cell) is list:
        return [None if v is DELETED else strip_deleted(v) for v in cell]
    return cell


def _is_cell_or_value(x: Any) -> bool:
    t = type(x)
    if t is str or t is bool or t is int or t is dict or t is list or x is None:
        return True
    return t is float and math.isfinite(x)


def _is_things(things: Any, depth: int, changes: bool) -> bool:
    if type(things) is not dict:
        return False
    for thing in things.values():
        if thing is DELETED:
            if not changes:
                return False
        elif depth:
            if not _is_things(thing, depth - 1, changes):
                return False
        elif not _is_cell_or_value(thing):
            return False
    return True


def is_content_or_changes(obj: Any, changes: bool) -> bool:
    """The reference's ``isContentOrChanges`` (on a parsed, undefined-replaced payload)."""
    return (
        type(obj) is list
        and len(obj) == (3 if changes else 2)
        and (not changes or _js_equals_one(obj[2]))
        and _is_things(obj[0], 2, changes)
        and _is_things(obj[1], 0, changes)
    )


def longest_id(tables: dict[str, Any], values: dict[str, Any]) -> int:
    longest = max(map(len, values), default=0)
    for table_id, table in tables.items():
        longest = max(longest, len(table_id))
        if type(table) is dict:
            for row_id, row in table.items():
                longest = max(longest, len(row_id))
                if type(row) is dict:
                    longest = max(longest, max(map(len, row), default=0))
    return longest


def to_wire(tables: dict[str, Any], values: dict[str, Any]) -> list[Any]:
    """Changes with DELETED at table/row/cell/value level -> JSON-ready wire list."""

    def mark(x: Any) -> Any:
        return DELETED_MARKER if x is DELETED else x

    wire_tables: dict[str, Any] = {}
    for table_id, table in tables.items():
        if table is DELETED:
            wire_tables[table_id] = DELETED_MARKER
            continue
        wire_table: dict[str, Any] = {}
        for row_id, row in table.items():
            wire_table[row_id] = (
                DELETED_MARKER if row is DELETED else {c: mark(v) for c, v in row.items()}
            )
        wire_tables[table_id] = wire_table
    return [wire_tables, {v: mark(x) for v, x in values.items()}, 1]


def hook_cell(cell: Any) -> Any:
    """What hooks see of a wire cell: decoded JSON cells, the raw value if undecodable."""
    if cell is DELETED or cell == DELETED_MARKER:
        return cell
    try:
        return decode_cell(cell)
    except CodecError:
        return cell


def marker_misuse(tables: dict[str, Any], values: dict[str, Any]) -> str | None:
    """Why a payload's cells misuse the reserved markers, or ``None``.

    ``"\\uFFFD"`` starts an object/array cell (its JSON follows) and ``"\\uFFFC"`` means
    "deleted" (only in Changes and only as a whole table/row/cell/value, where it was
    already turned into DELETED before this check). A string cell breaking these rules
    cannot be decoded by clients: stored, it would make the whole room unloadable for
    them. The reference server stores such cells; refusing them is compatible with
    every well-formed client, which never sends them.
    """

    def check(cell: Any, where: str) -> str | None:
        if type(cell) is dict or type(cell) is list:
            # An unencoded object/array cell: clients refuse "\\uFFFC" anywhere in it.
            if _contains_deleted_marker(cell):
                return f'deletion marker "\\ufffc" inside an object/array cell at {where}'
            return None
        if type(cell) is not str:
            return None
        if cell == DELETED_MARKER:
            return f'deletion marker "\\ufffc" as a cell of Content at {where}'
        if cell.startswith(JSON_MARKER):
            try:
                decode_cell(cell)
            except CodecError as error:
                return f'reserved marker "\\ufffd" misused at {where}: {error}'
        return None

    for table_id, table in tables.items():
        if type(table) is dict:
            for row_id, row in table.items():
                if type(row) is dict:
                    for cell_id, cell in row.items():
                        reason = check(cell, f"{table_id!r}/{row_id!r}/{cell_id!r}"[:200])
                        if reason is not None:
                            return reason
    for value_id, value in values.items():
        reason = check(value, f"value {value_id!r}"[:200])
        if reason is not None:
            return reason
    return None


def _contains_deleted_marker(obj: Any) -> bool:
    if type(obj) is str:
        return obj == DELETED_MARKER
    if type(obj) is dict:
        return any(_contains_deleted_marker(v) for v in obj.values())
    if type(obj) is list:
        return any(_contains_deleted_marker(v) for v in obj)
    return False


def row_items(table_id: str, row_id: str, row: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A row's cells in ``Plan.rejected``'s form."""
    return [("cell", table_id, row_id, c, v is not DELETED) for c, v in row.items()]


def table_items(table_id: str, table: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A table's rows (deleted) and cells in ``Plan.rejected``'s form."""
    items: list[tuple[Any, ...]] = []
    for row_id, row in table.items():
        if row is DELETED:
            items.append(("row", table_id, row_id))
        else:
            items.extend(row_items(table_id, row_id, row))
    return items


def attempted(plan: Plan) -> list[tuple[Any, ...]]:
    """Every item a plan would change (in ``Plan.rejected``'s form), rejected ones too."""
    items: list[tuple[Any, ...]] = list(plan.rejected)
    for table_id, table in plan.accepted_tables.items():
        if table is DELETED:
            items.append(("table", table_id))
        else:
            items.extend(table_items(table_id, table))
    items.extend(("value", v, x is not DELETED) for v, x in plan.accepted_values.items())
    return items


@dataclass
class Plan:
    """One save: what the hooks accepted, what to write, what to tell the sender."""

    accepted_tables: dict[str, Any] = field(default_factory=dict)
    accepted_values: dict[str, Any] = field(default_factory=dict)
    set_cells: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    set_values: dict[str, Any] = field(default_factory=dict)
    del_tables: list[str] = field(default_factory=list)
    del_rows: list[tuple[str, str]] = field(default_factory=list)
    del_cells: list[tuple[str, str, str]] = field(default_factory=list)
    del_values: list[str] = field(default_factory=list)
    # ("table", t) | ("row", t, r) | ("cell", t, r, c, was_set) | ("value", v, was_set)
    rejected: list[tuple[Any, ...]] = field(default_factory=list)
    has_store: bool = False

    def accepted_row(self, table_id: str, row_id: str) -> dict[str, Any]:
        table: dict[str, Any] = self.accepted_tables.setdefault(table_id, {})
        row: dict[str, Any] = table.setdefault(row_id, {})
        return row


OFF_LOOP_CHARS = 256 * 1024
"""Messages longer than this are parsed, planned and encoded in slices or off the loop."""

OFF_LOOP_ITEMS = 4096
"""Big plans yield to the event loop after this many items (hooks run on the loop)."""


def parse_changes(text: str, max_depth: int, max_id_length: int) -> tuple[Any, str | None]:
    """``(payload, None)`` for valid Changes JSON, else ``(None, why it is refused)``."""
    try:
        payload = js_loads(text, max_depth=max_depth)
    except CodecError as error:
        return None, str(error)
    if DELETED_MARKER in text or "\\u" in text:
        payload = _replace_undefined(payload)
    if not is_content_or_changes(payload, True):
        return None, "not [tables, values, 1]"
    if longest_id(payload[0], payload[1]) > max_id_length:
        return None, "id too long"
    misuse = marker_misuse(payload[0], payload[1])
    if misuse is not None:
        return None, misuse
    return payload, None
