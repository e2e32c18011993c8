"""Operation programs for differential tests of ``partywidget.Store`` against TinyBase.

A *program* is a list of ops (dicts named after TinyBase's camelCase methods, with
their arguments as named fields, absent field = JavaScript ``undefined``). The same
program is replayed by ``tests/node/store_replay.mjs`` on a real TinyBase 10 Store and
by :func:`replay_python` on ours; both produce, per top-level op, the op's result, the
content afterwards, ``getJson()``/``getSchemaJson()``/``JSON.stringify(getContent())``
text (``js_dumps`` on our side) and the ordered log of all listener calls (wildcard
listeners of every kind, mutator and not, or a random subset of kinds, registered up
front; optional "reactions" are listeners that themselves run ops). :func:`canon` turns
either side's output into one type-strict, JavaScript-key-ordered form, so that equality
means "TinyBase would have done exactly this".

Where the Python API deliberately spells JavaScript's ``undefined`` as ``None`` (getter
results, optional Ids in listener arguments) or stringifies Ids up front,
:func:`normalize_node_steps` maps TinyBase's output accordingly; everything else must
match as is.

Why a hand-rolled canonical form: Python's ``==`` says ``True == 1`` and ignores dict
order, JSON drops ``undefined`` and ``-0``, and JavaScript objects put array-index keys
first. Each of these would hide a real discrepancy.
"""

from __future__ import annotations

import copy
import json
import math
import os
import queue
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from partywidget.codec import js_dumps
from partywidget.jsvalue import js_key_order
from partywidget.model import DELETED

ROOT = Path(__file__).resolve().parents[2]
REPLAY_SCRIPT = ROOT / "tests" / "node" / "store_replay.mjs"

UNDEFINED_TAG = "$undefined"
NEGZERO_TAG = "$negzero"
NONFINITE_TAG = "$nonfinite"
STORE_MARK = "$store"
FN_MARK = "$fn"
ERROR_TAG = "$error"

# The sorted-row-ids listeners both sides register: (table, cell, descending, offset,
# limit); None = undefined. Must match SORTED_ROW_IDS_SPECS in store_replay.mjs.
SORTED_ROW_IDS_SPECS: list[tuple[str, str | None, bool, int, int | None]] = [
    ("t0", None, False, 0, None),
    ("t0", "c0", False, 0, None),
    ("t1", "c1", True, 1, 2),
    ("t0", "c1", True, 0, None),
]

# ---------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------

# Ids that stress JavaScript: array-index-like keys are reordered in JS objects, "01"/"-1"
# are not array indices, "__proto__"/"constructor" are special object keys, "" is legal.
WEIRD_IDS = ["0", "17", "01", "-1", "", "__proto__", "constructor", 'q"\\', "é", "😀", "a b"]

table_ids = st.one_of(st.sampled_from(["t0", "t1"]), st.sampled_from(["t2", *WEIRD_IDS]))
row_ids = st.one_of(st.sampled_from(["r0", "r1", "0", "1"]), st.sampled_from(WEIRD_IDS))
cell_ids = st.one_of(st.sampled_from(["c0", "c1", "c2"]), st.sampled_from(WEIRD_IDS))
value_ids = st.one_of(st.sampled_from(["v0", "v1", "v2"]), st.sampled_from(WEIRD_IDS))
# Ids passed to setters/deleters may also be numbers: TinyBase stringifies them ('' + id)
# and so does our Store (getters are typed str only). Dict keys stay strings, as in JSON.
arg_table_ids = st.one_of(table_ids, table_ids, table_ids, st.integers(0, 2))
arg_row_ids = st.one_of(row_ids, row_ids, row_ids, st.integers(0, 2))
arg_cell_ids = st.one_of(cell_ids, cell_ids, cell_ids, st.integers(0, 1))
arg_value_ids = st.one_of(value_ids, value_ids, value_ids, st.integers(0, 1))

# Text without lone surrogates (JSON text cannot round-trip them reliably; the codec
# rejects them) and without "$" so our wire tags cannot collide with user keys.
_chars = st.characters(exclude_categories=["Cs"], exclude_characters="$")
plain_text = st.text(_chars, max_size=6)
special_strings = st.sampled_from(
    ["", "0", "17", "01", "-1", "a", "A", "b", '"', "\\", 'x"y\\z', "é", "😀", "\u2028", "null"]
)
# Reserved by TinyBase: the undefined marker and JSON-prefixed strings are invalid cells.
reserved_strings = st.sampled_from(["\ufffc", "\ufffd", "\ufffd{}", "\ufffd[1]", "\ufffdx"])

