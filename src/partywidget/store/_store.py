"""The public Store: TinyBase 10's ``createStore()`` API in snake_case.

A facade over the layers below: each setter checks its Python input (``_input``), opens a
transaction (``_fluent``), validates and applies (``_core``); each ``add_*_listener``
method registers one kind of ``KINDS`` (``_listeners``). Only ``set_cell`` carries its own
fast path, since every edit goes through it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from partywidget.model import DELETED, Changes
from partywidget.store._cells import MAX_SAFE_INT as _MAX_SAFE_INT
from partywidget.store._cells import json_parse, py_cell, py_json, where
from partywidget.store._input import (
    check_id,
    listener_id,
    py_changes,
    py_content,
    py_row,
    py_table,
    py_tables,
    py_values,
)
from partywidget.store._js import js_keys
from partywidget.store._listeners import KINDS, NO_ID, Listener, listener_stats
from partywidget.store._schema import validate_tables_schema, validate_values_schema
from partywidget.store._state import Sorter, sorted_row_ids_args
from partywidget.store._transactions import StoreTransactions

__all__ = ["Store", "create_store"]

_Id = str | None


class Store(StoreTransactions):
    """A TinyBase 10 Store: tabular data and keyed values, schemas, listeners, transactions.

    Semantics are those of TinyBase 10.0.1's ``createStore()``: method names are the
    snake_case of TinyBase's; every setter returns the Store (``add_row`` returns the new
    row Id); listeners get TinyBase's arguments with the Store first.

    Input checking, in two tiers:

    * Python values JSON cannot hold -- ``set``, ``bytes``, ``datetime``, ``Decimal``,
      ``complex``, arbitrary objects, NaN and infinities, integers beyond the double range,
      dicts with non-``str`` keys, also nested inside JSON cells -- raise ``TypeError`` or
      ``ValueError`` naming the table/row/cell or value, before anything changes.
    * JSON-representable input TinyBase refuses (schema violations, a row that is not a
      dict, empty tables, the reserved strings ``"\\uFFFC"``/``"\\uFFFD..."``) is ignored as
      TinyBase ignores it, and reported to the invalid-cell/invalid-value listeners.

    Comparisons follow JavaScript: ``True`` differs from ``1``, ``4`` equals ``4.0``, and
    setting a cell to an equal value is no change. Dict and list cells are kept as JSON
    text (as TinyBase does), so they are copied on the way in and every getter returns a
    fresh object: callers cannot change the Store behind its back.

    ``DELETED`` stands for JavaScript's ``undefined`` wherever TinyBase may report an
    absent cell or value: in Changes, in cell/value listeners' new/old arguments, in
    ``get_cell_change`` results, invalid-cell lists and the transaction log. Getters
    return ``None`` for absent cells, as the Python spelling of ``undefined``.

    An exception inside a transaction (``transaction(actions)`` or ``with
    store.transaction():``) rolls the transaction back and propagates, as in TinyBase.

    Listeners added with ``call_listener`` get ``None`` for arguments that only a real
    change provides (TinyBase passes nothing).

    Quirks of TinyBase 10.0.1 that are mirrored on purpose, for identical behaviour
    with JavaScript peers: rolling back a transaction cannot restore a JSON cell or value
    (its old encoded form is refused as a reserved string and reported invalid), and a
    JSON schema default is reported to invalid-cell listeners when it is applied. The
    transaction log (``get_transaction_log``) holds decoded cells, where TinyBase's holds
    the encoded JSON text.

    Not thread-safe, by design: like TinyBase's, the Store must be used from one thread
    (the widget and persister marshal calls onto their loop thread).
    """

    def __repr__(self) -> str:
        return f"<Store tables={len(self._tables)} values={len(self._values)}>"

    # -- transactions ----------------------------------------------------------------------

    # -- content setters -------------------------------------------------------------------

    def set_content(self, content: Any) -> Store:
        """Replace tables and values; ``content`` is ``(tables, values)`` or a callable."""
        if not callable(content):
            content = py_content(content)
        return self._fluent(self._set_content_impl, content)

    def _set_content_impl(self, content: Any) -> None:
        if callable(content):
            content = py_content(content())
        if not isinstance(content, list):
            return
        tables = content[0] if len(content) > 0 else None
        values = content[1] if len(content) > 1 else None
        if isinstance(tables, dict) and not tables:
            self.del_tables()
        else:
            self._fluent(self._set_tables_impl, tables)
        if isinstance(values, dict) and not values:
            self.del_values()
        else:
            self._fluent(self._set_values_impl, values)

    def set_tables(self, tables: Any) -> Store:
        return self._fluent(self._set_tables_impl, py_tables(tables))

    def _set_tables_impl(self, tables: Any) -> None:
        if self._validate_tables(tables):
            self._set_valid_tables(tables)

    def set_table(self, table_id: str, table: Any) -> Store:
        table_id = check_id(table_id, "table_id")
        return self._fluent(self._set_table_impl, table_id, py_table(table_id, table))

    def _set_table_impl(self, table_id: str, table: Any) -> None:
        if self._validate_table(table, table_id):
            self._set_valid_table(table_id, table)

    def set_row(self, table_id: str, row_id: str, row: Any) -> Store:
        table_id = check_id(table_id, "table_id")
        row_id = check_id(row_id, "row_id")
        return self._fluent(self._set_row_impl, table_id, row_id, py_row(table_id, row_id, row))

    def _set_row_impl(self, table_id: str, row_id: str, row: Any) -> None:
        if self._validate_row(table_id, row_id, row):
            self._set_valid_row(table_id, self._get_or_create_table(table_id), row_id, row)

    def add_row(self, table_id: str, row: Any, reuse_row_ids: bool = True) -> str | None:
        """Add a row under a new Id (the next free integer-like Id; released Ids of deleted
        rows first unless ``reuse_row_ids=False``) and return it, or ``None`` if invalid."""
        table_id = check_id(table_id, "table_id")
        checked_row = py_row(table_id, None, row)

        def add() -> str | None:
            if not self._validate_row(table_id, None, checked_row):
                return None
            table_map = self._get_or_create_table(table_id)
            pool = self._row_id_pools[table_id]
            row_id = pool.get(reuse_row_ids)
            while row_id in table_map:
                row_id = pool.get(reuse_row_ids)
            self._set_valid_row(table_id, table_map, row_id, checked_row)
            return row_id

        result: str | None = self.transaction(add)
        return result

    def set_partial_row(self, table_id: str, row_id: str, partial_row: Any) -> Store:
        table_id = check_id(table_id, "table_id")
        row_id = check_id(row_id, "row_id")
        return self._fluent(
            self._set_partial_row_impl, table_id, row_id, py_row(table_id, row_id, partial_row)
        )

    def _set_partial_row_impl(self, table_id: str, row_id: str, partial_row: Any) -> None:
        if self._validate_row(table_id, row_id, partial_row, True):
            table_map = self._get_or_create_table(table_id)
            for cell_id in js_keys(partial_row):
                self._set_cell_into_new_row(
                    table_id, table_map, row_id, cell_id, partial_row[cell_id]
                )

    def set_cell(self, table_id: str, row_id: str, cell_id: str, cell: Any) -> Store:
        """Set one cell; ``cell`` may be a mapper ``f(old_cell) -> new_cell``.

        The Store's hot path (every edit, local or remote, comes through here), so it is
        written for speed: type checks by class identity, and the common case -- a new
        scalar for an existing cell, no schema -- inlined without further calls; hence
        a little longer than a function should be.
        """
        if table_id.__class__ is not str:
            table_id = check_id(table_id, "table_id")
        if row_id.__class__ is not str:
            row_id = check_id(row_id, "row_id")
        if cell_id.__class__ is not str:
            cell_id = check_id(cell_id, "cell_id")
        cls = cell.__class__
        mapper = None
        # scalar: a number, bool or None, which needs no encoding, nor (without a
        # schema) validation. Most common types first: this runs for every cell set.
        if cls is int:
            scalar = -_MAX_SAFE_INT <= cell <= _MAX_SAFE_INT
        elif cls is float:
            scalar = cell - cell == 0.0  # not NaN or infinite
        else:
            scalar = cls is bool or cell is None
        if not scalar and cls is not str:
            if callable(cell):
                mapper = cell
            else:  # checked (may raise) and normalized, e.g. a str subclass becomes str
                cell = py_cell(cell, lambda: where("cell", table_id, row_id, cell_id))
                cls = cell.__class__
                scalar = cls is int or cls is float or cls is bool or cell is None
        transactions = self._transactions
        if transactions == -1:
            return self
        if transactions == 0:
            if self._start_transaction_listeners:
                self.start_transaction()
            else:
                self._transactions = 1
        done = False
        if scalar and not self._has_tables_schema and not self._lazy_cells:
            # Hottest path: an existing scalar cell of an existing row gets a scalar (no
            # validation needed without a schema; nothing here can raise). It inlines
            # _set_valid_cell, the one copy of it, guarded by benchmarks/store_ops.py.
            # Anything else takes _set_cell_now.
            table_map = self._tables.get(table_id)
            row_map = None if table_map is None else table_map.get(row_id)
            old_cell = DELETED if row_map is None else row_map.get(cell_id, DELETED)
            if old_cell is not DELETED:
                done = True
                if old_cell != cell or (old_cell.__class__ is bool) is not (cls is bool):
                    rows = self._changed_cells.get(table_id)
                    if rows is None:
                        rows = self._changed_cells[table_id] = {}
                    cells = rows.get(row_id)
                    if cells is None:
                        cells = rows[row_id] = {}
                    pair = cells.get(cell_id)
                    if pair is None:
                        cells[cell_id] = [old_cell, cell]
                    else:
                        pair[1] = cell
                    row_map[cell_id] = cell  # type: ignore[index]
        if transactions > 0:
            # Nested in a transaction (the common bulk case): no start/finish needed.
            if not done:
                try:
                    self._set_cell_now(table_id, row_id, cell_id, cell, mapper)
                except BaseException:
                    self._rollback_requested = True
                    raise
            return self
        try:
            if not done:
                self._set_cell_now(table_id, row_id, cell_id, cell, mapper)
            if self._transactions == 1:
                # finish_transaction() of the outermost transaction, one call less.
                try:
                    self._finish(None)
                finally:
                    self._reset_transaction()
            else:
                self.finish_transaction()
        except BaseException:
            self._abort_transaction()
            raise
        return self

    def set_values(self, values: Any) -> Store:
        return self._fluent(self._set_values_impl, py_values(values))

    def _set_values_impl(self, values: Any) -> None:
        if self._validate_values(values):
            self._set_valid_values(values)

    def set_partial_values(self, partial_values: Any) -> Store:
        return self._fluent(self._set_partial_values_impl, py_values(partial_values))

    def _set_partial_values_impl(self, partial_values: Any) -> None:
        if self._validate_values(partial_values, True):
            for value_id in js_keys(partial_values):
                self._set_valid_value(value_id, partial_values[value_id])

    def set_value(self, value_id: str, value: Any) -> Store:
        """Set one value; ``value`` may be a mapper ``f(old_value) -> new_value``."""
        value_id = check_id(value_id, "value_id")
        mapper = None
        if callable(value):
            mapper = value
        else:
            value = py_cell(value, lambda: where("value", value_id))
        if self._transactions == -1:
            return self
        self.start_transaction()
        try:
            if mapper is not None:
                value = mapper(self.get_value(value_id))
                if value is not DELETED:  # DELETED: an invalid value, as in TinyBase
                    value = py_cell(value, lambda: where("value", value_id))
            valid_value = self._validated_value(value_id, value)
            if valid_value is not DELETED:
                self._set_valid_value(value_id, valid_value)
            self.finish_transaction()
        except BaseException:
            self._abort_transaction()
            raise
        return self

    def apply_changes(self, changes: Changes | list[Any]) -> Store:
        """Apply Changes ``(tables, values, 1)``; ``DELETED`` deletes (cells forcibly)."""
        tables, values = py_changes(changes)
        return self._fluent(self._apply_changes, tables, values)

    # -- JSON setters (trusted encoded data; parse errors are ignored, as in TinyBase) ------

    def _while_accepting_encoded(self, action: Callable[[], None]) -> None:
        was_accepting = self._accepting_encoded
        self._accepting_encoded = True
        try:
            action()
        finally:
            self._accepting_encoded = was_accepting

    def _set_or_del_tables(self, tables: Any) -> None:
        if isinstance(tables, dict) and not tables:
            self.del_tables()
        else:
            self._fluent(self._set_tables_impl, tables)

    def _set_or_del_values(self, values: Any) -> None:
        if isinstance(values, dict) and not values:
            self.del_values()
        else:
            self._fluent(self._set_values_impl, values)

    def set_tables_json(self, tables_json: str) -> Store:
        with contextlib.suppress(Exception):
            self._while_accepting_encoded(lambda: self._set_or_del_tables(json_parse(tables_json)))
        return self

    def set_values_json(self, values_json: str) -> Store:
        with contextlib.suppress(Exception):
            self._while_accepting_encoded(lambda: self._set_or_del_values(json_parse(values_json)))
        return self

    def set_json(self, tables_and_values_json: str) -> Store:
        """Set ``[tables, values]`` JSON; JSON of tables alone is accepted too."""

        def action() -> None:
            parsed = json_parse(tables_and_values_json)
            if isinstance(parsed, str):
                parsed = list(parsed)
            if not isinstance(parsed, list):
                raise TypeError("not iterable")
            self._set_or_del_tables(parsed[0] if len(parsed) > 0 else None)
            self._set_or_del_values(parsed[1] if len(parsed) > 1 else None)

        def set_json_impl() -> None:
            try:
                self._while_accepting_encoded(action)
            except Exception:
                self.set_tables_json(tables_and_values_json)

        return self._fluent(set_json_impl)

    # -- schemas ---------------------------------------------------------------------------

    def set_tables_schema(self, tables_schema: Any) -> Store:
        """Set the tables schema; an invalid one is ignored. Existing data is re-validated."""
        return self._fluent(
            self._set_tables_schema_impl, py_json(tables_schema, lambda: "tables schema")
        )

    def _set_tables_schema_impl(self, tables_schema: Any) -> None:
        if not validate_tables_schema(tables_schema):
            return
        self._save_tables_schema()
        self._has_tables_schema = True
        self._set_valid_tables_schema(tables_schema)
        if self._tables:
            tables = self.get_tables()
            self.del_tables()
            self._fluent(self._set_tables_impl, tables)

    def set_values_schema(self, values_schema: Any) -> Store:
        """Set the values schema; an invalid one is ignored. Existing data is re-validated."""
        return self._fluent(
            self._set_values_schema_impl, py_json(values_schema, lambda: "values schema")
        )

    def _set_values_schema_impl(self, values_schema: Any) -> None:
        if not validate_values_schema(values_schema):
            return
        self._save_values_schema()
        values = self.get_values()
        self.del_values_schema()
        self.del_values()
        self._has_values_schema = True
        self._set_valid_values_schema(values_schema)
        self._fluent(self._set_values_impl, values)

    def set_schema(self, tables_schema: Any, values_schema: Any = None) -> Store:
        tables_schema = py_json(tables_schema, lambda: "tables schema")
        values_schema = py_json(values_schema, lambda: "values schema")

        def both() -> None:
            self._fluent(self._set_tables_schema_impl, tables_schema)
            self._fluent(self._set_values_schema_impl, values_schema)

        return self._fluent(both)

    def del_tables_schema(self) -> Store:
        def delete() -> None:
            self._save_tables_schema()
            self._set_valid_tables_schema({})
            self._has_tables_schema = False

        return self._fluent(delete)

    def del_values_schema(self) -> Store:
        def delete() -> None:
            self._save_values_schema()
            self._set_valid_values_schema({})
            self._has_values_schema = False

        return self._fluent(delete)

    def del_schema(self) -> Store:
        def delete() -> None:
            self.del_tables_schema()
            self.del_values_schema()

        return self._fluent(delete)

    # -- deleters --------------------------------------------------------------------------

    def del_tables(self) -> Store:
        return self._fluent(self._set_valid_tables, {})

    def del_table(self, table_id: str) -> Store:
        table_id = check_id(table_id, "table_id")

        def delete() -> None:
            if table_id in self._tables:
                self._del_valid_table(table_id)

        return self._fluent(delete)

    def del_row(self, table_id: str, row_id: str) -> Store:
        table_id = check_id(table_id, "table_id")
        row_id = check_id(row_id, "row_id")

        def delete() -> None:
            table_map = self._tables.get(table_id)
            if table_map is not None and row_id in table_map:
                self._del_valid_row(table_id, table_map, row_id)

        return self._fluent(delete)

    def del_cell(self, table_id: str, row_id: str, cell_id: str, force_del: bool = False) -> Store:
        """Delete a cell. A cell with a schema default is reset to it, unless
        ``force_del`` -- which then deletes the whole row, as TinyBase does."""
        table_id = check_id(table_id, "table_id")
        row_id = check_id(row_id, "row_id")
        cell_id = check_id(cell_id, "cell_id")

        def delete() -> None:
            table_map = self._tables.get(table_id)
            if table_map is None:
                return
            row_map = table_map.get(row_id)
            if row_map is not None and cell_id in row_map:
                self._del_valid_cell(table_id, table_map, row_id, row_map, cell_id, force_del)

        return self._fluent(delete)

    def del_values(self) -> Store:
        return self._fluent(self._set_valid_values, {})

    def del_value(self, value_id: str) -> Store:
        value_id = check_id(value_id, "value_id")

        def delete() -> None:
            if value_id in self._values:
                self._del_valid_value(value_id)

        return self._fluent(delete)

    # -- listeners -------------------------------------------------------------------------

    def _add_listener(
        self, kind: str, ids: tuple[_Id, ...], listener: Listener, mutator: bool
    ) -> str:
        """Register a data listener of ``kind`` (see ``KINDS``) for ``ids``; its Id."""
        names = KINDS[kind].ids
        path = tuple(listener_id(id_, name) for id_, name in zip(ids, names, strict=True))
        return self._register(kind, path, listener, mutator)

    def _register(self, kind: str, path: tuple[Any, ...], listener: Listener, mutator: Any) -> str:
        spec = KINDS[kind]
        return self._registry.add_data(
            listener,
            getattr(self, f"_{kind}_listeners"),
            mutator,
            path or None,
            tuple(getattr(self, getter) for getter in spec.getters),
            None if spec.extra is None else partial(spec.extra, self),
            spec.extra_count,
        )

    def add_has_tables_listener(self, listener: Listener, mutator: bool = False) -> str:
        """``listener(store, has_tables)`` when the Store gains its first / loses its last table."""
        return self._add_listener("has_tables", (), listener, mutator)

    def add_tables_listener(self, listener: Listener, mutator: bool = False) -> str:
        """``listener(store, get_cell_change)`` after any cell changes."""
        return self._add_listener("tables", (), listener, mutator)

    def add_table_ids_listener(self, listener: Listener, mutator: bool = False) -> str:
        """``listener(store, get_id_changes)`` when tables are added or removed."""
        return self._add_listener("table_ids", (), listener, mutator)

    def add_has_table_listener(
        self, table_id: _Id, listener: Listener, mutator: bool = False
    ) -> str:
        """``listener(store, table_id, has_table)``; ``table_id=None`` means any table."""
        return self._add_listener("has_table", (table_id,), listener, mutator)

    def add_table_listener(self, table_id: _Id, listener: Listener, mutator: bool = False) -> str:
        """``listener(store, table_id, get_cell_change)``."""
        return self._add_listener("table", (table_id,), listener, mutator)

    def add_table_cell_ids_listener(
        self, table_id: _Id, listener: Listener, mutator: bool = False
    ) -> str:
        """``listener(store, table_id, get_id_changes)``."""
        return self._add_listener("table_cell_ids", (table_id,), listener, mutator)

    def add_has_table_cell_listener(
        self, table_id: _Id, cell_id: _Id, listener: Listener, mutator: bool = False
    ) -> str:
        """``listener(store, table_id, cell_id, has_table_cell)``."""
        return self._add_listener("has_table_cell", (table_id, cell_id), listener, mutator)

    def add_row_count_listener(
        self, table_id: _Id, listener: Listener, mutator: bool = False
    ) -> str:
        """``listener(store, table_id, count)``."""
        return self._add_listener("row_count", (table_id,), listener, mutator)

    def add_row_ids_listener(self, table_id: _Id, listener: Listener, mutator: bool = False) -> str:
        """``listener(store, table_id, get_id_changes)``."""
        return self._add_listener("row_ids", (table_id,), listener, mutator)

    def add_sorted_row_ids_listener(
        self,
        table_id: str | Mapping[str, Any],
        cell_id: Any = None,
        descending: Any = False,
        offset: int = 0,
        limit: int | None = None,
        listener: Listener | None = None,
        mutator: bool = False,
        *,
        sorter: Sorter | None = None,
    ) -> str:
        """``listener(store, table_id, cell_id, descending, offset, limit, sorted_row_ids)``
        whenever that sorted slice of row Ids changes.

        Also accepts TinyBase's object form: ``(sorted_row_ids_args, listener, mutator)``.
        """
        if isinstance(table_id, Mapping):
            if listener is None:  # (args, listener, mutator)
                listener, mutator = cell_id, bool(descending)
            table, cell, desc, start, limit, sorter = sorted_row_ids_args(table_id)
            return self.add_sorted_row_ids_listener(
                table, cell, desc, start, limit, listener, mutator, sorter=sorter
            )
        if listener is None:
            raise TypeError("add_sorted_row_ids_listener needs a listener")
        the_table_id = check_id(table_id, "table_id")
        the_cell_id = listener_id(cell_id, "cell_id")
        user_listener = listener
        sorted_ids = self.get_sorted_row_ids(
            the_table_id, the_cell_id, descending, offset, limit, sorter
        )

        def on_change(*_: Any) -> None:
            nonlocal sorted_ids
            new_ids = self.get_sorted_row_ids(
                the_table_id, the_cell_id, descending, offset, limit, sorter
            )
            if new_ids != sorted_ids:
                sorted_ids = new_ids
                user_listener(
                    self, the_table_id, the_cell_id, descending, offset, limit, list(new_ids)
                )

        path = (the_table_id, NO_ID if the_cell_id is None else the_cell_id)
        return self._register("sorted_row_ids", path, on_change, mutator)

    def add_has_row_listener(
        self, table_id: _Id, row_id: _Id, listener: Listener, mutator: bool = False
    ) -> str:
        """``listener(store, table_id, row_id, has_row)``."""
        return self._add_listener("has_row", (table_id, row_id), listener, mutator)

    def add_row_listener(
        self, table_id: _Id, row_id: _Id, listener: Listener, mutator: bool = False
    ) -> str:
        """``listener(store, table_id, row_id, get_cell_change)``."""
        return self._add_listener("row", (table_id, row_id), listener, mutator)

    def add_cell_ids_listener(
        self, table_id: _Id, row_id: _Id, listener: Listener, mutator: bool = False
    ) -> str:
        """``listener(store, table_id, row_id, get_id_changes)``."""
        return self._add_listener("cell_ids", (table_id, row_id), listener, mutator)

    def add_has_cell_listener(
        self, table_id: _Id, row_id: _Id, cell_id: _Id, listener: Listener, mutator: bool = False
    ) -> str:
        """``listener(store, table_id, row_id, cell_id, has_cell)``."""
        return self._add_listener("has_cell", (table_id, row_id, cell_id), listener, mutator)

    def add_cell_listener(
        self, table_id: _Id, row_id: _Id, cell_id: _Id, listener: Listener, mutator: bool = False
    ) -> str:
        """``listener(store, table_id, row_id, cell_id, new_cell, old_cell, get_cell_change)``.

        ``new_cell``/``old_cell`` are ``DELETED`` when the cell was deleted/added.
        """
        return self._add_listener("cell", (table_id, row_id, cell_id), listener, mutator)

    def add_invalid_cell_listener(
        self, table_id: _Id, row_id: _Id, cell_id: _Id, listener: Listener, mutator: bool = False
    ) -> str:
        """``listener(store, table_id, row_id, cell_id, invalid_cells)`` for refused input.

        ``invalid_cells`` lists what was refused (``DELETED`` for a missing cell the
        schema wanted); Ids are ``None`` where TinyBase has none (e.g. a non-dict row).
        """
        return self._add_listener("invalid_cell", (table_id, row_id, cell_id), listener, mutator)

    def add_has_values_listener(self, listener: Listener, mutator: bool = False) -> str:
        """``listener(store, has_values)``."""
        return self._add_listener("has_values", (), listener, mutator)

    def add_values_listener(self, listener: Listener, mutator: bool = False) -> str:
        """``listener(store, get_value_change)``."""
        return self._add_listener("values", (), listener, mutator)

    def add_value_ids_listener(self, listener: Listener, mutator: bool = False) -> str:
        """``listener(store, get_id_changes)``."""
        return self._add_listener("value_ids", (), listener, mutator)

    def add_has_value_listener(
        self, value_id: _Id, listener: Listener, mutator: bool = False
    ) -> str:
        """``listener(store, value_id, has_value)``."""
        return self._add_listener("has_value", (value_id,), listener, mutator)

    def add_value_listener(self, value_id: _Id, listener: Listener, mutator: bool = False) -> str:
        """``listener(store, value_id, new_value, old_value, get_value_change)``."""
        return self._add_listener("value", (value_id,), listener, mutator)

    def add_invalid_value_listener(
        self, value_id: _Id, listener: Listener, mutator: bool = False
    ) -> str:
        """``listener(store, value_id, invalid_values)``."""
        return self._add_listener("invalid_value", (value_id,), listener, mutator)

    def add_start_transaction_listener(self, listener: Listener) -> str:
        """``listener(store)`` when the outermost transaction starts."""
        return self._registry.add(listener, self._start_transaction_listeners)

    def add_will_finish_transaction_listener(self, listener: Listener) -> str:
        """``listener(store)`` after mutator listeners, before non-mutator listeners."""
        return self._registry.add(listener, self._finish_transaction_listeners[0])

    def add_did_finish_transaction_listener(self, listener: Listener) -> str:
        """``listener(store)`` after all other listeners (``get_transaction_changes`` works)."""
        return self._registry.add(listener, self._finish_transaction_listeners[1])

    def call_listener(self, listener_id: str) -> Store:
        """Call a listener as if its things changed (wildcards expand to current Ids)."""
        self._registry.call_one(listener_id)
        return self

    def del_listener(self, listener_id: str) -> Store:
        self._registry.delete(listener_id)
        return self

    def get_listener_stats(self) -> dict[str, int]:
        """How many listeners of each kind are registered (TinyBase's counting)."""
        return listener_stats(self)


def create_store() -> Store:
    """A new, empty Store (TinyBase's ``createStore()``)."""
    return Store()
