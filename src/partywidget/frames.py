"""Store tables as pandas DataFrames, and DataFrames back into minimal Changes.

This module is pure: it only reads a :class:`~partywidget.store.Store` (and listens to it),
never touches the network or an event loop, so the widget, scripts and tests share one
definition of "what a table looks like as a DataFrame".

Shape of a table frame:

* index: the row ids (named ``row_id``), in the Store's row order;
* columns: the table's cell ids in schema order, then in the order TinyBase first saw them
  (``get_table_cell_ids``), so a column does not jump around when rows change;
* missing cells (and JSON ``null``) are NA;
* dtypes: from the table's schema when it has one (``string`` -> ``string``, ``number`` ->
  ``Float64``, ``boolean`` -> ``boolean``, ``object``/``array``/mixed -> ``object``), else
  inferred from the cells present (all ints -> ``Int64``, numbers -> ``Float64``, all
  bools -> ``boolean``, all strings -> ``string``, anything else -> ``object``). Nullable
  pandas dtypes are used so NA never turns an int column into floats.

Going back (:func:`table_changes_from_frame`) diffs a frame against the current table and
returns only the cells that differ, so ``w.tables["pets"] = df`` pushes one cell to the room
when one cell was edited, not the whole table.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import itertools
import json
import math
import operator
import threading
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .jsvalue import JSON_MARKER, cells_equal
from .model import DELETED, Changes

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "FrameCache",
    "table_changes_from_frame",
    "table_to_frame",
    "to_cell",
]

INDEX_NAME = "row_id"

# The schema ``type`` -> the pandas dtype used for that column.
_SCHEMA_DTYPES: dict[str, str] = {
    "string": "string",
    "number": "Float64",
    "boolean": "boolean",
    "object": "object",
    "array": "object",
}


# --------------------------------------------------------------------------------------
# Store -> DataFrame
# --------------------------------------------------------------------------------------


def _table_schema(schema_json: str, table_id: str) -> dict[str, Any]:
    schema = json.loads(schema_json) if schema_json not in ("", "{}") else {}
    table_schema: dict[str, Any] = schema.get(table_id, {}) if isinstance(schema, dict) else {}
    return table_schema


def _schema_dtype(cell_schema: Mapping[str, Any]) -> str | None:
    """The dtype a cell schema pins, or None when the data should decide."""
    kind = cell_schema.get("type")
    if isinstance(kind, str):
        return _SCHEMA_DTYPES.get(kind)
    if isinstance(kind, list | tuple):
        return "object"
    enum = cell_schema.get("enum")
    if isinstance(enum, list | tuple) and enum:
        kinds = {type(x) for x in enum}
        if kinds == {str}:
            return "string"
        if kinds == {bool}:
            return "boolean"
    return None


def _infer_dtype(kinds: set[type]) -> str:
    """The narrowest nullable dtype that holds every Python type seen in a column."""
    present = kinds - {type(None)}
    if not present:
        return "object"
    if present == {str}:
        return "string"
    if present == {bool}:
        return "boolean"
    if present == {int}:
        return "Int64"
    if present <= {int, float}:
        return "Float64"
    return "object"


def _column_array(values: list[Any], dtype: str, kinds: set[type]) -> Any:
    """Build one column's array fast, falling back to ``object`` when a cell doesn't fit.

    The fast paths build the nullable arrays from numpy data + mask directly: the generic
    ``pd.array(list, dtype=...)`` path is several times slower on 100k-row columns.
    ``kinds`` is the set of Python types in ``values``.
    """
    n = len(values)
    present = kinds - {type(None)}
    try:
        if dtype == "string" and present <= {str}:
            return pd.array(values, dtype="string")
        if dtype in ("Int64", "Float64", "boolean"):
            if type(None) in kinds:
                mask = np.fromiter((v is None for v in values), dtype=bool, count=n)
                fill: Any = False if dtype == "boolean" else 0
                values = [fill if v is None else v for v in values]
            else:
                mask = np.zeros(n, dtype=bool)
            if dtype == "boolean" and present <= {bool}:
                return pd.arrays.BooleanArray(np.array(values, dtype=bool), mask)
            if dtype == "Int64" and present <= {int}:
                return pd.arrays.IntegerArray(np.array(values, dtype=np.int64), mask)
            if dtype == "Float64" and present <= {int, float}:
                return pd.arrays.FloatingArray(np.array(values, dtype=np.float64), mask)
    except (TypeError, ValueError, OverflowError):
        pass  # e.g. an int beyond int64
    # a schema-typed column holding something else (or JSON/mixed cells): keep them as is
    out = np.empty(n, dtype=object)
    out[:] = [None if v is None else v for v in values] if dtype != "object" else values
    return out


def _column_values(rows: list[Mapping[str, Any]], cell_id: str) -> list[Any]:
    """One cell per row (None where missing); C-speed ``itemgetter`` when no row lacks it,
    else C-speed ``dict.get`` (the Store's rows are plain dicts)."""
    try:
        return list(map(operator.itemgetter(cell_id), rows))
    except KeyError:
        if all(row.__class__ is dict for row in rows):
            return list(map(dict.get, rows, itertools.repeat(cell_id)))  # type: ignore[arg-type]
        return [row.get(cell_id) for row in rows]


_STR_OR_NONE = frozenset({str, type(None)})


def _decode_json_cell(value: Any) -> Any:
    if value.__class__ is str and value[:1] == JSON_MARKER:
        return json.loads(value[1:])
    return value


def _raw_table(store: Store, table_id: str) -> tuple[Mapping[str, Mapping[str, Any]], bool]:
    """The table's rows, without copying when the Store offers a read-only view.

    ``Store.get_table`` builds a fresh decoded copy of every row, which alone costs more
    than the 100 ms budget for 100k rows. ``Store.get_table_view`` hands out the Store's
    own row dicts (object and array cells still as ``"\ufffd"`` + JSON text, TinyBase's
    encoding); we only read them (on the thread that owns the Store) and decode JSON
    cells column by column. The second result says whether cells may still be encoded.
    """
    get_table_view = getattr(store, "get_table_view", None)
    if get_table_view is not None:
        return get_table_view(table_id), True
    return store.get_table(table_id), False


def table_to_frame(store: Store, table_id: str) -> pd.DataFrame:
    """Materialise one table as a DataFrame (uncached; see :class:`FrameCache`)."""
    table, encoded = _raw_table(store, table_id)
    schema: Mapping[str, Mapping[str, Any]] = _table_schema(
        store.get_tables_schema_json(), table_id
    )
    cell_ids: list[str] = list(schema)
    seen = set(cell_ids)
    cell_ids.extend(c for c in store.get_table_cell_ids(table_id) if c not in seen)
    rows = list(table.values())
    columns: dict[str, Any] = {}
    with _gc_paused():
        _build_columns(rows, cell_ids, schema, encoded, columns)
    index = pd.Index(list(table), name=INDEX_NAME, dtype="str" if rows else object)
    return pd.DataFrame(columns, index=index, columns=pd.Index(cell_ids, dtype=object))


def _build_columns(
    rows: list[Mapping[str, Any]],
    cell_ids: list[str],
    schema: Mapping[str, Mapping[str, Any]],
    encoded: bool,
    columns: dict[str, Any],
) -> None:
    for cell_id in cell_ids:
        values = _column_values(rows, cell_id)
        kinds = set(map(type, values))
        if encoded and str in kinds:
            texts: Iterable[str]
            if len(kinds) == 1:
                texts = values
            elif kinds == _STR_OR_NONE:
                texts = filter(None, values)  # C-speed; drops None (and empty strings)
            else:
                texts = [v for v in values if v.__class__ is str]
            if JSON_MARKER in "".join(texts):
                values = [_decode_json_cell(v) for v in values]
                kinds = set(map(type, values))
        dtype = _schema_dtype(schema[cell_id]) if cell_id in schema else None
        if dtype is None:
            dtype = _infer_dtype(kinds)
        columns[cell_id] = _column_array(values, dtype, kinds)


#: Past this many changed cells since the last build, rebuilding beats patching.
MAX_PATCH_CELLS = 1_000


class _Entry:
    """A cached frame, the schema it was built under, and cell changes not yet applied."""

    __slots__ = ("frame", "patches", "schema_json")

    def __init__(self, schema_json: str, frame: pd.DataFrame) -> None:
        self.schema_json = schema_json
        self.frame = frame
        self.patches: dict[tuple[str, str], Any] = {}


class FrameCache:
    """Per-table DataFrames, rebuilt only when needed and patched for small changes.

    One did-finish-transaction listener collects each transaction's Changes: a table
    whose rows were added or deleted (or with more than ``MAX_PATCH_CELLS`` changed
    cells) is dropped and rebuilt on the next ``frame()``; a few changed cells are kept as
    patches and applied to a copy of the cached frame, so a remote one-cell edit on a 100k
    row table costs a column copy, not a rebuild. A patch is only applied when the result
    is exactly what a rebuild would give (same dtype inference); otherwise we rebuild.
    A schema change is caught by comparing the schema JSON (TinyBase has no schema
    listener). Returned frames are shallow copies: under pandas' copy-on-write that is
    free, and a caller editing the frame it got can't corrupt the cache.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self.builds = 0  # frames materialised from scratch (tests, benchmarks)
        self.patched = 0  # frames updated by patching
        self._listener_id: str | None = store.add_did_finish_transaction_listener(
            self._on_transaction
        )

    def _on_transaction(self, store: Any, *_args: Any) -> None:
        if not self._entries:
            return  # nothing cached to patch or drop: skip building the Changes
        tables = store.get_transaction_changes()[0]
        if not tables:
            return
        with self._lock:
            for table_id, table in tables.items():
                entry = self._entries.get(table_id)
                if entry is None:
                    continue
                if table is DELETED or not self._collect(entry, table):
                    del self._entries[table_id]

    def _collect(self, entry: _Entry, table: Mapping[str, Any]) -> bool:
        """Add a transaction's cell changes to ``entry``; False if it must be rebuilt."""
        index = entry.frame.index
        for row_id, row in table.items():
            if row is DELETED or row_id not in index:
                return False  # rows deleted or added: the index changes
            for cell_id, cell in row.items():
                entry.patches[(row_id, cell_id)] = cell
        return len(entry.patches) <= MAX_PATCH_CELLS

    def frame(self, table_id: str) -> pd.DataFrame:
        """The table as a DataFrame, rebuilt only if it changed since the last call."""
        schema_json = self._store.get_tables_schema_json()
        with self._lock:
            entry = self._entries.get(table_id)
            if entry is not None and entry.schema_json != schema_json:
                entry = None
            if entry is not None and entry.patches:
                patched = self._patch(table_id, entry)
                if patched is None:
                    entry = None
                else:
                    entry.frame, entry.patches = patched, {}
                    self.patched += 1
            if entry is not None:
                return entry.frame.copy(deep=False)
        frame = table_to_frame(self._store, table_id)
        self.builds += 1
        with self._lock:
            self._entries[table_id] = _Entry(schema_json, frame)
        return frame.copy(deep=False)

    def _patch(self, table_id: str, entry: _Entry) -> pd.DataFrame | None:
        """``entry.frame`` with the patches applied, or None if only a rebuild is exact."""
        frame = entry.frame
        schema = _table_schema(entry.schema_json, table_id)
        positions: dict[str, list[tuple[int, Any]]] = {}
        index = frame.index
        for (row_id, cell_id), cell in entry.patches.items():
            if cell_id not in frame.columns:
                return None  # a new column
            dtype = str(frame[cell_id].dtype)
            if not _patch_fits(dtype, cell, cell_id in schema):
                return None
            if cell is DELETED and not self._store.has_table_cell(table_id, cell_id):
                return None  # the column is gone
            position = index.get_loc(row_id)
            if not isinstance(position, int):
                return None  # not a unique label (cannot happen for Store row ids)
            positions.setdefault(cell_id, []).append((position, cell))
        out = frame.copy(deep=False)
        for cell_id, changes in positions.items():
            column = out[cell_id].array.copy()
            for position, cell in changes:
                column[position] = pd.NA if cell is DELETED or cell is None else cell
            out[cell_id] = column
        return out

    def close(self) -> None:
        """Stop listening to the Store and drop every cached frame."""
        if self._listener_id is not None:
            self._store.del_listener(self._listener_id)
            self._listener_id = None
        with self._lock:
            self._entries.clear()


def _patch_fits(dtype: str, cell: Any, typed_by_schema: bool) -> bool:
    """Whether writing ``cell`` into a column of ``dtype`` equals what a rebuild gives.

    Schema-typed columns keep their dtype whatever the data, so any value of that type
    (or NA) fits. Inferred columns could change dtype: only a value of the column's one
    type keeps the inference unchanged (a float into Float64, which then still holds a
    float; never NA, which could remove the value that decided the dtype).
    """
    if cell is DELETED or cell is None:
        return typed_by_schema and dtype != "object"
    kind = cell.__class__
    if dtype == "Int64":
        return kind is int and -(2**63) <= cell < 2**63
    if dtype == "Float64":
        return kind is float or (typed_by_schema and kind is int)
    if dtype == "boolean":
        return kind is bool
    if dtype == "string":
        return kind is str
    return False


# --------------------------------------------------------------------------------------
# DataFrame -> Changes
# --------------------------------------------------------------------------------------


def _is_na(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return bool(math.isnan(value))
    return isinstance(value, np.datetime64 | np.timedelta64) and bool(np.isnat(value))


class _Unsupported(TypeError):
    pass


def to_cell(value: Any) -> Any:
    """Convert one frame value to a TinyBase cell, or DELETED for NA.

    numpy scalars become Python scalars, datetimes ISO 8601 strings, tuples lists; dicts and
    lists are converted deeply. Anything else raises ``TypeError`` (the caller adds the
    column name).
    """
    if _is_na(value):
        return DELETED
    return _to_json(value)


def _to_json(value: Any) -> Any:
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Unsupported(f"non-finite number {value!r}")
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return _to_json(float(value))
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, pd.Timestamp | _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Unsupported(f"non-string key {key!r}")
            out[key] = None if _is_na(item) else _to_json(item)
        return out
    if isinstance(value, list | tuple | np.ndarray):
        return [None if _is_na(item) else _to_json(item) for item in value]
    raise _Unsupported(f"unsupported value {value!r} of type {type(value).__name__}")


def _row_id(label: Hashable) -> str:
    if isinstance(label, str):
        return label
    if isinstance(label, int | np.integer) and not isinstance(label, bool | np.bool_):
        return str(int(label))
    raise TypeError(f"row ids must be strings (or ints), got {label!r} in the index")


def _column_cells(df: pd.DataFrame, position: int, name: str) -> list[Any]:
    """One column of ``df`` as cells (DELETED for NA), vectorised for the common dtypes.

    numpy ints/bools and pandas' nullable dtypes convert with ``tolist()`` (Python scalars
    already); floats need a finiteness check (NaN is NA, +-inf is not a TinyBase number);
    everything else (object, datetimes, categoricals) goes through :func:`to_cell`.
    """
    series = df.iloc[:, position]
    dtype = series.dtype
    try:
        if isinstance(dtype, np.dtype) and dtype.kind in "iub":
            return list(series.tolist())
        if isinstance(dtype, np.dtype | pd.Float64Dtype | pd.Float32Dtype) and dtype.kind == "f":
            data = series.to_numpy(dtype=np.float64, na_value=np.nan)
            if np.isinf(data).any():
                raise _Unsupported("non-finite number inf")
            return [DELETED if v != v else v for v in data.tolist()]
        if isinstance(dtype, pd.Int64Dtype | pd.Int32Dtype | pd.Int16Dtype | pd.Int8Dtype):
            return [DELETED if v is pd.NA else v for v in series.tolist()]
        if isinstance(dtype, pd.UInt64Dtype | pd.UInt32Dtype | pd.UInt16Dtype | pd.UInt8Dtype):
            return [DELETED if v is pd.NA else v for v in series.tolist()]
        if isinstance(dtype, pd.BooleanDtype):
            return [DELETED if v is pd.NA else v for v in series.tolist()]
        if isinstance(dtype, pd.StringDtype):
            return [v if v.__class__ is str else DELETED for v in series.tolist()]
        values: Iterable[Any]
        if isinstance(dtype, pd.DatetimeTZDtype) or dtype.kind == "M":
            values = series.astype(object).tolist()
        else:
            values = series.tolist()
        return [to_cell(v) for v in values]
    except _Unsupported as error:
        raise TypeError(f"column {name!r}: {error}") from None


_MISSING = object()
_EMPTY: Mapping[str, Any] = {}


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building 100k-row structures.

    Building a frame or a diff allocates hundreds of thousands of objects, which triggers
    full collections that traverse the whole Store (itself hundreds of thousands of
    dicts): ~30% of the time for nothing, as nothing here forms cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _changed(old: Any, new: Any) -> bool:
    """Whether setting ``new`` over the stored (maybe JSON-encoded) ``old`` changes it."""
    if old is _MISSING:
        return new is not DELETED
    if new is DELETED:
        return True
    return not cells_equal(_decode_json_cell(old), new)


def table_changes_from_frame(store: Store, table_id: str, df: pd.DataFrame) -> Changes:
    """The minimal Changes that make ``table_id`` equal to ``df``.

    Rows missing from ``df`` are deleted, new rows added with their non-NA cells, and in
    rows on both sides only cells whose value differs are set (NA -> the cell is deleted).
    Columns absent from ``df`` delete those cells, as the frame replaces the table.
    Raises ``TypeError`` naming the column for values that can't be cells, and for non-string
    column names or row ids; nothing is changed then.

    Comparison is column by column: a cheap ``!=``/type screen over whole columns finds the
    few candidate cells, and only those get the exact TinyBase equality check, so a
    one-cell edit of a 100k-row frame costs a few list passes, not 500k Python compares.
    """
    for name in df.columns:
        if not isinstance(name, str):
            raise TypeError(f"column names must be strings, got {name!r}")
    if not df.columns.is_unique:
        raise ValueError("column names must be unique")
    labels = df.index.tolist()
    row_ids = (
        labels if all(label.__class__ is str for label in labels) else list(map(_row_id, labels))
    )
    if len(set(row_ids)) != len(row_ids):
        raise ValueError("row ids (the index) must be unique")
    names: list[str] = list(df.columns)
    with _gc_paused():
        columns = [_column_cells(df, i, name) for i, name in enumerate(names)]
        current, _encoded = _raw_table(store, table_id)
        return _diff_columns(store, table_id, current, row_ids, names, columns)


def _diff_columns(
    store: Store,
    table_id: str,
    current: Mapping[str, Mapping[str, Any]],
    row_ids: list[str],
    names: list[str],
    columns: list[list[Any]],
) -> Changes:
    n = len(row_ids)
    old_rows = list(map(current.get, row_ids))
    table_changes: dict[str, Any] = {}
    new_positions = [i for i, row in enumerate(old_rows) if row is None]
    for i in new_positions:
        new_row = {
            name: col[i] for name, col in zip(names, columns, strict=True) if col[i] is not DELETED
        }
        if new_row:
            table_changes[row_ids[i]] = new_row
    new_set = set(new_positions)
    rows_for_get = (
        [_EMPTY if row is None else row for row in old_rows] if new_positions else old_rows
    )
    for name, col in zip(names, columns, strict=True):
        old_col = list(map(operator.methodcaller("get", name, _MISSING), rows_for_get))
        # cheap screen in C: values that differ, or have different types (True == 1 in Python)
        differs = np.fromiter(map(operator.ne, old_col, col), dtype=bool, count=n)
        differs |= np.fromiter(
            map(operator.is_not, map(type, old_col), map(type, col)), dtype=bool, count=n
        )
        for i in np.flatnonzero(differs).tolist():
            if i not in new_set and _changed(old_col[i], col[i]):
                table_changes.setdefault(row_ids[i], {})[name] = col[i]
    kept_names = set(names)
    if not kept_names.issuperset(store.get_table_cell_ids(table_id)):
        for row_id, old_row in zip(row_ids, old_rows, strict=True):
            if old_row is not None and not kept_names.issuperset(old_row):
                for name in old_row:
                    if name not in kept_names:
                        table_changes.setdefault(row_id, {})[name] = DELETED
    kept = set(row_ids)
    for row_id in current:
        if row_id not in kept:
            table_changes[row_id] = DELETED
    return ({table_id: table_changes} if table_changes else {}), {}, 1
