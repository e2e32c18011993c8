"""Pure functions over TinyBase Content and Changes.

Why: the persister and the widget must reason about Changes without a Store: compute
what a reload changed (:func:`diff_content`), replay Changes on a snapshot
(:func:`apply_changes_to_content`), batch edits -- incrementally on the persisters' hot
path (:func:`merge_changes_into`) or a whole sequence at once (:func:`coalesce_changes`) and keep every socket message under PartyKit's 1 MiB frame
limit (:func:`split_changes`). Semantics follow TinyBase 10's ``applyChanges``: a
deletion is :data:`~partywidget.model.DELETED` at table, row, cell or value level,
deleting the last cell of a row removes the row, the last row of a table removes the
table, and an empty row in Changes does nothing.

Content compares as dicts (id order is not significant); within one Changes every id is
distinct, so entries can be regrouped or split without changing the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from json.encoder import encode_basestring
from typing import Any

from .codec import CHANGES_TYPE, encode_cell, encode_changes, js_dumps, js_number
from .jsvalue import DELETED_MARKER, JSON_MARKER, cells_equal
from .model import DELETED, Changes, Content

__all__ = [
    "ChangesTooLargeError",
    "apply_changes_to_content",
    "cells_equal",
    "changes_is_empty",
    "coalesce_changes",
    "content_from_changes",
    "copy_changes",
    "diff_content",
    "merge_changes_into",
    "split_changes",
]


class ChangesTooLargeError(ValueError):
    """One cell or value alone cannot fit in a message of the allowed size.

    Raised by :func:`split_changes`; the message names the table/row/cell (or value)
    so the user knows which datum to shrink.
    """


# --------------------------------------------------------------------------- helpers


def _parts(obj: Any, size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(obj, list | tuple) or len(obj) != size:
        raise ValueError(f"expected a {size}-element sequence")
    tables, values = obj[0], obj[1]
    if not isinstance(tables, dict) or not isinstance(values, dict):
        raise ValueError("tables and values must be dicts")
    return tables, values


def changes_is_empty(changes: Any) -> bool:
    """True when applying ``changes`` would do nothing (no tables, values, or only
    empty rows/tables), i.e. TinyBase would not send a message for it."""
    tables, values = _parts(changes, 3)
    if values:
        return False
    for table in tables.values():
        if table is DELETED:
            return False
        for row in table.values():
            if row is DELETED or row:
                return False
    return True


def _copy_tables(tables: dict[str, Any]) -> dict[str, Any]:
    return {tid: {rid: dict(row) for rid, row in table.items()} for tid, table in tables.items()}


# --------------------------------------------------------------------------- diff / apply


def _diff_row(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cid, cell in new.items():
        if cid not in old or not cells_equal(old[cid], cell):
            out[cid] = cell
    for cid in old:
        if cid not in new:
            out[cid] = DELETED
    return out


def diff_content(old: Any, new: Any) -> Changes:
    """Minimal Changes that turn Content ``old`` into ``new``.

    Entries come in the order TinyBase's own ``setContent`` would produce them: sets and
    updates in ``new``'s order, then deletions in ``old``'s order. A table or row missing
    from ``new`` is deleted as a whole; cells equal by :func:`cells_equal` are omitted.
    """
    old_tables, old_values = _parts(old, 2)
    new_tables, new_values = _parts(new, 2)
    tables: dict[str, Any] = {}
    for tid, new_table in new_tables.items():
        if not new_table:
            continue
        old_table = old_tables.get(tid)
        if not old_table:
            tables[tid] = {rid: dict(row) for rid, row in new_table.items() if row}
            continue
        changed_table: dict[str, Any] = {}
        for rid, new_row in new_table.items():
            if not new_row:
                continue
            old_row = old_table.get(rid)
            if not old_row:
                changed_table[rid] = dict(new_row)
                continue
            changed_row = _diff_row(old_row, new_row)
            if changed_row:
                changed_table[rid] = changed_row
        for rid, old_row in old_table.items():
            if old_row and not new_table.get(rid):
                changed_table[rid] = DELETED
        if changed_table:
            tables[tid] = changed_table
    for tid, old_table in old_tables.items():
        if old_table and not new_tables.get(tid):
            tables[tid] = DELETED
    values = _diff_row(old_values, new_values)
    return tables, values, 1


def apply_changes_to_content(content: Any, changes: Any) -> Content:
    """Return the Content after applying ``changes``, as TinyBase's ``applyChanges``.

    Pure: new table/row dicts are built; the inputs are untouched (cell objects such as
    lists are shared, not copied: treat cells as immutable). New ids are appended, as in
    TinyBase's insertion-ordered Maps.
    """
    old_tables, old_values = _parts(content, 2)
    ch_tables, ch_values = _parts(changes, 3)
    tables = _copy_tables(old_tables)
    for tid, ch_table in ch_tables.items():
        if ch_table is DELETED:
            tables.pop(tid, None)
            continue
        for rid, ch_row in ch_table.items():
            if ch_row is DELETED:
                table = tables.get(tid)
                if table is not None:
                    table.pop(rid, None)
                    if not table:
                        del tables[tid]
                continue
            for cid, cell in ch_row.items():
                if cell is DELETED:
                    table = tables.get(tid)
                    if table is None:
                        continue
                    row = table.get(rid)
                    if row is None:
                        continue
                    row.pop(cid, None)
                    if not row:
                        del table[rid]
                        if not table:
                            del tables[tid]
                else:
                    tables.setdefault(tid, {}).setdefault(rid, {})[cid] = cell
    values = dict(old_values)
    for vid, value in ch_values.items():
        if value is DELETED:
            values.pop(vid, None)
        else:
            values[vid] = value
    return tables, values


def content_from_changes(changes: Any) -> Content:
    """The Content that ``changes`` produce when applied to an empty store."""
    return apply_changes_to_content(({}, {}), changes)


# --------------------------------------------------------------------------- coalesce


def _mergeable(acc_tables: dict[str, Any], tables: dict[str, Any]) -> bool:
    """Can ``tables`` be folded into ``acc_tables`` and still mean "first, then second"?

    Not when the accumulated Changes delete a table or row and the next ones set cells
    inside it: one Changes cannot say "delete the row, then set this cell" (the row's
    other cells would survive a plain cell set).
    """
    for tid, table in tables.items():
        if table is DELETED:
            continue
        acc_table: Any = acc_tables.get(tid)
        if acc_table is None:
            continue
        for rid, row in table.items():
            if row is DELETED:
                continue
            if (acc_table is DELETED or acc_table.get(rid) is DELETED) and any(
                cell is not DELETED for cell in row.values()
            ):
                return False
    return True


def merge_changes_into(acc: Changes, changes: Changes) -> bool:
    """Fold ``changes`` into ``acc`` in place so ``acc`` means "acc, then changes".

    Returns ``False`` (leaving ``acc`` untouched) when that is inexpressible: Changes
    name only what changed, so "delete row R, then set a cell in R" cannot be one
    Changes without knowing R's other cells (see :func:`_mergeable`); the caller keeps
    the two separate. In place and incremental because a loop of thousands of
    ``set_cell`` calls folds one small Changes at a time into a large batch: the cost
    is that of ``changes``, not of ``acc``. Tables and rows taken from ``changes`` are
    copied (cells are shared), so ``acc`` stays private; no empty table or row is
    created. ``acc``'s dicts must be the caller's to mutate.
    """
    acc_tables = acc[0]
    tables = changes[0]
    if acc_tables and not _mergeable(acc_tables, tables):
        return False
    for tid, table in tables.items():
        if table is DELETED:
            acc_tables[tid] = DELETED
            continue
        acc_table = acc_tables.get(tid)
        if acc_table is DELETED:
            continue  # only deletions inside (checked by _mergeable): already gone
        for rid, row in table.items():
            if row is DELETED:
                if acc_table is None:
                    acc_table = acc_tables[tid] = {}
                acc_table[rid] = DELETED
                continue
            if not row:
                continue  # an empty row does nothing
            if acc_table is None:
                acc_table = acc_tables[tid] = {}
            acc_row = acc_table.get(rid)
            if acc_row is None:
                acc_table[rid] = dict(row)
            elif acc_row is not DELETED:
                acc_row.update(row)
            # else: only deletions inside an already deleted row
    if changes[1]:
        acc[1].update(changes[1])
    return True


def copy_changes(changes: Any) -> Changes:
    """A private copy of Changes (its tables, rows and values dicts; cells are shared),
    without empty tables or rows."""
    acc: Changes = ({}, {}, 1)
    tables, values = _parts(changes, 3)
    merge_changes_into(acc, (tables, values, 1))
    return acc


def coalesce_changes(seq: Iterable[Any]) -> list[Changes]:
    """Merge consecutive Changes into as few as possible with the same net effect.

    Applying the result in order gives the same Content as applying ``seq`` in order
    (up to id order). Later cells and values win; a later table/row deletion replaces
    earlier sets inside it; a set inside an earlier-deleted row or table starts a new
    Changes (see :func:`merge_changes_into`). When a later deletion makes such a
    boundary unnecessary, the neighbours are merged again, so no two consecutive results
    could be merged. Empty Changes are dropped. Inputs are not mutated.
    """
    out: list[Changes] = []
    for changes in seq:
        if changes_is_empty(changes):
            continue
        if not out or not merge_changes_into(out[-1], changes):
            out.append(copy_changes(changes))
        while len(out) >= 2 and merge_changes_into(out[-2], out[-1]):
            out.pop()
    return out


# --------------------------------------------------------------------------- split


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


_encode_str: Callable[[str], str] = encode_basestring


def _key_len(key: str) -> int:
    """Bytes of ``"key":`` as JavaScript writes it."""
    return _utf8_len(_encode_str(key)) + 1


_DELETED_LEN = _utf8_len(js_dumps(DELETED_MARKER))


def _cell_len(cell: Any) -> int:
    """Exact UTF-8 length of a cell's wire text, cheaply for the common scalars."""
    t = type(cell)
    if t is str:
        if cell[:1] != JSON_MARKER and cell != DELETED_MARKER:
            return _utf8_len(_encode_str(cell))
    elif t is bool:
        return 4 if cell else 5
    elif cell is None:
        return 4
    elif t is int or t is float:
        return len(js_number(cell))
    elif cell is DELETED:
        return _DELETED_LEN
    return _utf8_len(js_dumps(encode_cell(cell)))  # JSON cells; raises for illegal ones


