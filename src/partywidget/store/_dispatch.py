"""Calling the change listeners when a transaction finishes, in TinyBase's order.

Reads the transaction's net changes (recorded by the mutations in ``_core``) and calls
the listeners registered in the Store's trees: invalid cells, then the tabular
listeners (has-tables, Id and has-* listeners, row counts, sorted row Ids, then cell,
row, table and tables listeners), then invalid values and the values listeners.
Mutator listeners may change the Store while they run, so they iterate copies of the
records; non-mutator listeners run while the Store refuses changes and read them as is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from partywidget.store._cells import JSON_PREFIX, decode_if_json
from partywidget.store._core import decode_record
from partywidget.store._js import strict_equal
from partywidget.store._listeners import ALL, Tree

if TYPE_CHECKING:
    from partywidget.store._transactions import StoreTransactions

__all__ = ["call_change_listeners"]


def call_change_listeners(store: StoreTransactions, mutator: int) -> None:
    if store._invalid_cells and store._invalid_cell_listeners[mutator]:
        _call_invalid_cell_listeners(store, mutator)
    if store._changed_cells:
        _call_tabular_listeners(store, mutator)
    if store._invalid_values and store._invalid_value_listeners[mutator]:
        _call_invalid_value_listeners(store, mutator)
    if store._changed_values:
        _call_values_listeners(store, mutator)


def _call_invalid_cell_listeners(store: StoreTransactions, mutator: int) -> None:
    tree = store._invalid_cell_listeners[mutator]
    invalid_cells = store._invalid_cells
    if mutator:
        # Like TinyBase's mapClone3, copy the maps but share the lists of invalid
        # cells, so invalid input added by a mutator listener shows up in later calls.
        invalid_cells = {
            t: {r: dict(cells) for r, cells in rows.items()} for t, rows in invalid_cells.items()
        }
    for table_id, rows in list(invalid_cells.items()):
        for row_id, cells in list(rows.items()):
            for cell_id, invalids in list(cells.items()):
                # (Non-mutators cannot add invalid input; mutators iterate a copy.)
                store._registry.call(tree, [table_id, row_id, cell_id], invalids)


def _call_invalid_value_listeners(store: StoreTransactions, mutator: int) -> None:
    tree = store._invalid_value_listeners[mutator]
    invalid_values = store._invalid_values
    if mutator:
        invalid_values = dict(invalid_values)  # lists shared, as TinyBase's mapClone
    for value_id, invalids in list(invalid_values.items()):
        store._registry.call(tree, [value_id], invalids)


def _call_ids_and_has(
    store: StoreTransactions,
    changed_ids: dict[str, int],
    ids_tree: Tree,
    has_tree: Tree,
    ids: list[str],
) -> bool:
    if not changed_ids:
        return False
    call = store._registry.call
    if ids_tree:
        call(ids_tree, ids or None, lambda: dict(changed_ids))
    if has_tree:
        for changed_id, changed in list(changed_ids.items()):
            call(has_tree, [*ids, changed_id], changed == 1)
    return True


def _tabular_flags(store: StoreTransactions, m: int) -> tuple[bool, bool, bool]:
    """Which groups of tabular listeners exist: has-tables, Id-like, cell-like."""
    flags = store._registry.tabular_flags[m] = (
        bool(store._has_tables_listeners[m]),
        any(
            (
                store._cell_ids_listeners[m],
                store._has_cell_listeners[m],
                store._row_ids_listeners[m],
                store._has_row_listeners[m],
                store._table_cell_ids_listeners[m],
                store._has_table_cell_listeners[m],
                store._row_count_listeners[m],
                store._sorted_row_ids_listeners[m],
                store._table_ids_listeners[m],
                store._has_table_listeners[m],
            )
        ),
        bool(
            store._cell_listeners[m]
            or store._row_listeners[m]
            or store._table_listeners[m]
            or store._tables_listeners[m]
        ),
    )
    return flags


def _call_tabular_listeners(store: StoreTransactions, mutator: int) -> None:
    m = mutator
    flags = store._registry.tabular_flags[m]  # cached until the listeners change
    has_tables_listeners, has_id_listeners, has_other = flags or _tabular_flags(store, m)
    if not (has_tables_listeners or has_id_listeners or has_other):
        return
    if store._lazy_cells:
        store._materialize_changed_cells()
    call = store._registry.call
    if not (has_tables_listeners or has_id_listeners or mutator):
        # Only cell/row/table/tables listeners, non-mutator: the usual case.
        _call_cell_listeners(store, m, store._changed_cells, call)
        return
    records = _id_records(store, m) if has_id_listeners else None
    changed_cells = store._changed_cells
    if mutator:
        changed_cells = {
            t: {r: {c: list(p) for c, p in cells.items()} for r, cells in rows.items()}
            for t, rows in changed_cells.items()
        }
    if has_tables_listeners:
        has_tables_now = bool(store._tables)
        if has_tables_now != store._had_tables:
            call(store._has_tables_listeners[m], None, has_tables_now)
    if records is not None:
        _call_id_listeners(store, m, records, changed_cells, call)
    if has_other:
        _call_cell_listeners(store, m, changed_cells, call)


_IdRecords = tuple[
    dict[str, int],
    dict[str, dict[str, int]],
    dict[str, int],
    dict[str, dict[str, int]],
    dict[str, dict[str, dict[str, int]]],
]


def _id_records(store: StoreTransactions, m: int) -> _IdRecords:
    """The Id records (copies for mutators, taken before any listener runs)."""
    if not m:
        return (
            store._changed_table_ids,
            store._changed_table_cell_ids,
            store._changed_row_count,
            store._changed_row_ids,
            store._changed_cell_ids,
        )
    return (
        dict(store._changed_table_ids),
        {t: dict(ids) for t, ids in store._changed_table_cell_ids.items()},
        dict(store._changed_row_count),
        {t: dict(ids) for t, ids in store._changed_row_ids.items()},
        {
            t: {r: dict(ids) for r, ids in rows.items()}
            for t, rows in store._changed_cell_ids.items()
        },
    )


def _call_id_listeners(
    store: StoreTransactions,
    m: int,
    records: _IdRecords,
    changed_cells: dict[str, dict[str, dict[str, list[Any]]]],
    call: Callable[..., None],
) -> None:
    """Table/cell/row Id and has-* listeners, row counts and sorted row Ids."""
    table_ids, table_cell_ids, row_count, row_ids, cell_ids = records
    _call_ids_and_has(
        store, table_ids, store._table_ids_listeners[m], store._has_table_listeners[m], []
    )
    for table_id, ids in list(table_cell_ids.items()):
        _call_ids_and_has(
            store,
            ids,
            store._table_cell_ids_listeners[m],
            store._has_table_cell_listeners[m],
            [table_id],
        )
    row_count_tree = store._row_count_listeners[m]
    for table_id, count in list(row_count.items()):
        if count != 0:
            call(row_count_tree, [table_id], store.get_row_count(table_id))
    sorted_tree = store._sorted_row_ids_listeners[m]
    sorted_tables: set[str] = set()
    for table_id, ids in list(row_ids.items()):
        if (
            _call_ids_and_has(
                store, ids, store._row_ids_listeners[m], store._has_row_listeners[m], [table_id]
            )
            and sorted_tree
        ):
            call(sorted_tree, [table_id, ALL])
            sorted_tables.add(table_id)
    if sorted_tree:
        _call_sorted_by_cell_listeners(sorted_tree, changed_cells, sorted_tables, call)
    for table_id, rows_ids in list(cell_ids.items()):
        for row_id, ids in list(rows_ids.items()):
            _call_ids_and_has(
                store,
                ids,
                store._cell_ids_listeners[m],
                store._has_cell_listeners[m],
                [table_id, row_id],
            )


def _call_sorted_by_cell_listeners(
    sorted_tree: Tree,
    changed_cells: dict[str, dict[str, dict[str, list[Any]]]],
    done_tables: set[str],
    call: Callable[..., None],
) -> None:
    """Sorted-row-Ids listeners of tables whose rows stayed but whose cells changed.

    Drops the records of cells that changed back (as TinyBase does here), so the cell
    listeners called next skip them too.
    """
    for table_id, rows in list(changed_cells.items()):
        if table_id in done_tables:
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


def _call_cell_listeners(
    store: StoreTransactions,
    m: int,
    changed_cells: dict[str, dict[str, dict[str, list[Any]]]],
    call: Callable[..., None],
) -> None:
    """Cell, row, table and tables listeners, in TinyBase's order."""
    cell_tree = store._cell_listeners[m]
    row_tree = store._row_listeners[m]
    table_tree = store._table_listeners[m]
    tables_tree = store._tables_listeners[m]
    get_cell_change = store._get_cell_change_fn
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


