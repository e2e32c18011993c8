"""Validation against schemas, and the mutations that record net changes.

This layer mirrors TinyBase's internal ``validate*``, ``setValid*``, ``delValid*`` and
``*Changed`` functions: setters above it validate (copied) input here, which may drop
invalid cells and fill in schema defaults, then apply it with the ``_set_valid_*``
methods. Those record what changed, for the transaction's listeners and Changes, through
``_set_valid_cell``/``_record_value_change`` and the ``*_changed`` Id counters:
first old value, latest new value, and adds and removes that cancel out.
"""

from __future__ import annotations

from collections import Counter
from itertools import chain
from typing import Any

from partywidget.model import DELETED
from partywidget.store._cells import (
    JSON_PREFIX,
    UNDEFINED_MARKER,
    PlainTable,
    cell_type,
    decode_if_json,
    encode_if_json,
    is_encoded_json,
    is_reserved_string,
    json_parse,
    py_cell,
    where,
)
from partywidget.store._js import is_array_index, js_keys, js_truthy, strict_equal
from partywidget.store._schema import ALLOW_NULL, DEFAULT, ENUM, TYPE, enum_includes, type_includes
from partywidget.store._state import StoreState, _RowIdPool

__all__ = ["StoreCore", "decode_record"]

_NO_TYPES = object()


def decode_record(raw: Any) -> Any:
    """A cell or value of a change record as listeners see it (JSON decoded)."""
    return DELETED if raw is DELETED else decode_if_json(raw)


def _ids_changed(changed_ids: dict[str, int], id_: str, added_or_removed: int) -> None:
    """Net Id changes: an add then a remove (or vice versa) cancel out."""
    if changed_ids.get(id_) == -added_or_removed:
        del changed_ids[id_]
    else:
        changed_ids[id_] = added_or_removed


def _js_has_own(obj: Any, key: str) -> bool:
    """``Object.hasOwn(obj, key)`` for a non-dict JSON value (not None).

    Strings and arrays own their in-range index keys (string length in UTF-16 units), so
    TinyBase finds "cell" ``"0"`` in a row given as ``"x"`` or ``[1]``; numbers and booleans
    own nothing.
    """
    if isinstance(obj, str):
        return is_array_index(key) and int(key) < len(obj.encode("utf-16-le")) // 2
    if isinstance(obj, list):
        return is_array_index(key) and int(key) < len(obj)
    return False


