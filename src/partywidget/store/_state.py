"""The Store's state (data, schemas, transaction bookkeeping) and its read-only API.

Data lives in plain nested dicts whose insertion order is TinyBase's Map order. Cells are
stored as TinyBase stores them: scalars as they are, objects and arrays as JSON text with
the ``"\\uFFFD"`` prefix (decoded into fresh objects on the way out). Every getter returns
new containers, so callers can never change the Store behind its back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cmp_to_key
from types import MappingProxyType
from typing import Any

from partywidget.model import Content
from partywidget.store._cells import decode_if_json, js_dumps
from partywidget.store._js import js_less
from partywidget.store._listeners import ListenerRegistry, Tree
from partywidget.store._schema import decode_schema

__all__ = ["Sorter", "StoreState", "default_sorter", "sorted_row_ids_args"]

Sorter = Callable[[Any, Any], float]
Pair = tuple[Tree, Tree]


def default_sorter(key1: Any, key2: Any) -> int:
    """TinyBase's ``defaultSorter``: JavaScript ``<`` with missing/null keys as ``0``."""
    return -1 if js_less(0 if key1 is None else key1, 0 if key2 is None else key2) else 1


def sorted_row_ids_args(args: Mapping[str, Any]) -> tuple[Any, Any, bool, int, Any, Any]:
    """TinyBase's ``SortedRowIdsArgs`` object as positional arguments (sorter last)."""
    return (
        args["tableId"],
        args.get("cellId"),
        bool(args.get("descending", False)),
        args.get("offset", 0) or 0,
        args.get("limit"),
        args.get("sorter"),
    )


class _RowIdPool:
    """TinyBase's per-table row Id pool: a counter plus released integer-like Ids."""

    __slots__ = ("next_id", "pool")

    def __init__(self) -> None:
        self.pool: list[str] = []
        self.next_id = 0

    def get(self, reuse: bool) -> str:
        if reuse and self.pool:
            return self.pool.pop(0)
        row_id = str(self.next_id)
        self.next_id += 1
        return row_id

    def release(self, row_id: str) -> None:
        if row_id.isascii() and row_id.isdigit() and len(self.pool) < 1000:
            self.pool.append(row_id)


def _pair() -> Pair:
    return ({}, {})