def _call_values_listeners(store: StoreTransactions, mutator: int) -> None:
    m = mutator
    has_values_tree = store._has_values_listeners[m]
    ids_tree = store._value_ids_listeners[m]
    has_tree = store._has_value_listeners[m]
    value_tree = store._value_listeners[m]
    values_tree = store._values_listeners[m]
    if not (has_values_tree or ids_tree or has_tree or value_tree or values_tree):
        return
    call = store._registry.call
    if mutator:
        value_ids = dict(store._changed_value_ids)
        changed_values = {v: list(p) for v, p in store._changed_values.items()}
    else:
        value_ids = store._changed_value_ids
        changed_values = store._changed_values
    if has_values_tree:
        has_values_now = bool(store._values)
        if has_values_now != store._had_values:
            call(has_values_tree, None, has_values_now)
    if ids_tree or has_tree:
        _call_ids_and_has(store, value_ids, ids_tree, has_tree, [])
    if value_tree or values_tree:
        get_value_change = store._get_value_change_fn
        values_changed = False
        for value_id, (old_value, new_value) in list(changed_values.items()):
            if not strict_equal(old_value, new_value):
                if value_tree:
                    call(
                        value_tree,
                        (value_id,),
                        decode_record(new_value),
                        decode_record(old_value),
                        get_value_change,
                    )
                values_changed = True
        if values_changed and values_tree:
            call(values_tree, None, get_value_change)