class _Packer:
    """Greedy packing of entries into parts whose exact encoded size is tracked.

    Sizes are computed once per entry (``"id":`` + value text + separators), so splitting
    is linear in the size of the Changes; nothing is re-encoded. A part's size is
    ``overhead`` (prefix, type and ``[{},{},1]``) plus, per object, its entries and the
    commas between them; opening a table or row costs its key and ``{}``.
    """

    def __init__(self, max_bytes: int, overhead: int) -> None:
        self.max_bytes = max_bytes
        self.overhead = overhead
        self.parts: list[Changes] = []
        self._new_part()

    def _new_part(self) -> None:
        self.tables: dict[str, Any] = {}
        self.values: dict[str, Any] = {}
        self.size = self.overhead
        self.parts.append((self.tables, self.values, 1))
        self.cur_tid: str | None = None
        self.cur_table: dict[str, Any] = {}
        self.cur_rid: str | None = None
        self.cur_row: dict[str, Any] = {}

    def _fit(self, cost: Any, what: str) -> None:
        """Start a new part if the entry does not fit in this one; fail if it never can."""
        if self.size + cost() > self.max_bytes:
            if self.tables or self.values:
                self._new_part()
            if self.size + cost() > self.max_bytes:
                raise ChangesTooLargeError(f"{what} does not fit in {self.max_bytes} bytes")

    def _table_cost(self, tid: str, tid_len: int) -> int:
        """Bytes to open table ``tid`` here (0 if it is the open one)."""
        if self.cur_tid == tid:
            return 0
        return (1 if self.tables else 0) + tid_len + 2

    def _open_table(self, tid: str, tid_len: int) -> dict[str, Any]:
        if self.cur_tid != tid:
            self.size += (1 if self.tables else 0) + tid_len + 2
            self.cur_table = self.tables[tid] = {}
            self.cur_tid = tid
            self.cur_rid = None
        return self.cur_table

    def add_table_deletion(self, tid: str, tid_len: int) -> None:
        def cost() -> int:
            return (1 if self.tables else 0) + tid_len + _DELETED_LEN

        self._fit(cost, f"table {tid!r} deletion")
        self.size += cost()
        self.tables[tid] = DELETED
        self.cur_tid = self.cur_rid = None

    def add_row_deletion(self, tid: str, tid_len: int, rid: str, rid_len: int) -> None:
        def cost() -> int:
            open_cost = self._table_cost(tid, tid_len)
            comma = 1 if open_cost == 0 and self.cur_table else 0
            return open_cost + comma + rid_len + _DELETED_LEN

        self._fit(cost, f"row {tid!r}/{rid!r} deletion")
        table = self._open_table(tid, tid_len)
        self.size += (1 if table else 0) + rid_len + _DELETED_LEN
        table[rid] = DELETED
        self.cur_rid = None

    def add_cell(
        self, tid: str, tid_len: int, rid: str, rid_len: int, cid: str, entry_len: int, cell: Any
    ) -> None:
        """Add one cell; ``entry_len`` is the length of its ``"cid":value``."""

        def cost() -> int:
            if self.cur_tid == tid and self.cur_rid == rid:
                return (1 if self.cur_row else 0) + entry_len
            open_cost = self._table_cost(tid, tid_len)
            comma = 1 if open_cost == 0 and self.cur_table else 0
            return open_cost + comma + rid_len + 2 + entry_len

        self._fit(cost, f"cell {tid!r}/{rid!r}/{cid!r}")
        table = self._open_table(tid, tid_len)
        if self.cur_rid != rid:
            self.size += (1 if table else 0) + rid_len + 2
            self.cur_row = table[rid] = {}
            self.cur_rid = rid
        self.size += (1 if self.cur_row else 0) + entry_len
        self.cur_row[cid] = cell

    def add_value(self, vid: str, entry_len: int, value: Any) -> None:
        def cost() -> int:
            return (1 if self.values else 0) + entry_len

        self._fit(cost, f"value {vid!r}")
        self.size += cost()
        self.values[vid] = value