class StoreState:
    """Attributes shared by the Store's layers, plus every getter and ``has_*`` method."""

    def __init__(self) -> None:
        # Data.
        self._tables: dict[str, dict[str, dict[str, Any]]] = {}
        self._values: dict[str, Any] = {}
        self._row_id_pools: dict[str, _RowIdPool] = {}
        self._table_cell_ids: dict[str, dict[str, int]] = {}
        # Schemas (defaults stored encoded, like cells).
        self._has_tables_schema = False
        self._has_values_schema = False
        self._tables_schema: dict[str, dict[str, dict[str, Any]]] = {}
        # table id -> (defaulted cells, non-defaulted cell ids, required non-defaulted ids)
        self._tables_schema_row_cache: dict[
            str, tuple[dict[str, Any], dict[str, None], dict[str, None]]
        ] = {}
        self._values_schema: dict[str, dict[str, Any]] = {}
        self._values_defaulted: dict[str, Any] = {}
        self._values_non_defaulted: dict[str, None] = {}
        self._values_required_non_defaulted: dict[str, None] = {}
        # Transaction state.
        self._transactions = 0
        self._rollback_requested = False
        self._old_tables_schema: tuple[bool, dict[str, dict[str, dict[str, Any]]]] | None = None
        self._old_values_schema: tuple[bool, dict[str, dict[str, Any]]] | None = None
        self._had_tables = False
        self._had_values = False
        self._mutating = False
        self._accepting_encoded = False
        # Net changes of the current transaction (DELETED stands for "absent").
        self._changed_table_ids: dict[str, int] = {}
        self._changed_table_cell_ids: dict[str, dict[str, int]] = {}
        self._changed_row_count: dict[str, int] = {}
        self._changed_row_ids: dict[str, dict[str, int]] = {}
        self._changed_cell_ids: dict[str, dict[str, dict[str, int]]] = {}
        self._changed_cells: dict[str, dict[str, dict[str, list[Any]]]] = {}
        # Tables created in bulk whose _changed_cells entry is not built yet (see
        # StoreCore._set_new_table): table id -> its rows, as they were set.
        self._lazy_cells: dict[str, dict[str, dict[str, Any]]] = {}
        self._changed_value_ids: dict[str, int] = {}
        self._changed_values: dict[str, list[Any]] = {}
        self._invalid_cells: dict[str | None, dict[str | None, dict[str | None, list[Any]]]] = {}
        self._invalid_values: dict[str | None, list[Any]] = {}
        # Listeners: (non-mutator, mutator) trees per kind.
        self._registry = ListenerRegistry(self)
        self._has_tables_listeners = _pair()
        self._tables_listeners = _pair()
        self._table_ids_listeners = _pair()
        self._has_table_listeners = _pair()
        self._table_listeners = _pair()
        self._table_cell_ids_listeners = _pair()
        self._has_table_cell_listeners = _pair()
        self._row_count_listeners = _pair()
        self._row_ids_listeners = _pair()
        self._sorted_row_ids_listeners = _pair()
        self._has_row_listeners = _pair()
        self._row_listeners = _pair()
        self._cell_ids_listeners = _pair()
        self._has_cell_listeners = _pair()
        self._cell_listeners = _pair()
        self._invalid_cell_listeners = _pair()
        self._has_values_listeners = _pair()
        self._values_listeners = _pair()
        self._value_ids_listeners = _pair()
        self._has_value_listeners = _pair()
        self._value_listeners = _pair()
        self._invalid_value_listeners = _pair()
        self._start_transaction_listeners: Tree = {}
        self._finish_transaction_listeners = _pair()  # (will, did)
        # Every net-change record, to clear them all when a transaction ends.
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

    # -- content ---------------------------------------------------------------------------

    def get_content(self) -> Content:
        """``(tables, values)``, fresh copies."""
        return (self.get_tables(), self.get_values())

    def get_tables(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {
            table_id: {
                row_id: {cell_id: decode_if_json(cell) for cell_id, cell in row.items()}
                for row_id, row in table.items()
            }
            for table_id, table in self._tables.items()
        }

    def get_table_ids(self) -> list[str]:
        return list(self._tables)

    def get_table(self, table_id: str) -> dict[str, dict[str, Any]]:
        table = self._tables.get(table_id)
        if table is None:
            return {}
        return {
            row_id: {cell_id: decode_if_json(cell) for cell_id, cell in row.items()}
            for row_id, row in table.items()
        }

    def get_table_view(self, table_id: str) -> Mapping[str, Mapping[str, Any]]:
        """A read-only, no-copy view of a table's rows, for bulk readers (DataFrames).

        Why: :meth:`get_table` copies and decodes every row, which for 100k rows costs
        more than building a DataFrame from them. The view maps row ids (in the Store's
        row order) to the Store's *own* row dicts; it is live, not a snapshot.

        Contract for callers: **never mutate** the rows (the Store's Changes and listeners
        would silently go wrong); read on the thread that owns the Store; do not keep the
        view across changes to the table (a deleted and re-created table is a new dict,
        which an old view does not see). Cells are as the Store keeps them: scalars as
        they are, but object and array cells as JSON text prefixed with ``"\ufffd"``
        (TinyBase's encoding; decode with ``json.loads(cell[1:])``). An absent table gives
        an empty view.
        """
        return MappingProxyType(self._tables.get(table_id) or {})

    def get_table_cell_ids(self, table_id: str) -> list[str]:
        return list(self._table_cell_ids.get(table_id, ()))

    def get_row_count(self, table_id: str) -> int:
        return len(self._tables.get(table_id, ()))

    def get_row_ids(self, table_id: str) -> list[str]:
        return list(self._tables.get(table_id, ()))

    def get_sorted_row_ids(
        self,
        table_id: str | Mapping[str, Any],
        cell_id: str | None = None,
        descending: bool = False,
        offset: int = 0,
        limit: int | None = None,
        sorter: Sorter | None = None,
    ) -> list[str]:
        """Row Ids sorted by a cell (or by Id), as TinyBase's ``getSortedRowIds``.

        ``table_id`` may also be a TinyBase ``SortedRowIdsArgs`` mapping (``tableId``,
        ``cellId``, ``descending``, ``offset``, ``limit``, ``sorter``). The default sorter
        compares with JavaScript's ``<`` (missing cells count as ``0``), and the sort is
        the same TimSort as V8's, so ties and mixed types order exactly as in TinyBase.
        """
        if isinstance(table_id, Mapping):
            return self.get_sorted_row_ids(*sorted_row_ids_args(table_id))
        table = self._tables.get(table_id)
        if not table:
            return []
        compare = sorter if sorter is not None else default_sorter
        sign = -1 if descending else 1
        keyed: list[tuple[Any, str]]
        if cell_id is None:
            keyed = [(row_id, row_id) for row_id in table]
        else:
            keyed = [(decode_if_json(row.get(cell_id)), row_id) for row_id, row in table.items()]

        def compare_pairs(pair1: tuple[Any, str], pair2: tuple[Any, str]) -> int:
            result = compare(pair1[0], pair2[0])
            if not isinstance(result, (int, float)) or result != result:
                return 0  # JavaScript treats NaN/undefined comparator results as 0
            return (-1 if result < 0 else 1 if result > 0 else 0) * sign

        keyed.sort(key=cmp_to_key(compare_pairs))
        start = int(offset)
        end = None if limit is None else start + int(limit)
        return [row_id for _, row_id in keyed[start:end]]

    def get_row(self, table_id: str, row_id: str) -> dict[str, Any]:
        row = self._tables.get(table_id, {}).get(row_id)
        if row is None:
            return {}
        return {cell_id: decode_if_json(cell) for cell_id, cell in row.items()}

    def get_cell_ids(self, table_id: str, row_id: str) -> list[str]:
        return list(self._tables.get(table_id, {}).get(row_id, ()))

    def get_cell(self, table_id: str, row_id: str, cell_id: str) -> Any:
        """The cell, or ``None`` if absent (JSON cells come back as fresh objects)."""
        table = self._tables.get(table_id)
        if table is None:
            return None
        row = table.get(row_id)
        if row is None:
            return None
        cell = row.get(cell_id)
        if cell.__class__ is str and cell[:1] == "\ufffd":
            return decode_if_json(cell)
        return cell

    def get_values(self) -> dict[str, Any]:
        return {value_id: decode_if_json(value) for value_id, value in self._values.items()}

    def get_value_ids(self) -> list[str]:
        return list(self._values)

    def get_value(self, value_id: str) -> Any:
        return decode_if_json(self._values.get(value_id))

    # -- existence -------------------------------------------------------------------------

    def has_tables(self) -> bool:
        return bool(self._tables)

    def has_table(self, table_id: str) -> bool:
        return table_id in self._tables

    def has_table_cell(self, table_id: str, cell_id: str) -> bool:
        return cell_id in self._table_cell_ids.get(table_id, ())

    def has_row(self, table_id: str, row_id: str) -> bool:
        return row_id in self._tables.get(table_id, ())

    def has_cell(self, table_id: str, row_id: str, cell_id: str) -> bool:
        return cell_id in self._tables.get(table_id, {}).get(row_id, ())

    def has_values(self) -> bool:
        return bool(self._values)

    def has_value(self, value_id: str) -> bool:
        return value_id in self._values

    def has_tables_schema(self) -> bool:
        return self._has_tables_schema

    def has_values_schema(self) -> bool:
        return self._has_values_schema

    # -- JSON ------------------------------------------------------------------------------

    def get_tables_json(self) -> str:
        """``JSON.stringify`` of the tables, JSON cells in their encoded form (as TinyBase)."""
        return js_dumps(self._tables)

    def get_values_json(self) -> str:
        return js_dumps(self._values)

    def get_json(self) -> str:
        return js_dumps([self._tables, self._values])

    def _tables_schema_obj(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {
            table_id: {cell_id: decode_schema(schema) for cell_id, schema in table.items()}
            for table_id, table in self._tables_schema.items()
            if table
        }

    def _values_schema_obj(self) -> dict[str, dict[str, Any]]:
        return {value_id: decode_schema(schema) for value_id, schema in self._values_schema.items()}

    def get_tables_schema_json(self) -> str:
        return js_dumps(self._tables_schema_obj())

    def get_values_schema_json(self) -> str:
        return js_dumps(self._values_schema_obj())

    def get_schema_json(self) -> str:
        return js_dumps([self._tables_schema_obj(), self._values_schema_obj()])

    # -- iteration (TinyBase's forEach* methods) ---------------------------------------------

    def for_each_table(self, table_callback: Callable[[str, Callable[..., None]], Any]) -> None:
        for table_id, table in list(self._tables.items()):

            def for_each_row(row_callback: Callable[..., Any], table: Any = table) -> None:
                for row_id, row in list(table.items()):

                    def for_each_cell(cell_callback: Callable[..., Any], row: Any = row) -> None:
                        for cell_id, cell in list(row.items()):
                            cell_callback(cell_id, decode_if_json(cell))

                    row_callback(row_id, for_each_cell)

            table_callback(table_id, for_each_row)

    def for_each_table_cell(
        self, table_id: str, table_cell_callback: Callable[[str, int], Any]
    ) -> None:
        for cell_id, count in list(self._table_cell_ids.get(table_id, {}).items()):
            table_cell_callback(cell_id, count)

    def for_each_row(self, table_id: str, row_callback: Callable[..., Any]) -> None:
        for row_id, row in list(self._tables.get(table_id, {}).items()):

            def for_each_cell(cell_callback: Callable[..., Any], row: Any = row) -> None:
                for cell_id, cell in list(row.items()):
                    cell_callback(cell_id, decode_if_json(cell))

            row_callback(row_id, for_each_cell)

    def for_each_cell(
        self, table_id: str, row_id: str, cell_callback: Callable[[str, Any], Any]
    ) -> None:
        for cell_id, cell in list(self._tables.get(table_id, {}).get(row_id, {}).items()):
            cell_callback(cell_id, decode_if_json(cell))

    def for_each_value(self, value_callback: Callable[[str, Any], Any]) -> None:
        for value_id, value in list(self._values.items()):
            value_callback(value_id, decode_if_json(value))