class StoreCore(StoreState):
    """Validation and change-recording mutations (no transactions, no listeners).

    Methods here assume a transaction is open; the layers above open it.
    """

    # -- invalid input ---------------------------------------------------------------------

    def _cell_invalid(
        self,
        table_id: str | None = None,
        row_id: str | None = None,
        cell_id: str | None = None,
        invalid_cell: Any = DELETED,
        default_cell: Any = DELETED,
    ) -> Any:
        """Remember an invalid cell for the invalid-cell listeners; return the fallback."""
        rows = self._invalid_cells.get(table_id)
        if rows is None:
            rows = self._invalid_cells[table_id] = {}
        cells = rows.get(row_id)
        if cells is None:
            cells = rows[row_id] = {}
        invalids = cells.get(cell_id)
        if invalids is None:
            invalids = cells[cell_id] = []
        invalids.append(invalid_cell)
        return default_cell

    def _value_invalid(
        self,
        value_id: str | None = None,
        invalid_value: Any = DELETED,
        default_value: Any = DELETED,
    ) -> Any:
        invalids = self._invalid_values.get(value_id)
        if invalids is None:
            invalids = self._invalid_values[value_id] = []
        invalids.append(invalid_value)
        return default_value

    def _is_valid_encoded_json(self, encoded: str, types: Any = _NO_TYPES) -> bool:
        """Trusted encoded JSON (from ``set_*_json``) must decode to an object/array."""
        if not self._accepting_encoded or not is_encoded_json(encoded):
            return False
        try:
            decoded_type = cell_type(json_parse(encoded[1:]))
        except ValueError:
            return False
        return decoded_type in ("object", "array") and (
            types is _NO_TYPES or type_includes(types, decoded_type)
        )

    def _validated(
        self, schema: dict[str, Any] | None, value: Any, invalid: Any, *ids: str | None
    ) -> Any:
        """TinyBase's ``getValidatedCell``/``getValidatedValue``; DELETED if refused."""
        if schema is None:
            return invalid(*ids, value)
        default = schema.get(DEFAULT, DELETED)
        if value is None:
            return value if js_truthy(schema.get(ALLOW_NULL)) else invalid(*ids, value, default)
        if is_reserved_string(value, self._accepting_encoded):
            return invalid(*ids, value, default)
        if is_encoded_json(value):
            if ENUM not in schema and self._is_valid_encoded_json(value, schema.get(TYPE)):
                return value
            return invalid(*ids, value, default)
        if ENUM not in schema:
            if type_includes(schema.get(TYPE), cell_type(value)):
                return encode_if_json(value)
            return invalid(*ids, value, default)
        return value if enum_includes(schema[ENUM], value) else invalid(*ids, value, default)

    def _validated_unschema(self, value: Any, invalid: Any, *ids: str | None) -> Any:
        cls = value.__class__
        if cls is str:
            if value[:1] != JSON_PREFIX and value != UNDEFINED_MARKER:
                return value
            if self._accepting_encoded and value != UNDEFINED_MARKER:
                return value if self._is_valid_encoded_json(value) else invalid(*ids, value)
            return invalid(*ids, value)
        if cell_type(value) is None:
            return invalid(*ids, value)
        return encode_if_json(value)

    def _validated_cell(self, table_id: str, row_id: str | None, cell_id: str, cell: Any) -> Any:
        if self._has_tables_schema:
            table_schema = self._tables_schema.get(table_id)
            return self._validated(
                None if table_schema is None else table_schema.get(cell_id),
                cell,
                self._cell_invalid,
                table_id,
                row_id,
                cell_id,
            )
        cls = cell.__class__
        if cls is bool or cell is None or (cls is float and cell - cell == 0.0):
            return cell
        return self._validated_unschema(cell, self._cell_invalid, table_id, row_id, cell_id)

    def _validated_value(self, value_id: str, value: Any) -> Any:
        if self._has_values_schema:
            return self._validated(
                self._values_schema.get(value_id), value, self._value_invalid, value_id
            )
        return self._validated_unschema(value, self._value_invalid, value_id)

    # -- validation of whole objects (mutate the caller's copy in place) -------------------

    def _add_defaults_to_row(self, row: Any, table_id: str, row_id: str | None) -> Any:
        cache = self._tables_schema_row_cache.get(table_id)
        if cache is None:
            return row
        defaulted, non_defaulted, _ = cache
        if not isinstance(row, dict):
            # JavaScript throws when it tries to add defaults to a non-object row.
            if (row is None and (defaulted or non_defaulted)) or (
                not isinstance(row, list)
                and any(not _js_has_own(row, cell_id) for cell_id in defaulted)
            ):
                raise TypeError(
                    f"Cannot add default cells to row {row_id!r} of table {table_id!r}: "
                    f"{type(row).__name__} is not a dict"
                )
            for cell_id in non_defaulted:
                if not _js_has_own(row, cell_id):
                    self._cell_invalid(table_id, row_id, cell_id)
            return row
        for cell_id, cell in defaulted.items():
            if cell_id not in row:
                row[cell_id] = cell
        for cell_id in non_defaulted:
            if cell_id not in row:
                self._cell_invalid(table_id, row_id, cell_id)
        return row

    def _add_defaults_to_values(self, values: Any) -> Any:
        if not self._has_values_schema:
            return values
        if not isinstance(values, dict):
            if (values is None and (self._values_defaulted or self._values_non_defaulted)) or (
                not isinstance(values, list)
                and any(not _js_has_own(values, value_id) for value_id in self._values_defaulted)
            ):
                raise TypeError(
                    f"Cannot add default values to {type(values).__name__}: it is not a dict"
                )
            for value_id in self._values_non_defaulted:
                if not _js_has_own(values, value_id):
                    self._value_invalid(value_id)
            return values
        for value_id, value in self._values_defaulted.items():
            if value_id not in values:
                values[value_id] = value
        for value_id in self._values_non_defaulted:
            if value_id not in values:
                self._value_invalid(value_id)
        return values

    def _validate_tables(self, tables: Any) -> bool:
        if not isinstance(tables, dict) or not tables:
            self._cell_invalid()
            return False
        for table_id in js_keys(tables):
            if not self._validate_table(tables[table_id], table_id):
                del tables[table_id]
        return bool(tables)

    def _validate_table(self, table: Any, table_id: str) -> bool:
        if table.__class__ is PlainTable and not self._has_tables_schema:
            return True  # every cell already checked plain (and valid) by plain_table
        if self._has_tables_schema and table_id not in self._tables_schema:
            self._cell_invalid(table_id)
            return False
        if not isinstance(table, dict) or not table:
            self._cell_invalid(table_id)
            return False
        for row_id in js_keys(table):
            if not self._validate_row(table_id, row_id, table[row_id]):
                del table[row_id]
        return bool(table)

    def _validate_row(
        self, table_id: str, row_id: str | None, row: Any, skip_defaults: bool = False
    ) -> bool:
        if not skip_defaults:
            row = self._add_defaults_to_row(row, table_id, row_id)
        if not isinstance(row, dict) or not row:
            self._cell_invalid(table_id, row_id)
            return False
        for cell_id in js_keys(row):
            valid_cell = self._validated_cell(table_id, row_id, cell_id, row[cell_id])
            if valid_cell is DELETED:
                del row[cell_id]
            else:
                row[cell_id] = valid_cell
        if not row:
            return False
        if skip_defaults:
            return True
        cache = self._tables_schema_row_cache.get(table_id)
        return cache is None or all(cell_id in row for cell_id in cache[2])

    def _validate_values(self, values: Any, skip_defaults: bool = False) -> bool:
        if not skip_defaults:
            values = self._add_defaults_to_values(values)
        if not isinstance(values, dict) or not values:
            self._value_invalid()
            return False
        for value_id in js_keys(values):
            valid_value = self._validated_value(value_id, values[value_id])
            if valid_value is DELETED:
                del values[value_id]
            else:
                values[value_id] = valid_value
        if not values:
            return False
        return skip_defaults or all(
            value_id in values for value_id in self._values_required_non_defaulted
        )

    # -- schema caches ---------------------------------------------------------------------

    def _set_valid_tables_schema(self, tables_schema: dict[str, dict[str, dict[str, Any]]]) -> None:
        for table_id in js_keys(tables_schema):
            table_schema = tables_schema[table_id]
            defaulted: dict[str, Any] = {}
            non_defaulted: dict[str, None] = {}
            required: dict[str, None] = {}
            table_schema_map = self._tables_schema.setdefault(table_id, {})
            for cell_id in js_keys(table_schema):
                cell_schema = table_schema[cell_id]
                table_schema_map[cell_id] = cell_schema
                if DEFAULT in cell_schema:
                    defaulted[cell_id] = cell_schema[DEFAULT]
                else:
                    non_defaulted[cell_id] = None
                    if cell_schema.get("required") is True:
                        required[cell_id] = None
            for cell_id in list(table_schema_map):
                if cell_id not in table_schema:
                    del table_schema_map[cell_id]
            self._tables_schema_row_cache[table_id] = (defaulted, non_defaulted, required)
        for table_id in list(self._tables_schema):
            if table_id not in tables_schema:
                del self._tables_schema[table_id]
                self._tables_schema_row_cache.pop(table_id, None)

    def _set_valid_values_schema(self, values_schema: dict[str, dict[str, Any]]) -> None:
        for value_id in js_keys(values_schema):
            value_schema = values_schema[value_id]
            self._values_schema[value_id] = value_schema
            if DEFAULT in value_schema:
                self._values_defaulted[value_id] = value_schema[DEFAULT]
                self._values_non_defaulted.pop(value_id, None)
                self._values_required_non_defaulted.pop(value_id, None)
            else:
                self._values_defaulted.pop(value_id, None)
                self._values_non_defaulted[value_id] = None
                if value_schema.get("required") is True:
                    self._values_required_non_defaulted[value_id] = None
                else:
                    self._values_required_non_defaulted.pop(value_id, None)
        for value_id in list(self._values_schema):
            if value_id not in values_schema:
                del self._values_schema[value_id]
                self._values_defaulted.pop(value_id, None)
                self._values_non_defaulted.pop(value_id, None)
                self._values_required_non_defaulted.pop(value_id, None)

    def _save_tables_schema(self) -> None:
        if self._old_tables_schema is None:
            self._old_tables_schema = (
                self._has_tables_schema,
                {t: dict(cells) for t, cells in self._tables_schema.items()},
            )

    def _save_values_schema(self) -> None:
        if self._old_values_schema is None:
            self._old_values_schema = (self._has_values_schema, dict(self._values_schema))

    # -- applying valid content ------------------------------------------------------------

    def _get_or_create_table(self, table_id: str) -> dict[str, dict[str, Any]]:
        table = self._tables.get(table_id)
        if table is None:
            _ids_changed(self._changed_table_ids, table_id, 1)
            self._row_id_pools[table_id] = _RowIdPool()
            self._table_cell_ids[table_id] = {}
            table = self._tables[table_id] = {}
        return table

    def _set_valid_tables(self, tables: dict[str, Any]) -> None:
        for table_id in js_keys(tables):
            self._set_valid_table(table_id, tables[table_id])
        for table_id in list(self._tables):
            if table_id not in tables and table_id in self._tables:
                self._del_valid_table(table_id)

    def _set_valid_table(
        self, table_id: str, table: dict[str, Any], force_del: bool = False
    ) -> None:
        if (
            table
            and table_id not in self._tables
            and table_id not in self._changed_cells
            and table_id not in self._changed_row_ids
        ):
            self._set_new_table(table_id, table)
            return
        if self._lazy_cells:
            self._materialize_changed_cells()
        table_map = self._get_or_create_table(table_id)
        for row_id in js_keys(table):
            self._set_valid_row(table_id, table_map, row_id, table[row_id])
        for row_id in list(table_map):
            if row_id not in table and row_id in table_map:
                self._del_valid_row(table_id, table_map, row_id)

    def _set_new_table(self, table_id: str, table: dict[str, Any]) -> None:
        """Bulk path of :meth:`_set_valid_table` for a table this transaction creates.

        Same data, same records and in the same order as the general path (every row
        and cell is new, so each Id is added once and each cell changes from
        ``DELETED``), built with C-level dict operations instead of per-cell calls. The
        per-cell ``[DELETED, cell]`` pairs of ``_changed_cells`` -- a million small lists
        for a million cells, which also keep the garbage collector busy -- are only
        built if something reads or changes them (see
        :meth:`_materialize_changed_cells`); a load with no cell listeners never does.
        The rows of ``table`` (validated copies the Store owns) become the Store's rows.
        """
        _ids_changed(self._changed_table_ids, table_id, 1)
        self._row_id_pools[table_id] = _RowIdPool()
        table_map: dict[str, dict[str, Any]] = {}
        non_index_ids: set[str] = set()  # cell ids known not to be array indices
        for row_id in js_keys(table):
            row = table[row_id]
            if not non_index_ids.issuperset(row):
                if any(k[:1].isdigit() and is_array_index(k) for k in row):
                    row = {cell_id: row[cell_id] for cell_id in js_keys(row)}
                else:
                    non_index_ids.update(row)
            table_map[row_id] = row
        self._tables[table_id] = table_map
        cell_counts = dict(Counter(chain.from_iterable(table_map.values())))
        self._table_cell_ids[table_id] = cell_counts
        self._changed_table_cell_ids[table_id] = dict.fromkeys(cell_counts, 1)
        self._changed_row_ids[table_id] = dict.fromkeys(table_map, 1)
        self._changed_row_count[table_id] = self._changed_row_count.get(table_id, 0) + len(
            table_map
        )
        self._changed_cell_ids[table_id] = {
            row_id: dict.fromkeys(row, 1) for row_id, row in table_map.items()
        }
        # A placeholder keeps the table's place in the insertion order of the records.
        self._changed_cells[table_id] = {}
        self._lazy_cells[table_id] = table_map

    def _materialize_changed_cells(self) -> None:
        """Build the cell records that :meth:`_set_new_table` deferred.

        Must run before anything reads ``_changed_cells`` or changes a table (the
        mutators below call it first), so the deferred tables are still exactly as
        they were set and every one of their cells changed from ``DELETED``.
        """
        lazy, self._lazy_cells = self._lazy_cells, {}
        changed_cells = self._changed_cells
        for table_id, table_map in lazy.items():
            changed_cells[table_id] = {
                row_id: {cell_id: [DELETED, cell] for cell_id, cell in row.items()}
                for row_id, row in table_map.items()
            }

    def _set_valid_row(
        self,
        table_id: str,
        table_map: dict[str, dict[str, Any]],
        row_id: str,
        row: dict[str, Any],
        force_del: bool = False,
    ) -> None:
        if self._lazy_cells:
            self._materialize_changed_cells()
        row_map = table_map.get(row_id)
        if row_map is None:
            self._row_ids_changed(table_id, row_id, 1)
            row_map = table_map[row_id] = {}
        for cell_id in js_keys(row):
            self._set_valid_cell(table_id, row_id, row_map, cell_id, row[cell_id])
        for cell_id in list(row_map):
            if cell_id not in row and cell_id in row_map:
                self._del_valid_cell(table_id, table_map, row_id, row_map, cell_id, force_del)

    def _set_valid_cell(
        self, table_id: str, row_id: str, row_map: dict[str, Any], cell_id: str, cell: Any
    ) -> None:
        """Set a valid cell of an existing row (delete it if ``DELETED``); record it.

        The one home of a cell's net-change record (first old value, latest new one),
        but for the inlined copy in ``Store.set_cell``'s fast path.
        """
        if self._lazy_cells:
            self._materialize_changed_cells()
        old_cell = row_map.get(cell_id, DELETED)
        if old_cell is DELETED:
            self._cell_ids_changed(table_id, row_id, cell_id, 1)
        elif old_cell == cell and (old_cell.__class__ is bool) is (cell.__class__ is bool):
            return
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
        if cell is DELETED:
            self._cell_ids_changed(table_id, row_id, cell_id, -1)
            del row_map[cell_id]
        else:
            row_map[cell_id] = cell

    def _set_cell_now(
        self, table_id: str, row_id: str, cell_id: str, cell: Any, mapper: Any
    ) -> None:
        """Set one (checked) cell, or the result of ``mapper``: validate, then apply."""
        if mapper is not None:
            cell = mapper(self.get_cell(table_id, row_id, cell_id))
            # A mapper returning DELETED (JavaScript's undefined) makes an invalid cell,
            # as in TinyBase, rather than a TypeError.
            if cell is not DELETED:
                cell = py_cell(cell, lambda: where("cell", table_id, row_id, cell_id))
        if self._has_tables_schema:
            valid_cell = self._validated_cell(table_id, row_id, cell_id, cell)
            if valid_cell is DELETED:
                return
        else:
            cls = cell.__class__
            if cls is int or cls is float or cls is bool or cell is None:
                valid_cell = cell
            else:
                valid_cell = self._validated_cell(table_id, row_id, cell_id, cell)
                if valid_cell is DELETED:
                    return
        table_map = self._tables.get(table_id)
        if table_map is None:
            table_map = self._get_or_create_table(table_id)
        row_map = table_map.get(row_id)
        if row_map is None:
            self._set_cell_into_new_row(table_id, table_map, row_id, cell_id, valid_cell)
            return
        self._set_valid_cell(table_id, row_id, row_map, cell_id, valid_cell)

    def _apply_changes(self, tables: dict[str, Any], values: dict[str, Any]) -> None:
        """Apply checked Changes: ``DELETED`` deletes a table, row, cell or value."""
        for table_id in js_keys(tables):
            table = tables[table_id]
            if table is DELETED:
                if table_id in self._tables:
                    self._del_valid_table(table_id)
                continue
            for row_id in js_keys(table):
                row = table[row_id]
                if row is not DELETED:
                    for cell_id in js_keys(row):
                        cell = row[cell_id]
                        if cell is DELETED:
                            self._set_or_del_cell(table_id, row_id, cell_id, cell)
                        else:  # one call less per cell: every remote change comes here
                            self._set_cell_now(table_id, row_id, cell_id, cell, None)
                    continue
                table_map = self._tables.get(table_id)
                if table_map is not None and row_id in table_map:
                    self._del_valid_row(table_id, table_map, row_id)
        for value_id in js_keys(values):
            self._set_or_del_value(value_id, values[value_id])

    def _set_or_del_cell(self, table_id: str, row_id: str, cell_id: str, cell: Any) -> None:
        """Apply one cell of Changes or of a rollback; ``DELETED`` force-deletes it."""
        if cell is not DELETED:
            self._set_cell_now(table_id, row_id, cell_id, cell, None)
            return
        table_map = self._tables.get(table_id)
        if table_map is not None:
            row_map = table_map.get(row_id)
            if row_map is not None and cell_id in row_map:
                self._del_valid_cell(table_id, table_map, row_id, row_map, cell_id, True)

    def _set_or_del_value(self, value_id: str, value: Any) -> None:
        """Apply one value of Changes or of a rollback; ``DELETED`` deletes it."""
        if value is not DELETED:
            valid_value = self._validated_value(value_id, value)
            if valid_value is not DELETED:
                self._set_valid_value(value_id, valid_value)
        elif value_id in self._values:
            self._del_valid_value(value_id)

    def _set_cell_into_new_row(
        self,
        table_id: str,
        table_map: dict[str, dict[str, Any]],
        row_id: str,
        cell_id: str,
        valid_cell: Any,
    ) -> None:
        if self._lazy_cells:
            self._materialize_changed_cells()
        row_map = table_map.get(row_id)
        if row_map is not None:
            self._set_valid_cell(table_id, row_id, row_map, cell_id, valid_cell)
            return
        row_map = table_map[row_id] = {}
        self._row_ids_changed(table_id, row_id, 1)
        row = self._add_defaults_to_row({cell_id: valid_cell}, table_id, row_id)
        for id_ in js_keys(row):
            self._set_valid_cell(table_id, row_id, row_map, id_, row[id_])

    def _set_valid_values(self, values: dict[str, Any]) -> None:
        for value_id in js_keys(values):
            self._set_valid_value(value_id, values[value_id])
        for value_id in list(self._values):
            if value_id not in values and value_id in self._values:
                self._del_valid_value(value_id)

    def _set_valid_value(self, value_id: str, value: Any) -> None:
        old_value = self._values.get(value_id, DELETED)
        if old_value is DELETED:
            _ids_changed(self._changed_value_ids, value_id, 1)
        elif strict_equal(old_value, value):
            return
        self._record_value_change(value_id, old_value, value)
        self._values[value_id] = value

    def _record_value_change(self, value_id: str, old_value: Any, new_value: Any) -> None:
        """Record a value's net change: its first old value and its latest new value."""
        pair = self._changed_values.get(value_id)
        if pair is None:
            self._changed_values[value_id] = [old_value, new_value]
        else:
            pair[1] = new_value

    def _del_valid_table(self, table_id: str) -> None:
        self._set_valid_table(table_id, {}, True)

    def _del_valid_row(
        self, table_id: str, table_map: dict[str, dict[str, Any]], row_id: str
    ) -> None:
        self._row_id_pools[table_id].release(row_id)
        self._set_valid_row(table_id, table_map, row_id, {}, True)

    def _del_valid_cell(
        self,
        table_id: str,
        table_map: dict[str, dict[str, Any]],
        row_id: str,
        row_map: dict[str, Any],
        cell_id: str,
        force_del: bool,
    ) -> None:
        if self._lazy_cells:
            self._materialize_changed_cells()
        cache = self._tables_schema_row_cache.get(table_id)
        default_cell = DELETED if cache is None else cache[0].get(cell_id, DELETED)
        if default_cell is not DELETED and not force_del:
            self._set_valid_cell(table_id, row_id, row_map, cell_id, default_cell)
            return
        # Force-deleting a cell that has a default deletes the whole row (as TinyBase).
        for id_ in [cell_id] if default_cell is DELETED else list(row_map):
            self._set_valid_cell(table_id, row_id, row_map, id_, DELETED)
        if not row_map:
            self._row_ids_changed(table_id, row_id, -1)
            del table_map[row_id]
            if not table_map:
                _ids_changed(self._changed_table_ids, table_id, -1)
                del self._tables[table_id]
                del self._row_id_pools[table_id]
                del self._table_cell_ids[table_id]

    def _del_valid_value(self, value_id: str) -> None:
        default_value = self._values_defaulted.get(value_id, DELETED)
        if default_value is not DELETED:
            self._set_valid_value(value_id, default_value)
            return
        self._record_value_change(value_id, self._values[value_id], DELETED)
        _ids_changed(self._changed_value_ids, value_id, -1)
        del self._values[value_id]

    # -- change records --------------------------------------------------------------------

    def _row_ids_changed(self, table_id: str, row_id: str, added_or_removed: int) -> None:
        if self._lazy_cells:
            self._materialize_changed_cells()
        _ids_changed(self._changed_row_ids.setdefault(table_id, {}), row_id, added_or_removed)
        self._changed_row_count[table_id] = (
            self._changed_row_count.get(table_id, 0) + added_or_removed
        )

    def _cell_ids_changed(
        self, table_id: str, row_id: str, cell_id: str, added_or_removed: int
    ) -> None:
        if self._lazy_cells:
            self._materialize_changed_cells()
        cell_ids = self._table_cell_ids[table_id]
        count = cell_ids.get(cell_id, 0)
        if (count == 0 and added_or_removed == 1) or (count == 1 and added_or_removed == -1):
            _ids_changed(
                self._changed_table_cell_ids.setdefault(table_id, {}), cell_id, added_or_removed
            )
        if count != -added_or_removed:
            cell_ids[cell_id] = count + added_or_removed
        else:
            del cell_ids[cell_id]
        rows = self._changed_cell_ids.setdefault(table_id, {})
        _ids_changed(rows.setdefault(row_id, {}), cell_id, added_or_removed)
