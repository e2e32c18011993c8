"""Transactions: start, finish (calling listeners in TinyBase's order), rollback, Changes.

Every setter runs inside a transaction (its own, or the caller's). Finishing the outermost
one calls, in TinyBase's order: mutator listeners (whose changes join the transaction),
``do_rollback``, will-finish listeners, non-mutator listeners (during which the Store
refuses changes), then did-finish listeners; and finally forgets the transaction's net
changes. ``get_transaction_changes()``/``get_transaction_log()`` read those net changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from partywidget.model import DELETED, Changes
from partywidget.store._cells import JSON_PREFIX, decode_if_json
from partywidget.store._core import StoreCore
from partywidget.store._js import js_truthy, strict_equal
from partywidget.store._listeners import ALL, Tree

__all__ = ["StoreTransactions", "TransactionLog"]

TransactionLog = tuple[
    bool,
    bool,
    dict[str, Any],
    dict[Any, Any],
    dict[str, Any],
    dict[Any, Any],
    dict[str, int],
    dict[str, dict[str, int]],
    dict[str, dict[str, dict[str, int]]],
    dict[str, int],
]


def _decode(raw: Any) -> Any:
    return DELETED if raw is DELETED else decode_if_json(raw)


def _clone3(changed: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    return {t: {r: dict(cells) for r, cells in rows.items()} for t, rows in changed.items()}


class StoreTransactions(StoreCore):
    """Transaction lifecycle and the dispatch of change listeners."""

    def __init__(self) -> None:
        super().__init__()
        # Per (non-mutator, mutator): how many data listeners exist. Zero means the
        # finishing transaction can skip listener dispatch entirely.
        self._data_listener_counts = [0, 0]
        self._get_cell_change_fn = self._get_cell_change
        # Per mutator flag: which groups of tabular listeners exist (None: recompute).
        self._tabular_flags: list[tuple[bool, bool, bool] | None] = [None, None]
        self._all_changes: tuple[dict[Any, Any], ...] = (
            self._changed_table_ids,
            self._changed_table_cell_ids,
            self._changed_row_count,
            self._changed_row_ids,
            self._changed_cell_ids,
            self._changed_cells,
            self._invalid_cells,
            self._changed_value_ids,
            self._changed_values,
            self._invalid_values,
        )
        self._get_value_change_fn = self._get_value_change

    # Implemented by the public layer (rollback re-applies old cells through setters).
    def _set_or_del_cell(self, table_id: str, row_id: str, cell_id: str, cell: Any) -> None:
        raise NotImplementedError

    def _set_or_del_value(self, value_id: str, value: Any) -> None:
        raise NotImplementedError

    # -- change inspection -----------------------------------------------------------------

    def _get_cell_change(self, table_id: str, row_id: str, cell_id: str) -> tuple[bool, Any, Any]:
        """TinyBase's ``getCellChange``: ``(changed, old_cell, new_cell)``.

        ``DELETED`` stands for an absent cell; unchanged cells give their current value.
        """
        if self._lazy_cells:
            self._materialize_changed_cells()
        pair = self._changed_cells.get(table_id, {}).get(row_id, {}).get(cell_id)
        if pair is not None:
            return (True, _decode(pair[0]), _decode(pair[1]))
        cell = self.get_cell(table_id, row_id, cell_id)
        cell = cell if self.has_cell(table_id, row_id, cell_id) else DELETED
        return (False, cell, cell)

    def _get_value_change(self, value_id: str) -> tuple[bool, Any, Any]:
        pair = self._changed_values.get(value_id)
        if pair is not None:
            return (True, _decode(pair[0]), _decode(pair[1]))
        value = self.get_value(value_id) if self.has_value(value_id) else DELETED
        return (False, value, value)

    def get_transaction_changes(self) -> Changes:
        """The net Changes of the current transaction: ``(tables, values, 1)``.

        A deleted table, row, cell or value is ``DELETED``; cells that changed and then
        changed back are left out. Meaningful inside a transaction and its listeners.
        """
        tables: dict[str, Any] = {}
        lazy = self._lazy_cells
        for table_id, rows in self._changed_cells.items():
            bulk_rows = lazy.get(table_id) if lazy else None
            if bulk_rows is not None:
                # Created in bulk by this transaction: every cell is new (no need to
                # build the deferred per-cell records just to read them back).
                tables[table_id] = {
                    row_id: {
                        cell_id: decode_if_json(cell)
                        if cell.__class__ is str and cell[:1] == JSON_PREFIX
                        else cell
                        for cell_id, cell in row.items()
                    }
                    for row_id, row in bulk_rows.items()
                }
                continue
            if self._changed_table_ids.get(table_id) == -1:
                tables[table_id] = DELETED
                continue
            changed_row_ids = self._changed_row_ids.get(table_id, {})
            table: dict[str, Any] = {}
            for row_id, cells in rows.items():
                if changed_row_ids.get(row_id) == -1:
                    table[row_id] = DELETED
                    continue
                row = {
                    cell_id: _decode(pair[1])
                    for cell_id, pair in cells.items()
                    if not strict_equal(pair[0], pair[1])
                }
                if row:
                    table[row_id] = row
            if table:
                tables[table_id] = table
        values = {
            value_id: _decode(pair[1])
            for value_id, pair in self._changed_values.items()
            if not strict_equal(pair[0], pair[1])
        }
        return (tables, values, 1)

    def get_transaction_log(self) -> TransactionLog:
        """TinyBase's ``getTransactionLog`` (cells decoded; ``DELETED`` for absent)."""
        if self._lazy_cells:
            self._materialize_changed_cells()

        def pairs3(changed: dict[str, dict[str, dict[str, list[Any]]]]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for t, rows in changed.items():
                table = {}
                for r, cells in rows.items():
                    row = {
                        c: [_decode(p[0]), _decode(p[1])]
                        for c, p in cells.items()
                        if not strict_equal(p[0], p[1])
                    }
                    if row:
                        table[r] = row
                if table:
                    out[t] = table
            return out

        return (
            bool(self._changed_cells),
            bool(self._changed_values),
            pairs3(self._changed_cells),
            {
                t: {r: {c: list(v) for c, v in cells.items()} for r, cells in rows.items()}
                for t, rows in self._invalid_cells.items()
            },
            {
                v: [_decode(p[0]), _decode(p[1])]
                for v, p in self._changed_values.items()
                if not strict_equal(p[0], p[1])
            },
            {v: list(values) for v, values in self._invalid_values.items()},
            dict(self._changed_table_ids),
            {t: dict(ids) for t, ids in self._changed_row_ids.items() if ids},
            {
                t: {r: dict(ids) for r, ids in rows.items() if ids}
                for t, rows in self._changed_cell_ids.items()
                if any(rows.values())
            },
            dict(self._changed_value_ids),
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start_transaction(self) -> Any:
        """Start (or nest into) a transaction; return the Store."""
        if self._transactions != -1:
            self._transactions += 1
        if self._transactions == 1 and self._start_transaction_listeners:
            try:
                self._registry.call(self._start_transaction_listeners, None)
            except BaseException:
                self._rollback_requested = True
                self._finish_quietly()
                raise
        return self

    def _finish_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self.finish_transaction()

    def _abort_transaction(self) -> None:
        """After an exception inside a transaction: roll it back (as TinyBase's catch)."""
        if self._transactions > 0:
            self._rollback_requested = True
            self._finish_quietly()

    def finish_transaction(self, do_rollback: Callable[[Any], Any] | None = None) -> Any:
        """Finish the (outermost) transaction: listeners, optional rollback; the Store."""
        if self._transactions > 0:
            self._transactions -= 1
            if self._transactions == 0:
                self._transactions = 1
                try:
                    self._finish(do_rollback)
                finally:
                    self._reset_transaction()
        return self

    def _finish(self, do_rollback: Callable[[Any], Any] | None) -> None:
        committed = False
        call_did_finish = False
        error: Exception | None = None
        try:
            try:
                if self._rollback_requested:
                    self._rollback()
                else:
                    if self._data_listener_counts[1]:
                        was_mutating = self._mutating
                        self._mutating = True
                        try:
                            self._call_change_listeners(1)
                        finally:
                            self._mutating = was_mutating
                    if do_rollback is not None and js_truthy(do_rollback(self)):
                        self._rollback()
                    call_did_finish = True
                    will_finish = self._finish_transaction_listeners[0]
                    if will_finish:
                        self._registry.call_then_throw(will_finish)
                    self._transactions = -1
                    committed = True
                    if self._data_listener_counts[0]:
                        self._call_change_listeners(0)
            except BaseException:
                if not committed:
                    self._rollback()
                raise
        except Exception as exc:
            error = exc
        if call_did_finish:
            try:
                self._transactions = -1
                did_finish = self._finish_transaction_listeners[1]
                if did_finish:
                    self._registry.call_then_throw(did_finish)
            except Exception as exc:
                if error is None:
                    error = exc
        if error is not None:
            raise error

    def _rollback(self) -> None:
        if self._old_tables_schema is not None:
            has_schema, tables_schema = self._old_tables_schema
            self._set_valid_tables_schema(tables_schema)
            self._has_tables_schema = has_schema
        if self._old_values_schema is not None:
            has_schema, values_schema = self._old_values_schema
            self._set_valid_values_schema(values_schema)
            self._has_values_schema = has_schema
        if self._lazy_cells:
            self._materialize_changed_cells()
        for table_id, rows in list(self._changed_cells.items()):
            for row_id, cells in list(rows.items()):
                for cell_id, pair in list(cells.items()):
                    self._set_or_del_cell(table_id, row_id, cell_id, pair[0])
        self._changed_cells.clear()
        for value_id, pair in list(self._changed_values.items()):
            self._set_or_del_value(value_id, pair[0])
        self._changed_values.clear()

    def _reset_transaction(self) -> None:
        self._transactions = 0
        self._rollback_requested = False
        self._old_tables_schema = self._old_values_schema = None
        self._had_tables = bool(self._tables)
        self._had_values = bool(self._values)
        for changes in filter(None, self._all_changes):  # the non-empty ones (C loop)
            changes.clear()
        if self._lazy_cells:
            self._lazy_cells = {}

    # -- dispatch --------------------------------------------------------------------------

    def _call_change_listeners(self, mutator: int) -> None:
        if self._invalid_cells and self._invalid_cell_listeners[mutator]:
            self._call_invalid_cell_listeners(mutator)
        if self._changed_cells:
            self._call_tabular_listeners(mutator)
        if self._invalid_values and self._invalid_value_listeners[mutator]:
            self._call_invalid_value_listeners(mutator)
        if self._changed_values:
            self._call_values_listeners(mutator)

    def _call_invalid_cell_listeners(self, mutator: int) -> None:
        tree = self._invalid_cell_listeners[mutator]
        invalid_cells = self._invalid_cells
        if mutator:
            # Like TinyBase's mapClone3, copy the maps but share the lists of invalid
            # cells, so invalid input added by a mutator listener shows up in later calls.
            invalid_cells = {
                t: {r: dict(cells) for r, cells in rows.items()}
                for t, rows in invalid_cells.items()
            }
        for table_id, rows in list(invalid_cells.items()):
            for row_id, cells in list(rows.items()):
                for cell_id, invalids in list(cells.items()):
                    # (Non-mutators cannot add invalid input; mutators iterate a copy.)
                    self._registry.call(tree, [table_id, row_id, cell_id], invalids)

    def _call_invalid_value_listeners(self, mutator: int) -> None:
        tree = self._invalid_value_listeners[mutator]
        invalid_values = self._invalid_values
        if mutator:
            invalid_values = dict(invalid_values)  # lists shared, as TinyBase's mapClone
        for value_id, invalids in list(invalid_values.items()):
            self._registry.call(tree, [value_id], invalids)

    def _call_ids_and_has(
        self, changed_ids: dict[str, int], ids_tree: Tree, has_tree: Tree, ids: list[str]
    ) -> bool:
        if not changed_ids:
            return False
        call = self._registry.call
        if ids_tree:
            call(ids_tree, ids or None, lambda: dict(changed_ids))
        if has_tree:
            for changed_id, changed in list(changed_ids.items()):
                call(has_tree, [*ids, changed_id], changed == 1)
        return True

    def _call_tabular_listeners(self, mutator: int) -> None:
        m = mutator
        flags = self._tabular_flags[m]
        if flags is None:
            flags = self._tabular_flags[m] = (
                bool(self._has_tables_listeners[m]),
                any(
                    (
                        self._cell_ids_listeners[m],
                        self._has_cell_listeners[m],
                        self._row_ids_listeners[m],
                        self._has_row_listeners[m],
                        self._table_cell_ids_listeners[m],
                        self._has_table_cell_listeners[m],
                        self._row_count_listeners[m],
                        self._sorted_row_ids_listeners[m],
                        self._table_ids_listeners[m],
                        self._has_table_listeners[m],
                    )
                ),
                bool(
                    self._cell_listeners[m]
                    or self._row_listeners[m]
                    or self._table_listeners[m]
                    or self._tables_listeners[m]
                ),
            )
        has_tables_listeners, has_id_listeners, has_other = flags
        if not (has_tables_listeners or has_id_listeners or has_other):
            return
        if self._lazy_cells:
            self._materialize_changed_cells()
        call = self._registry.call
        if not (has_tables_listeners or has_id_listeners or mutator):
            # Only cell/row/table/tables listeners, non-mutator: the usual case.
            self._call_cell_listeners(m, self._changed_cells, call)
            return
        sorted_tree = self._sorted_row_ids_listeners[m]
        if mutator:
            table_ids = dict(self._changed_table_ids)
            table_cell_ids = {t: dict(ids) for t, ids in self._changed_table_cell_ids.items()}
            row_count = dict(self._changed_row_count)
            row_ids = {t: dict(ids) for t, ids in self._changed_row_ids.items()}
            cell_ids = {
                t: {r: dict(ids) for r, ids in rows.items()}
                for t, rows in self._changed_cell_ids.items()
            }
            changed_cells = {
                t: {r: {c: list(p) for c, p in cells.items()} for r, cells in rows.items()}
                for t, rows in self._changed_cells.items()
            }
        else:
            table_ids = self._changed_table_ids
            table_cell_ids = self._changed_table_cell_ids
            row_count = self._changed_row_count
            row_ids = self._changed_row_ids
            cell_ids = self._changed_cell_ids
            changed_cells = self._changed_cells
        if has_tables_listeners:
            has_tables_now = bool(self._tables)
            if has_tables_now != self._had_tables:
                call(self._has_tables_listeners[m], None, has_tables_now)
        if has_id_listeners:
            self._call_ids_and_has(
                table_ids, self._table_ids_listeners[m], self._has_table_listeners[m], []
            )
            for table_id, ids in list(table_cell_ids.items()):
                self._call_ids_and_has(
                    ids,
                    self._table_cell_ids_listeners[m],
                    self._has_table_cell_listeners[m],
                    [table_id],
                )
            row_count_tree = self._row_count_listeners[m]
            for table_id, count in list(row_count.items()):
                if count != 0:
                    call(row_count_tree, [table_id], self.get_row_count(table_id))
            sorted_tables: set[str] = set()
            for table_id, ids in list(row_ids.items()):
                if (
                    self._call_ids_and_has(
                        ids, self._row_ids_listeners[m], self._has_row_listeners[m], [table_id]
                    )
                    and sorted_tree
                ):
                    call(sorted_tree, [table_id, ALL])
                    sorted_tables.add(table_id)
            if sorted_tree:
                for table_id, rows in list(changed_cells.items()):
                    if table_id in sorted_tables:
                        continue
                    sortable: dict[str, None] = {}
                    for cells in rows.values():
                        for cell_id, pair in list(cells.items()):
                            if strict_equal(pair[0], pair[1]):
                                del cells[cell_id]
                            else:
                                sortable[cell_id] = None
                    for cell_id in sortable:
                        call(sorted_tree, [table_id, cell_id])
            for table_id, rows_ids in list(cell_ids.items()):
                for row_id, ids in list(rows_ids.items()):
                    self._call_ids_and_has(
                        ids,
                        self._cell_ids_listeners[m],
                        self._has_cell_listeners[m],
                        [table_id, row_id],
                    )
        if has_other:
            self._call_cell_listeners(m, changed_cells, call)

    def _call_cell_listeners(
        self,
        m: int,
        changed_cells: dict[str, dict[str, dict[str, list[Any]]]],
        call: Callable[..., None],
    ) -> None:
        """Cell, row, table and tables listeners, in TinyBase's order."""
        cell_tree = self._cell_listeners[m]
        row_tree = self._row_listeners[m]
        table_tree = self._table_listeners[m]
        tables_tree = self._tables_listeners[m]
        get_cell_change = self._get_cell_change_fn
        tables_changed = False
        # Listeners cannot change these maps here: mutators get copies above, and the
        # Store refuses changes while non-mutators run. So no defensive copies.
        for table_id, rows in changed_cells.items():
            table_changed = False
            for row_id, cells in rows.items():
                row_changed = False
                for cell_id, (old_cell, new_cell) in cells.items():
                    if old_cell == new_cell and (old_cell.__class__ is bool) is (
                        new_cell.__class__ is bool
                    ):
                        continue
                    if cell_tree:
                        if new_cell.__class__ is str and new_cell[:1] == JSON_PREFIX:
                            new_cell = decode_if_json(new_cell)
                        if old_cell.__class__ is str and old_cell[:1] == JSON_PREFIX:
                            old_cell = decode_if_json(old_cell)
                        call(
                            cell_tree,
                            (table_id, row_id, cell_id),
                            new_cell,
                            old_cell,
                            get_cell_change,
                        )
                    tables_changed = table_changed = row_changed = True
                if row_changed and row_tree:
                    call(row_tree, (table_id, row_id), get_cell_change)
            if table_changed and table_tree:
                call(table_tree, (table_id,), get_cell_change)
        if tables_changed and tables_tree:
            call(tables_tree, None, get_cell_change)

    def _call_values_listeners(self, mutator: int) -> None:
        m = mutator
        has_values_tree = self._has_values_listeners[m]
        ids_tree = self._value_ids_listeners[m]
        has_tree = self._has_value_listeners[m]
        value_tree = self._value_listeners[m]
        values_tree = self._values_listeners[m]
        if not (has_values_tree or ids_tree or has_tree or value_tree or values_tree):
            return
        call = self._registry.call
        if mutator:
            value_ids = dict(self._changed_value_ids)
            changed_values = {v: list(p) for v, p in self._changed_values.items()}
        else:
            value_ids = self._changed_value_ids
            changed_values = self._changed_values
        if has_values_tree:
            has_values_now = bool(self._values)
            if has_values_now != self._had_values:
                call(has_values_tree, None, has_values_now)
        if ids_tree or has_tree:
            self._call_ids_and_has(value_ids, ids_tree, has_tree, [])
        if value_tree or values_tree:
            get_value_change = self._get_value_change_fn
            values_changed = False
            for value_id, (old_value, new_value) in list(changed_values.items()):
                if not strict_equal(old_value, new_value):
                    if value_tree:
                        call(
                            value_tree,
                            (value_id,),
                            _decode(new_value),
                            _decode(old_value),
                            get_value_change,
                        )
                    values_changed = True
            if values_changed and values_tree:
                call(values_tree, None, get_value_change)