MAX_SAFE = 2**53 - 1
ints = st.one_of(
    st.integers(-3, 20),
    st.integers(-MAX_SAFE, MAX_SAFE),
    st.sampled_from([0, -1, 2**31, 2**32, MAX_SAFE, -MAX_SAFE]),
    # Beyond 2**53 JavaScript holds the nearest double; so must our Store.
    st.sampled_from([2**53 + 1, -(2**53) - 1, 2**60 + 1, 10**30]),
)
# Floats JSON can carry (JSON text of a float parses to the same double in JavaScript).
floats = st.one_of(
    st.sampled_from([-0.0, 0.0, 0.1, 1e-7, 1e21, 1e-21, 1.5, -2.5, float(2**60), 1e300, 5e-324]),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(
    plain_text,
    special_strings,
    ints,
    floats,
    st.booleans(),
    st.none(),
)
_json_keys = st.one_of(st.sampled_from(["a", "b", "0", "10", "x y"]), plain_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(_json_keys, inner, max_size=3),
    ),
    max_leaves=6,
)
objects_and_arrays = st.one_of(
    st.lists(json_values, max_size=3), st.dictionaries(_json_keys, json_values, max_size=3)
)
valid_cells = st.one_of(scalars, scalars, scalars, objects_and_arrays)
any_cells = st.one_of(
    valid_cells, valid_cells, valid_cells, valid_cells, reserved_strings, st.just([])
)

rows = st.dictionaries(cell_ids, any_cells, max_size=3)
# What TinyBase must refuse where a row/table/tables/values object is expected.
not_objects = st.one_of(
    st.lists(scalars, max_size=2), st.sampled_from(["x", 0, True]), st.none(), st.just({})
)
maybe_rows = st.one_of(rows, rows, rows, not_objects)
tables_ = st.dictionaries(row_ids, maybe_rows, max_size=3)
maybe_tables_ = st.one_of(tables_, tables_, tables_, not_objects)
tables_obj = st.dictionaries(table_ids, maybe_tables_, max_size=2)
maybe_tables_obj = st.one_of(tables_obj, tables_obj, tables_obj, not_objects)
values_obj = st.dictionaries(value_ids, any_cells, max_size=3)
maybe_values_obj = st.one_of(values_obj, values_obj, values_obj, not_objects)

_cell_or_deleted = st.one_of(any_cells, st.just(DELETED))
_row_changes = st.one_of(st.dictionaries(cell_ids, _cell_or_deleted, max_size=3), st.just(DELETED))
_table_changes = st.one_of(st.dictionaries(row_ids, _row_changes, max_size=2), st.just(DELETED))
changes_ = st.builds(
    lambda t, v: [t, v, 1],
    st.dictionaries(table_ids, _table_changes, max_size=2),
    st.dictionaries(value_ids, _cell_or_deleted, max_size=2),
)

SCHEMA_TYPES = ["string", "number", "boolean", "object", "array"]


@st.composite
def cell_schemas(draw: st.DrawFn) -> Any:
    """A CellSchema/ValueSchema, usually valid, sometimes subtly not (TinyBase decides)."""
    schema: dict[str, Any] = {}
    if draw(st.integers(0, 5)) == 0:
        enum = draw(
            st.lists(
                st.one_of(special_strings, st.integers(0, 3), st.booleans(), st.none()),
                min_size=0,
                max_size=3,
            )
        )
        schema["enum"] = enum
        if draw(st.integers(0, 4)) == 0:
            schema["type"] = "string"
    else:
        kind = draw(st.integers(0, 9))
        if kind == 0:
            schema["type"] = draw(
                st.lists(st.sampled_from(SCHEMA_TYPES), min_size=0, max_size=3, unique=True)
            )
        elif kind == 1:
            schema["type"] = draw(st.sampled_from(["int", "null", "", "String"]))
        else:
            schema["type"] = draw(st.sampled_from(SCHEMA_TYPES))
    if draw(st.booleans()):
        schema["default"] = draw(st.one_of(valid_cells, reserved_strings))
    if draw(st.integers(0, 3)) == 0:
        schema["allowNull"] = draw(st.booleans())
    if draw(st.integers(0, 3)) == 0:
        schema["required"] = draw(st.booleans())
    if draw(st.integers(0, 9)) == 0:
        schema["extra"] = 1
    order = draw(st.permutations(list(schema)))
    return {key: schema[key] for key in order}


tables_schemas = st.dictionaries(
    st.sampled_from(["t0", "t1", "0"]),
    st.one_of(
        st.dictionaries(st.sampled_from(["c0", "c1", "c2", "0"]), cell_schemas(), max_size=3),
        not_objects,
    ),
    max_size=2,
)
values_schemas = st.dictionaries(
    st.sampled_from(["v0", "v1", "v2", "0"]),
    st.one_of(cell_schemas(), cell_schemas(), not_objects),
    max_size=3,
)


def _json_text(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False)


def _encoded_cells(cell: Any) -> Any:
    """Encode object/array cells as TinyBase's "\\ufffd"-prefixed JSON strings."""
    if isinstance(cell, dict | list):
        return "\ufffd" + _json_text(cell)
    return cell