def split_changes(changes: Any, max_bytes: int, prefix: str = "") -> list[Changes]:
    """Split Changes so each ``encode_message(prefix, "s", encode_changes(part))`` fits.

    Why: PartyKit (Cloudflare) closes a socket on a message over 1 MiB, silently ending
    sync; splitting keeps every frame under the limit. Applying the parts in order equals
    applying the whole (ids within one Changes are distinct, so any regrouping is safe).
    Returns ``[changes]`` when it already fits. Sizes are counted in UTF-8 bytes, exactly.

    Raises :class:`ChangesTooLargeError` (a ``ValueError``) naming the table/row/cell or
    value that cannot fit even alone.
    """
    tables, values = _parts(changes, 3)
    # Common case first: the C-backed encoder is faster than packing entry by entry.
    if _utf8_len(prefix + CHANGES_TYPE + encode_changes(changes)) <= max_bytes:
        return [(tables, values, 1)]
    overhead = _utf8_len(prefix) + len(CHANGES_TYPE) + len("[{},{},1]")
    packer = _Packer(max_bytes, overhead)
    for tid, table in tables.items():
        tid_len = _key_len(tid)
        if table is DELETED:
            packer.add_table_deletion(tid, tid_len)
            continue
        for rid, row in table.items():
            rid_len = _key_len(rid)
            if row is DELETED:
                packer.add_row_deletion(tid, tid_len, rid, rid_len)
                continue
            for cid, cell in row.items():
                entry_len = _key_len(cid) + _cell_len(cell)
                packer.add_cell(tid, tid_len, rid, rid_len, cid, entry_len, cell)
    for vid, value in values.items():
        packer.add_value(vid, _key_len(vid) + _cell_len(value), value)
    return [p for p in packer.parts if p[0] or p[1]]
