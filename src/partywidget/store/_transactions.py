"""Transactions: start, finish, rollback, and reading the running one's Changes.

Every setter runs inside a transaction (its own, or the caller's). Finishing the outermost
one calls, in TinyBase's order: mutator listeners (whose changes join the transaction),
``do_rollback``, will-finish listeners, non-mutator listeners (during which the Store
refuses changes), then did-finish listeners; and finally forgets the transaction's net
changes. Which change listeners to call, and with what, is ``_dispatch``'s business.
``get_transaction_changes()``/``get_transaction_log()`` read the net changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from partywidget.model import DELETED, Changes
from partywidget.store._cells import JSON_PREFIX, decode_if_json
from partywidget.store._core import StoreCore, decode_record
from partywidget.store._dispatch import call_change_listeners
from partywidget.store._js import js_truthy, strict_equal

__all__ = ["StoreTransactions", "TransactionContext", "TransactionLog"]

_T = TypeVar("_T")
_S = TypeVar("_S", bound="StoreTransactions")

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


class TransactionContext(Generic[_S]):
    """``with store.transaction():`` -- an exception in the block rolls it back.

    That is what TinyBase's ``transaction(actions)`` does when ``actions`` throws: it
    requests a rollback, finishes the transaction (so no listeners see the changes and
    the finish listeners are not called), and re-throws.
    """

    def __init__(self, store: _S, do_rollback: Callable[[_S], Any] | None) -> None:
        self._store = store
        self._do_rollback = do_rollback
        self._active = False

    def __enter__(self) -> _S:
        store = self._store
        if store._transactions != -1:
            store.start_transaction()
            self._active = True
        return store

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._active:
            return
        self._active = False
        store = self._store
        if exc is None:
            try:
                store.finish_transaction(self._do_rollback)
            except BaseException:
                store._abort_transaction()
                raise
        else:
            store._abort_transaction()


class StoreTransactions(StoreCore):
    """Transaction lifecycle, rollback, and the Changes of the running transaction."""

    def __init__(self) -> None:
        super().__init__()
        # Bound once: handed to every cell/value listener call.
        self._get_cell_change_fn = self._get_cell_change
        self._get_value_change_fn = self._get_value_change

    # -- change inspection -----------------------------------------------------------------

    def _get_cell_change(self, table_id: str, row_id: str, cell_id: str) -> tuple[bool, Any, Any]:
        """TinyBase's ``getCellChange``: ``(changed, old_cell, new_cell)``.

        ``DELETED`` stands for an absent cell; unchanged cells give their current value.
        """
        if self._lazy_cells:
            self._materialize_changed_cells()
        pair = self._changed_cells.get(table_id, {}).get(row_id, {}).get(cell_id)
        if pair is not None:
            return (True, decode_record(pair[0]), decode_record(pair[1]))
        cell = self.get_cell(table_id, row_id, cell_id)
        cell = cell if self.has_cell(table_id, row_id, cell_id) else DELETED
        return (False, cell, cell)

    def _get_value_change(self, value_id: str) -> tuple[bool, Any, Any]:
        pair = self._changed_values.get(value_id)
        if pair is not None:
            return (True, decode_record(pair[0]), decode_record(pair[1]))
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
                    cell_id: decode_record(pair[1])
                    for cell_id, pair in cells.items()
                    if not strict_equal(pair[0], pair[1])
                }
                if row:
                    table[row_id] = row
            if table:
                tables[table_id] = table
        values = {
            value_id: decode_record(pair[1])
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
                        c: [decode_record(p[0]), decode_record(p[1])]
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
                v: [decode_record(p[0]), decode_record(p[1])]
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

    def transaction(
        self,
        actions: Callable[[], _T] | None = None,
        do_rollback: Callable[[Self], Any] | None = None,
    ) -> Any:
        """Run ``actions`` in one transaction and return their result.

        Without ``actions``, return a context manager: ``with store.transaction(): ...``.
        During non-mutator listeners (when the Store refuses changes) ``actions`` is not
        run and ``None`` is returned, as in TinyBase.
        """
        if actions is None:
            return TransactionContext(self, do_rollback)
        if self._transactions == -1:
            return None
        self.start_transaction()
        try:
            result = actions()
            self.finish_transaction(do_rollback)
        except BaseException:
            self._abort_transaction()
            raise
        return result

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

    def _fluent(self, action: Callable[..., Any], *args: Any) -> Self:
        """Run ``action(*args)`` in a transaction (its own or the caller's); the Store.

        While non-mutator listeners run (``_transactions == -1``) nothing happens.
        """
        if self._transactions == -1:
            return self
        self.start_transaction()
        try:
            action(*args)
            self.finish_transaction()
        except BaseException:
            self._abort_transaction()
            raise
        return self

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
                    if self._registry.data_counts[1]:
                        was_mutating = self._mutating
                        self._mutating = True
                        try:
                            call_change_listeners(self, 1)
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
                    if self._registry.data_counts[0]:
                        call_change_listeners(self, 0)
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