json_texts = st.one_of(
    # [tables, values] as text, object/array cells in TinyBase's encoded form
    st.builds(
        lambda t, v: _json_text(
            [
                {
                    tid: {
                        rid: {cid: _encoded_cells(c) for cid, c in r.items()}
                        if isinstance(r, dict)
                        else r
                        for rid, r in tb.items()
                    }
                    if isinstance(tb, dict)
                    else tb
                    for tid, tb in t.items()
                },
                {vid: _encoded_cells(v_) for vid, v_ in v.items()},
            ]
        ),
        tables_obj,
        values_obj,
    ),
    # a bare tables object: setJson falls back to setTablesJson
    st.builds(_json_text, tables_obj),
    st.builds(_json_text, st.tuples(maybe_tables_obj, maybe_values_obj).map(list)),
    st.sampled_from(["", "{", "[", "null", "[1,2]", "[[],{}]", "[{},{}]", '"x"', "[null,null]"]),
    # Numbers JSON.parse turns into Infinity or rounds (beyond 2**53)
    st.sampled_from(
        [
            '[{"t0":{"r0":{"c0":1e400,"c1":-1e400}}},{"v0":1e400}]',
            '[{"t0":{"r0":{"c0":9007199254740993}}},{"v0":"\ufffd[9007199254740993]"}]',
        ]
    ),
)


def _op(name: str, **fields: Any) -> dict[str, Any]:
    return {"op": name, **fields}


class _Absent:
    """Marks an optional op field left out (JavaScript ``undefined``); None is JSON null."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()
maybe_absent_bool = st.one_of(st.just(ABSENT), st.booleans())


def _drop_absent(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not ABSENT}


@st.composite
def sorted_row_ids_ops(draw: st.DrawFn) -> dict[str, Any]:
    op: dict[str, Any] = {"op": "getSortedRowIds", "tableId": draw(table_ids)}
    if draw(st.booleans()):
        op["cellId"] = draw(cell_ids)
    if draw(st.booleans()):
        op["descending"] = draw(st.booleans())
    if draw(st.booleans()):
        op["offset"] = draw(st.integers(0, 3))
    if draw(st.booleans()):
        op["limit"] = draw(st.integers(0, 3))
    op["form"] = draw(st.sampled_from(["args", "object"]))
    return op


# A larger table with mixed-type cells, to exercise sorting (JavaScript `<` between
# mixed types is not a total order, so the exact TimSort steps become observable).
sortable_cells = st.one_of(
    st.integers(-3, 3),
    st.sampled_from(["", "0", "1", "10", "a", "B", "é", "-1", " 2 "]),
    st.booleans(),
    st.none(),
    st.sampled_from([0.5, -0.0, 1e21]),
    st.just([1, 2]),
    st.just({}),
)
sortable_tables = st.dictionaries(
    st.one_of(st.integers(0, 30).map(str), st.sampled_from(["a", "b", "r0", "r1", "01"])),
    st.dictionaries(st.sampled_from(["c0", "c1"]), sortable_cells, min_size=1, max_size=2),
    min_size=2,
    max_size=25,
)

mutations = st.one_of(
    st.builds(lambda t: _op("setTable", tableId="t0", table=t), sortable_tables),
    st.builds(lambda c: _op("setContent", content=c), st.tuples(tables_obj, values_obj).map(list)),
    st.builds(lambda c: _op("setContent", content=c), not_objects),
    st.builds(lambda t: _op("setTables", tables=t), maybe_tables_obj),
    st.builds(lambda i, t: _op("setTable", tableId=i, table=t), arg_table_ids, maybe_tables_),
    st.builds(
        lambda i, r, x: _op("setRow", tableId=i, rowId=r, row=x),
        arg_table_ids,
        arg_row_ids,
        maybe_rows,
    ),
    st.builds(
        lambda i, x, reuse: _drop_absent(_op("addRow", tableId=i, row=x, reuseRowIds=reuse)),
        table_ids,  # addRow validates before stringifying: a JS quirk we do not copy
        maybe_rows,
        maybe_absent_bool,
    ),
    st.builds(
        lambda i, r, x: _op("setPartialRow", tableId=i, rowId=r, row=x),
        arg_table_ids,
        arg_row_ids,
        maybe_rows,
    ),
    st.builds(
        lambda i, r, c, x: _op("setCell", tableId=i, rowId=r, cellId=c, cell=x),
        arg_table_ids,
        arg_row_ids,
        arg_cell_ids,
        any_cells,
    ),
    st.builds(
        lambda i, r, c, x: _op("setCell", tableId=i, rowId=r, cellId=c, cell=x),
        st.just("t0"),
        st.sampled_from(["r0", "r1"]),
        st.sampled_from(["c0", "c1"]),
        st.one_of(st.integers(0, 3), special_strings, st.booleans(), st.none()),
    ),
    st.builds(lambda v: _op("setValues", values=v), maybe_values_obj),
    st.builds(lambda v: _op("setPartialValues", values=v), maybe_values_obj),
    st.builds(lambda i, v: _op("setValue", valueId=i, value=v), arg_value_ids, any_cells),
    # mapper functions: f(old) -> new
    st.builds(
        lambda i, r, c, m, x: _op("setCell", tableId=i, rowId=r, cellId=c, mapper=m, cell=x),
        st.sampled_from(["t0", "t1"]),
        st.sampled_from(["r0", "r1"]),
        st.sampled_from(["c0", "c1"]),
        st.sampled_from(["identity", "wrap", "const"]),
        any_cells,
    ),
    st.builds(
        lambda i, m, x: _op("setValue", valueId=i, mapper=m, value=x),
        st.sampled_from(["v0", "v1"]),
        st.sampled_from(["identity", "wrap", "const"]),
        any_cells,
    ),
    st.builds(lambda c: _op("applyChanges", changes=c), changes_),
    st.builds(lambda j: _op("setJson", json=j), json_texts),
    st.builds(
        lambda n, j: _op(n, json=j),
        st.sampled_from(["setTablesJson", "setValuesJson"]),
        st.one_of(
            st.builds(_json_text, maybe_tables_obj),
            st.builds(_json_text, maybe_values_obj),
            st.sampled_from(["", "{", "null", "[]", '{"v0":"\ufffd{}"}']),
        ),
    ),
    st.builds(lambda s: _op("setTablesSchema", schema=s), tables_schemas),
    st.builds(lambda s: _op("setValuesSchema", schema=s), values_schemas),
    st.builds(
        lambda t, v: _op("setSchema", tablesSchema=t, valuesSchema=v),
        tables_schemas,
        values_schemas,
    ),
    st.sampled_from(
        [
            _op("delSchema"),
            _op("delTablesSchema"),
            _op("delValuesSchema"),
            _op("delTables"),
            _op("delValues"),
        ]
    ),
    st.builds(lambda i: _op("delTable", tableId=i), arg_table_ids),
    st.builds(lambda i, r: _op("delRow", tableId=i, rowId=r), arg_table_ids, arg_row_ids),
    st.builds(
        lambda i, r, c, f: _drop_absent(_op("delCell", tableId=i, rowId=r, cellId=c, forceDel=f)),
        arg_table_ids,
        arg_row_ids,
        arg_cell_ids,
        maybe_absent_bool,
    ),
    st.builds(lambda i: _op("delValue", valueId=i), arg_value_ids),
)

getters = st.one_of(
    sorted_row_ids_ops(),
    st.sampled_from(
        [
            _op(name)
            for name in [
                "getContent",
                "getTables",
                "getTableIds",
                "getValues",
                "getValueIds",
                "hasTables",
                "hasValues",
                "getJson",
                "getTablesJson",
                "getValuesJson",
                "getSchemaJson",
                "getTablesSchemaJson",
                "getValuesSchemaJson",
                "hasTablesSchema",
                "hasValuesSchema",
                "getTransactionChanges",
            ]
        ]
    ),
    st.builds(
        lambda n, i: _op(n, tableId=i),
        st.sampled_from(["getTable", "getTableCellIds", "getRowCount", "getRowIds", "hasTable"]),
        table_ids,
    ),
    st.builds(lambda i, c: _op("hasTableCell", tableId=i, cellId=c), table_ids, cell_ids),
    st.builds(
        lambda n, i, r: _op(n, tableId=i, rowId=r),
        st.sampled_from(["getRow", "getCellIds", "hasRow"]),
        table_ids,
        row_ids,
    ),
    st.builds(
        lambda n, i, r, c: _op(n, tableId=i, rowId=r, cellId=c),
        st.sampled_from(["getCell", "hasCell"]),
        table_ids,
        row_ids,
        cell_ids,
    ),
    st.builds(lambda n, i: _op(n, valueId=i), st.sampled_from(["getValue", "hasValue"]), value_ids),
)

simple_ops = st.one_of(mutations, mutations, mutations, getters)


def _transaction(children: st.SearchStrategy[list[dict[str, Any]]]) -> st.SearchStrategy[Any]:
    return st.builds(
        lambda ops, rollback, manual: _drop_absent(
            {"op": "transaction", "ops": ops, "rollback": rollback, "manual": manual or ABSENT}
        ),
        children,
        st.one_of(st.just(ABSENT), st.just(ABSENT), st.booleans()),
        st.booleans(),
    )


_tx1 = _transaction(st.lists(simple_ops, max_size=4))
_tx2 = _transaction(st.lists(st.one_of(simple_ops, simple_ops, _tx1), max_size=4))
ops = st.one_of(*[simple_ops] * 6, _tx1, _tx2)

programs = st.lists(ops, min_size=1, max_size=15)


# ---------------------------------------------------------------------------------------
# Transport
# ---------------------------------------------------------------------------------------


def _wire_default(obj: Any) -> Any:
    if obj is DELETED:
        return {UNDEFINED_TAG: True}
    raise TypeError(f"not JSON: {obj!r}")


def program_to_json(program: list[dict[str, Any]]) -> str:
    """The JSON text Node replays; ``DELETED`` is tagged, -0.0 survives as ``-0.0``."""
    return json.dumps(program, default=_wire_default, allow_nan=False, ensure_ascii=False)


def decode_node(obj: Any) -> Any:
    """Undo store_replay.mjs's tags: undefined -> DELETED, -0 -> -0.0, Infinity -> inf."""
    if isinstance(obj, list):
        return [decode_node(x) for x in obj]
    if isinstance(obj, dict):
        if len(obj) == 1:
            if obj.get(UNDEFINED_TAG) is True:
                return DELETED
            if obj.get(NEGZERO_TAG) is True:
                return -0.0
            if isinstance(obj.get(NONFINITE_TAG), str):
                return float(obj[NONFINITE_TAG].replace("Infinity", "inf"))
        return {k: decode_node(v) for k, v in obj.items()}
    return obj


class NodeReplayer:
    """One long-running ``node store_replay.mjs`` for a whole test session.

    Requests are serialized (one in flight); a reader thread feeds a queue so that a
    hung Node is reported after ``timeout`` seconds instead of hanging the test run.
    """

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._proc = subprocess.Popen(
            ["node", str(REPLAY_SCRIPT)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next_id = 0

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put("")

    def run(
        self,
        program: list[dict[str, Any]],
        *,
        transaction_log: bool = False,
        listeners: list[str] | None = None,
        reactions: list[dict[str, Any]] | None = None,
    ) -> list[Any]:
        """Replay ``program`` on TinyBase; return its decoded steps."""
        assert self._proc.stdin is not None
        self._next_id += 1
        header = json.dumps(
            {"id": self._next_id, "transactionLog": transaction_log, "listeners": listeners}
        )
        request = (
            header[:-1]
            + ',"reactions":'
            + program_to_json(reactions or [])
            + ',"program":'
            + program_to_json(program)
            + "}\n"
        )
        self._proc.stdin.write(request)
        self._proc.stdin.flush()
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise RuntimeError("store_replay.mjs did not answer") from None
        if not line:
            stderr = self._proc.stderr.read() if self._proc.stderr else ""
            raise RuntimeError(f"store_replay.mjs exited: {stderr}")
        reply = json.loads(line)
        if reply.get("id") != self._next_id or "fatal" in reply:
            raise RuntimeError(f"store_replay.mjs failed: {reply.get('fatal', reply)}")
        return [
            {
                key: (value if key.endswith("Json") or key == "json" else decode_node(value))
                for key, value in step.items()
            }
            for step in reply["steps"]
        ]

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# ---------------------------------------------------------------------------------------
# Python replay
# ---------------------------------------------------------------------------------------

_ID_CHANGE_KINDS = {"tableIds", "tableCellIds", "rowIds", "cellIds", "valueIds"}


def _resolve(kind: str, args: tuple[Any, ...]) -> list[Any]:
    """Python twin of the arg resolution in store_replay.mjs's registerListeners."""
    base = kind.rstrip("*")
    if base == "cell":
        t, r, c, new, old, get = args
        return [t, r, c, new, old, None if get is None else list(get(t, r, c))]
    if base == "value":
        v, new, old, get = args
        return [v, new, old, None if get is None else list(get(v))]
    if base in _ID_CHANGE_KINDS:
        return [a() if callable(a) else a for a in args]
    return [FN_MARK if callable(a) else a for a in args]


# (kind, Store method, number of wildcard Ids) for every wildcard listener kind.
LISTENER_KINDS: list[tuple[str, str, int]] = [
    ("hasTables", "add_has_tables_listener", 0),
    ("tables", "add_tables_listener", 0),
    ("tableIds", "add_table_ids_listener", 0),
    ("hasTable", "add_has_table_listener", 1),
    ("table", "add_table_listener", 1),
    ("tableCellIds", "add_table_cell_ids_listener", 1),
    ("hasTableCell", "add_has_table_cell_listener", 2),
    ("rowCount", "add_row_count_listener", 1),
    ("rowIds", "add_row_ids_listener", 1),
    ("hasRow", "add_has_row_listener", 2),
    ("row", "add_row_listener", 2),
    ("cellIds", "add_cell_ids_listener", 2),
    ("hasCell", "add_has_cell_listener", 3),
    ("cell", "add_cell_listener", 3),
    ("invalidCell", "add_invalid_cell_listener", 3),
    ("hasValues", "add_has_values_listener", 0),
    ("values", "add_values_listener", 0),
    ("valueIds", "add_value_ids_listener", 0),
    ("hasValue", "add_has_value_listener", 1),
    ("value", "add_value_listener", 1),
    ("invalidValue", "add_invalid_value_listener", 1),
]
ALL_LISTENER_NAMES: list[str] = [
    *(kind + s for s in ("", "*") for kind in [k for k, _, _ in LISTENER_KINDS] + ["sortedRowIds"]),
    "startTransaction",
    "willFinishTransaction",
    "didFinishTransaction",
]
# Some listener subsets: the Store may skip work when no listener of a kind exists, so
# those paths are replayed too (None = every kind).
listener_subsets = st.one_of(
    st.just(None),
    st.just(None),
    st.lists(st.sampled_from(ALL_LISTENER_NAMES), max_size=4, unique=True),
)


def _register_listeners(
    store: Any, log: list[Any], transaction_log: bool, kinds: list[str] | None = None
) -> None:
    def wanted(kind: str) -> bool:
        return kinds is None or kind in kinds

    def record(kind: str) -> Callable[..., None]:
        def listener(_store: Any, *args: Any) -> None:
            # Copied at call time, as store_replay.mjs encodes at call time.
            log.append(copy.deepcopy([kind, *_resolve(kind, args)]))

        return listener

    for mutator in (False, True):
        s = "*" if mutator else ""
        for kind, method, wildcards in LISTENER_KINDS:
            if wanted(kind + s):
                getattr(store, method)(*[None] * wildcards, record(kind + s), mutator)
        if wanted("sortedRowIds" + s):
            for t, c, d, o, lim in SORTED_ROW_IDS_SPECS:
                store.add_sorted_row_ids_listener(
                    t, c, d, o, lim, record("sortedRowIds" + s), mutator
                )

    if wanted("startTransaction"):
        store.add_start_transaction_listener(lambda _s: log.append(["startTransaction"]))

    def finish(kind: str) -> Callable[[Any], None]:
        def listener(_store: Any) -> None:
            entry = [kind, store.get_transaction_changes()]
            if transaction_log:
                entry.append(store.get_transaction_log())
            log.append(copy.deepcopy(entry))

        return listener

    if wanted("willFinishTransaction"):
        store.add_will_finish_transaction_listener(finish("willFinishTransaction"))
    if wanted("didFinishTransaction"):
        store.add_did_finish_transaction_listener(finish("didFinishTransaction"))


# Reactions: listeners that run ops when called (see store_replay.mjs).
REACTION_METHODS: dict[str, tuple[str, int]] = {
    "cell": ("add_cell_listener", 3),
    "row": ("add_row_listener", 2),
    "table": ("add_table_listener", 1),
    "tables": ("add_tables_listener", 0),
    "value": ("add_value_listener", 1),
    "values": ("add_values_listener", 0),
}


def _register_reactions(store: Any, reactions: list[dict[str, Any]]) -> None:
    for reaction in reactions:
        method, count = REACTION_METHODS[reaction["kind"]]
        path = [*reaction["ids"], None, None, None][:count]

        def react(*_args: Any, ops: list[dict[str, Any]] = reaction["ops"]) -> None:
            for op in ops:
                _run_caught(store, op)

        getattr(store, method)(*path, react, reaction["mutator"])


_reaction_ops = st.one_of(
    st.builds(
        lambda r, c, x: _op("setCell", tableId="t1", rowId=r, cellId=c, cell=x),
        st.sampled_from(["r0", "r1"]),
        st.sampled_from(["c0", "c1"]),
        st.one_of(st.integers(0, 3), st.booleans(), st.just([])),
    ),
    st.builds(
        lambda v, x: _op("setValue", valueId=v, value=x),
        st.sampled_from(["v0", "v1"]),
        st.integers(0, 3),
    ),
    st.builds(lambda r: _op("delRow", tableId="t0", rowId=r), st.sampled_from(["r0", "r1"])),
    st.builds(lambda v: _op("delValue", valueId=v), st.sampled_from(["v0", "v1"])),
    st.sampled_from([_op("delTables"), _op("delValues"), _op("delTable", tableId="t1")]),
)


@st.composite
def _reaction(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(list(REACTION_METHODS)))
    count = REACTION_METHODS[kind][1]
    pools = (
        [["t0", "t1"], ["r0", "r1"], ["c0", "c1"]]
        if kind in ("cell", "row", "table", "tables")
        else [["v0", "v1"]]
    )
    ids = [draw(st.one_of(st.none(), st.sampled_from(pools[i]))) for i in range(count)]
    return {
        "kind": kind,
        "ids": ids,
        "mutator": draw(st.booleans()),
        "ops": draw(st.lists(_reaction_ops, min_size=1, max_size=2)),
    }


reaction_lists = st.one_of(st.just([]), st.lists(_reaction(), min_size=1, max_size=2))


_NO_ARG_GETTERS = {
    "getContent": "get_content",
    "getTables": "get_tables",
    "getTableIds": "get_table_ids",
    "getValues": "get_values",
    "getValueIds": "get_value_ids",
    "hasTables": "has_tables",
    "hasValues": "has_values",
    "getJson": "get_json",
    "getTablesJson": "get_tables_json",
    "getValuesJson": "get_values_json",
    "getSchemaJson": "get_schema_json",
    "getTablesSchemaJson": "get_tables_schema_json",
    "getValuesSchemaJson": "get_values_schema_json",
    "hasTablesSchema": "has_tables_schema",
    "hasValuesSchema": "has_values_schema",
    "getTransactionChanges": "get_transaction_changes",
    "delTables": "del_tables",
    "delValues": "del_values",
    "delSchema": "del_schema",
    "delTablesSchema": "del_tables_schema",
    "delValuesSchema": "del_values_schema",
}


def snake(name: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name)


def _mapper(store: Any, a: dict[str, Any]) -> Callable[[Any], Any]:
    """Twin of store_replay.mjs's mapper functions for setCell/setValue.

    Our Store hands mappers ``None`` for an absent cell (the getters' spelling of
    ``undefined``), so "return the old cell" for an absent one is spelled ``DELETED``,
    which is what JavaScript's identity mapper returns there (``undefined``).
    """
    kind = a["mapper"]
    if kind == "identity":

        def identity(old: Any) -> Any:
            if "valueId" in a:
                present = store.has_value(str(a["valueId"]))
            else:
                present = store.has_cell(str(a["tableId"]), str(a["rowId"]), str(a["cellId"]))
            return old if present else DELETED

        return identity
    if kind == "wrap":
        return lambda old: [old]  # an absent cell is None here, null in store_replay.mjs
    constant = a.get("cell", a.get("value"))
    return lambda _old: copy.deepcopy(constant)


def _run_op(store: Any, op: dict[str, Any]) -> Any:
    """Apply one op to our Store, mapping JS positional args to Python's API."""
    name = op["op"]
    a = copy.deepcopy(op)  # the Store must not see (or mutate) the program itself
    if name in _NO_ARG_GETTERS:
        return getattr(store, _NO_ARG_GETTERS[name])()
    if name == "setContent":
        return store.set_content(a["content"])
    if name == "setTables":
        return store.set_tables(a["tables"])
    if name == "setTable":
        return store.set_table(a["tableId"], a["table"])
    if name in ("setRow", "setPartialRow"):
        return getattr(store, snake(name))(a["tableId"], a["rowId"], a["row"])
    if name == "addRow":
        if "reuseRowIds" in a:
            return store.add_row(a["tableId"], a["row"], a["reuseRowIds"])
        return store.add_row(a["tableId"], a["row"])
    if name == "setCell":
        cell = _mapper(store, a) if "mapper" in a else a["cell"]
        return store.set_cell(a["tableId"], a["rowId"], a["cellId"], cell)
    if name in ("setValues", "setPartialValues"):
        return getattr(store, snake(name))(a["values"])
    if name == "setValue":
        return store.set_value(a["valueId"], _mapper(store, a) if "mapper" in a else a["value"])
    if name == "applyChanges":
        return store.apply_changes(a["changes"])
    if name in ("setJson", "setTablesJson", "setValuesJson"):
        return getattr(store, snake(name))(a["json"])
    if name in ("setTablesSchema", "setValuesSchema"):
        return getattr(store, snake(name))(a["schema"])
    if name == "setSchema":
        return store.set_schema(a["tablesSchema"], a["valuesSchema"])
    if name in ("delTable", "getTable", "getTableCellIds", "getRowCount", "getRowIds", "hasTable"):
        return getattr(store, snake(name))(a["tableId"])
    if name in ("delRow", "getRow", "getCellIds", "hasRow"):
        return getattr(store, snake(name))(a["tableId"], a["rowId"])
    if name == "delCell":
        if "forceDel" in a:
            return store.del_cell(a["tableId"], a["rowId"], a["cellId"], a["forceDel"])
        return store.del_cell(a["tableId"], a["rowId"], a["cellId"])
    if name in ("getCell", "hasCell"):
        return getattr(store, snake(name))(a["tableId"], a["rowId"], a["cellId"])
    if name == "hasTableCell":
        return store.has_table_cell(a["tableId"], a["cellId"])
    if name in ("delValue", "getValue", "hasValue"):
        return getattr(store, snake(name))(a["valueId"])
    if name == "getSortedRowIds":
        if a.get("form") == "object":
            args = {
                k: a[k] for k in ("tableId", "cellId", "descending", "offset", "limit") if k in a
            }
            return store.get_sorted_row_ids(args)
        kwargs = {
            py: a[js]
            for js, py in (
                ("cellId", "cell_id"),
                ("descending", "descending"),
                ("offset", "offset"),
                ("limit", "limit"),
            )
            if js in a
        }
        return store.get_sorted_row_ids(a["tableId"], **kwargs)
    if name == "transaction":
        inner: list[Any] = []

        def actions() -> int:
            for child in op["ops"]:
                inner.append(_run_caught(store, child))
            return len(inner)

        rollback = op.get("rollback")
        do_rollback = None if rollback is None else (lambda _store: rollback)
        if op.get("manual"):
            store.start_transaction()
            actions()
            store.finish_transaction(do_rollback)
            return {"manual": True, "inner": inner}
        if do_rollback is None:
            result = store.transaction(actions)
        else:
            result = store.transaction(actions, do_rollback)
        return {"result": result, "inner": inner}
    raise AssertionError(f"harness: unknown op {name}")


def _run_caught(store: Any, op: dict[str, Any]) -> Any:
    try:
        result = _run_op(store, op)
    except AssertionError:
        raise
    except Exception as error:
        return {ERROR_TAG: type(error).__name__}
    if result is store:
        return STORE_MARK
    return result


def replay_python(
    program: list[dict[str, Any]],
    store_factory: Callable[[], Any],
    *,
    transaction_log: bool = False,
    listeners: list[str] | None = None,
    reactions: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Replay ``program`` on a fresh Python Store; same step shape as store_replay.mjs."""
    store = store_factory()
    log: list[Any] = []
    _register_listeners(store, log, transaction_log, listeners)
    _register_reactions(store, reactions or [])
    steps = []
    for op in program:
        result = _run_caught(store, op)
        entries = log[:]
        log.clear()
        steps.append(
            {
                "result": result,
                "content": store.get_content(),
                "json": store.get_json(),
                "contentJson": js_dumps(store.get_content()),
                "schemaJson": store.get_schema_json(),
                "log": entries,
            }
        )
    return steps


# ---------------------------------------------------------------------------------------
# Canonical comparison
# ---------------------------------------------------------------------------------------


def canon(x: Any) -> Any:
    """A JSON-able, type-strict, JS-ordered rendering of a value from either side."""
    if x is DELETED:
        return ["undefined"]
    if x is None:
        return ["null"]
    if isinstance(x, bool):
        return ["bool", x]
    if isinstance(x, int | float):
        f = float(x)
        if f == 0 and math.copysign(1.0, f) < 0:
            return ["num", "-0"]
        return ["num", repr(f)]
    if isinstance(x, str):
        return x
    if isinstance(x, list | tuple):
        return ["array", [canon(v) for v in x]]
    if isinstance(x, dict):
        # A None key (the Python Store's undefined Id) is what JavaScript prints as
        # "undefined" when such a Map key becomes an object key.
        keyed = {("undefined" if k is None else k): v for k, v in x.items()}
        return ["object", [[k, canon(keyed[k])] for k in js_key_order(list(keyed))]]
    return ["python", repr(x)]


def canon_step(step: dict[str, Any]) -> dict[str, Any]:
    return {
        "result": canon(step["result"]),
        "content": canon(step["content"]),
        "json": step["json"],
        "contentJson": step["contentJson"],
        "schemaJson": step["schemaJson"],
        "log": [canon(entry) for entry in step["log"]],
    }


# Where Python spells JavaScript's `undefined` as None (documented in Store's docstring):
# optional Id/limit arguments and getter results. Positions are after the listener kind.
_UNDEFINED_IS_NONE_IN_LOG = {
    "sortedRowIds": (1, 4),
    "invalidCell": (0, 1, 2),
    "invalidValue": (0,),
}
_UNDEFINED_IS_NONE_RESULT = {"getCell", "getValue", "addRow"}
# TinyBase returns its internal flag, `undefined` until a schema was ever set or deleted.
_UNDEFINED_IS_FALSE_RESULT = {"hasTablesSchema", "hasValuesSchema"}


def _normalize_result(op: dict[str, Any], result: Any) -> Any:
    if result is DELETED and op["op"] in _UNDEFINED_IS_NONE_RESULT:
        return None
    if result is DELETED and op["op"] in _UNDEFINED_IS_FALSE_RESULT:
        return False
    if op["op"] == "transaction" and isinstance(result, dict) and "inner" in result:
        inner = [
            _normalize_result(child, r) for child, r in zip(op["ops"], result["inner"], strict=True)
        ]
        return {**result, "inner": inner}
    return result


def _decoded_pairs(pairs: Any) -> Any:
    """Decode "\ufffd"-prefixed JSON cells in a transaction log's [old, new] pairs."""
    if isinstance(pairs, dict):
        return {k: _decoded_pairs(v) for k, v in pairs.items()}
    if isinstance(pairs, list):
        return [
            json.loads(x[1:]) if isinstance(x, str) and x.startswith("\ufffd") else x for x in pairs
        ]
    return pairs


def _normalize_entry(entry: list[Any]) -> list[Any]:
    if entry[0] in ("willFinishTransaction", "didFinishTransaction") and len(entry) == 3:
        # Our get_transaction_log decodes JSON cells; TinyBase's shows them encoded.
        log = list(entry[2])
        log[2] = _decoded_pairs(log[2])
        log[4] = _decoded_pairs(log[4])
        return [entry[0], entry[1], log]
    positions = _UNDEFINED_IS_NONE_IN_LOG.get(entry[0].rstrip("*"), ())
    if not positions:
        return entry

    def fix(i: int, x: Any) -> Any:
        if i not in positions:
            return x
        if x is DELETED:
            return None
        # addRow validates before stringifying a numeric table Id, so TinyBase's
        # invalid-cell listener can get a number; our Store stringifies Ids up front.
        if isinstance(x, int) and not isinstance(x, bool) and entry[0].startswith("invalid"):
            return str(x)
        return x

    return [entry[0], *(fix(i, x) for i, x in enumerate(entry[1:]))]


def normalize_node_steps(program: list[dict[str, Any]], steps: list[Any]) -> list[Any]:
    """Map TinyBase's `undefined` to Python's None where the Python API uses None."""
    return [
        {
            **step,
            "result": _normalize_result(op, step["result"]),
            "log": [_normalize_entry(entry) for entry in step["log"]],
        }
        for op, step in zip(program, steps, strict=True)
    ]


def describe(program: list[dict[str, Any]]) -> str:
    return program_to_json(program)


def diff_examples_default() -> int:
    """How many programs per test; ``PARTYWIDGET_DIFF_EXAMPLES`` raises it for soak runs."""
    return int(os.environ.get("PARTYWIDGET_DIFF_EXAMPLES", "0") or 0)
