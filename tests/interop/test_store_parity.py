"""Hand-picked edge-case scenarios replayed on real TinyBase 10 (Node) and on our Store.

Each scenario is a list of operations; both sides log every return value and every
listener call (with its arguments, ``get_id_changes()``/``get_cell_change(...)`` results,
and the transaction Changes in did-finish listeners). The logs must be identical. Random
operation sequences are covered by the differential tests; these pin down the corners:
schemas, defaults, JSON cells, rollback, mutator listeners, sorting of mixed types.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from partywidget.model import DELETED
from partywidget.store import Store, create_store
from support.node import node_available

ROOT = Path(__file__).resolve().parents[2]
UNDEF = "<undefined>"
UNDEF_ARG = {"$undefined": 1}

_NO_NODE = node_available()
pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(_NO_NODE is not None, reason=f"Node unavailable: {_NO_NODE}"),
]

KINDS = {
    "HasTables": 0,
    "Tables": 0,
    "TableIds": 0,
    "HasTable": 1,
    "Table": 1,
    "TableCellIds": 1,
    "HasTableCell": 2,
    "RowCount": 1,
    "RowIds": 1,
    "HasRow": 2,
    "Row": 2,
    "CellIds": 2,
    "HasCell": 3,
    "Cell": 3,
    "InvalidCell": 3,
    "HasValues": 0,
    "Values": 0,
    "ValueIds": 0,
    "HasValue": 1,
    "Value": 1,
    "InvalidValue": 1,
}

NODE_SCRIPT = r"""
import {createStore} from 'tinybase';
import {readFileSync} from 'node:fs';
const UNDEF = '<undefined>';
const KINDS = __KINDS__;
const scenarios = JSON.parse(readFileSync(0, 'utf8'));
const norm = (v) => JSON.parse(JSON.stringify(v, (k, x) => x === undefined ? UNDEF : x));
const arg = (a) => (a && typeof a == 'object' && !Array.isArray(a) && a['$undefined'] === 1)
  ? undefined : Array.isArray(a) ? a.map(arg) : (a && typeof a == 'object')
  ? Object.fromEntries(Object.entries(a).map(([k, v]) => [k, arg(v)])) : a;
const results = scenarios.map((ops) => {
  const store = createStore();
  const log = [];
  const run = (ops) => {
    for (const op of ops) {
      const [name, ...args] = op;
      try {
        if (name == 'listen') {
          const [kind, ids, mutator, subops] = args;
          const n = KINDS[kind];
          store['add' + kind + 'Listener'](...ids.map(arg), (s, ...a) => {
            // Python passes None where TinyBase has no Id (e.g. an invalid non-dict row).
            const entry = [kind, ...a.map((x, i) => i < n && x === undefined ? null : typeof x == 'function'
              ? (kind == 'Cell' ? x(a[0], a[1], a[2]) : kind == 'Value' ? x(a[0])
                : /Ids$/.test(kind) ? x() : 'fn') : x)];
            log.push(norm(entry));
            if (subops) run(subops);
          }, mutator);
        } else if (name == 'listenSorted') {
          const [t, c, d, o, l, mutator, subops] = args;
          store.addSortedRowIdsListener(arg(t), arg(c), d, o, arg(l), (s, ...a) => {
            log.push(norm(['Sorted', ...a.map((x) => x === undefined ? null : x)]));
            if (subops) run(subops);
          }, mutator);
        } else if (name == 'listenThrow') {
          const [kind, ids, mutator] = args;
          store['add' + kind + 'Listener'](...ids, () => { log.push(['boom', kind]); throw new Error('boom'); }, mutator);
        } else if (name == 'listenTx') {
          const [kind] = args;
          store['add' + kind + 'TransactionListener']((s) => log.push(norm(
            [kind, s.getTransactionChanges(), s.getTransactionLog().slice(0, 2)])));
        } else if (name == 'transaction') {
          const [subops, rollback] = args;
          log.push(norm(['ret', store.transaction(() => { run(subops); return 7; },
            rollback ? () => true : undefined)]));
        } else if (name == 'throwIn') {
          try { store.transaction(() => { run(args[0]); throw new Error('x'); }); }
          catch (e) { log.push(['threw']); }
        } else if (name == 'mapCell') {
          const [t, r, c, add] = args;
          store.setCell(t, r, c, (old) => (old ?? 0) + add);
        } else {
          const ret = store[name](...args.map(arg));
          log.push(norm(['ret', ret === store ? 'store' : ret === undefined ? null
            : name == 'getListenerStats' ? Object.fromEntries(Object.entries(ret).map(
              ([k, v]) => [k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase()), v])) : ret]));
        }
      } catch (e) { log.push(['error', e.message == 'boom' ? 'boom' : String(e.constructor.name)]); }
    }
  };
  run(ops);
  log.push(norm(['end', store.getContent(), store.getJson(), store.getSchemaJson()]));
  return log;
});
process.stdout.write(JSON.stringify(results));
""".replace("__KINDS__", json.dumps(KINDS))


def _snake(name: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name)


def _norm(value: Any) -> Any:
    if value is DELETED:
        return UNDEF
    if isinstance(value, float) and not math.isfinite(value):
        return None  # as JSON.stringify
    if isinstance(value, (list, tuple)):
        return [_norm(item) for item in value]
    if isinstance(value, dict):
        return {key: _norm(item) for key, item in value.items()}
    return value


def _arg(value: Any) -> Any:
    if value == UNDEF_ARG:
        return DELETED
    if isinstance(value, list):
        return [_arg(item) for item in value]
    if isinstance(value, dict):
        return {key: _arg(item) for key, item in value.items()}
    return value


def _id_arg(value: Any) -> Any:
    return None if value == UNDEF_ARG else value


def run_python(ops: list[Any]) -> list[Any]:
    store = create_store()
    log: list[Any] = []

    def listener_for(kind: str, subops: list[Any] | None) -> Callable[..., None]:
        def listener(s: Store, *a: Any) -> None:
            entry: list[Any] = [kind]
            for x in a:
                if callable(x):
                    if kind == "Cell":
                        entry.append(x(a[0], a[1], a[2]))
                    elif kind == "Value":
                        entry.append(x(a[0]))
                    elif kind.endswith("Ids"):
                        entry.append(x())
                    else:
                        entry.append("fn")
                else:
                    entry.append(x)
            log.append(_norm(entry))
            if subops:
                run(subops)

        return listener

    def run(ops: list[Any]) -> None:
        for op in ops:
            name, *args = op
            try:
                if name == "listen":
                    kind, ids, mutator, *rest = args
                    subops = rest[0] if rest else None
                    getattr(store, "add" + _snake(kind) + "_listener")(
                        *[_id_arg(i) for i in ids], listener_for(kind, subops), mutator
                    )
                elif name == "listenSorted":
                    t, c, d, o, lim, mutator, *rest = args
                    subops = rest[0] if rest else None

                    def sorted_listener(s: Store, *a: Any, subops: Any = subops) -> None:
                        log.append(_norm(["Sorted", *a]))
                        if subops:
                            run(subops)

                    store.add_sorted_row_ids_listener(
                        t, _id_arg(c), d, o, _id_arg(lim), sorted_listener, mutator
                    )
                elif name == "listenThrow":
                    kind, ids, *rest = args

                    def boom(*_: Any, kind: str = kind) -> None:
                        log.append(["boom", kind])
                        raise RuntimeError("boom")

                    if rest:
                        getattr(store, "add" + _snake(kind) + "_listener")(*ids, boom, rest[0])
                    else:
                        getattr(store, "add" + _snake(kind) + "_listener")(*ids, boom)
                elif name == "listenTx":
                    kind = args[0]

                    def tx_listener(s: Store, kind: str = kind) -> None:
                        log.append(
                            _norm(
                                [
                                    kind,
                                    list(s.get_transaction_changes()),
                                    list(s.get_transaction_log()[:2]),
                                ]
                            )
                        )

                    getattr(store, "add_" + _snake(kind)[1:] + "_transaction_listener")(tx_listener)
                elif name == "transaction":
                    subops, rollback = args

                    def actions(subops: Any = subops) -> int:
                        run(subops)
                        return 7

                    log.append(
                        _norm(
                            [
                                "ret",
                                store.transaction(actions, (lambda s: True) if rollback else None),
                            ]
                        )
                    )
                elif name == "throwIn":

                    def failing(subops: Any = args[0]) -> None:
                        run(subops)
                        raise RuntimeError("x")

                    try:
                        store.transaction(failing)
                    except RuntimeError:
                        log.append(["threw"])
                elif name == "mapCell":
                    t, r, c, add = args
                    store.set_cell(t, r, c, lambda old, add=add: (old or 0) + add)
                else:
                    ret = getattr(store, _snake(name))(*[_arg(a) for a in args])
                    if isinstance(ret, tuple):
                        ret = list(ret)
                    log.append(_norm(["ret", "store" if ret is store else ret]))
            except TypeError:
                log.append(["error", "TypeError"])
            except RuntimeError as exc:
                log.append(["error", str(exc)])

    run(ops)
    log.append(_norm(["end", list(store.get_content()), store.get_json(), store.get_schema_json()]))
    return log


ALL_LISTENERS: list[Any] = [["listen", kind, [None] * n, False] for kind, n in KINDS.items()] + [
    ["listenTx", "DidFinish"]
]

SCENARIOS: dict[str, list[Any]] = {
    "basic_cells": [
        *ALL_LISTENERS,
        ["setCell", "t", "r", "c", 1],
        ["setCell", "t", "r", "c", 1.0],
        ["setCell", "t", "r", "c", True],
        ["setCell", "t", "r", "d", None],
        ["setCell", "t", "r2", "c", "x"],
        ["delCell", "t", "r", "c"],
        ["delCell", "t", "r", "d"],
        ["delRow", "t", "r2"],
    ],
    "json_cells": [
        *ALL_LISTENERS,
        ["setCell", "t", "r", "c", {"b": 1, "a": [1, 2, {"z": None}]}],
        ["setCell", "t", "r", "c", {"b": 1, "a": [1, 2, {"z": None}]}],
        ["setCell", "t", "r", "c", {"a": [1, 2, {"z": None}], "b": 1}],
        ["setCell", "t", "r", "j", []],
        ["setValue", "v", {"2": 1, "1": 2, "x": 3}],
        ["getCell", "t", "r", "c"],
        ["getTablesJson"],
        ["getValuesJson"],
    ],
    "reserved_strings": [
        *ALL_LISTENERS,
        ["setCell", "t", "r", "c", "\ufffc"],
        ["setCell", "t", "r", "c", "\ufffd{}"],
        ["setValue", "v", "\ufffd[1]"],
        ["setTablesJson", '{"t":{"r":{"c":"\\ufffd{\\"a\\":1}","d":"\\ufffdnope","e":"\\ufffc"}}}'],
        ["getCell", "t", "r", "c"],
        ["setValuesJson", '{"v":"\\ufffd[1,2]","w":1}'],
        ["getValues"],
    ],
    "tables_rows_order": [
        *ALL_LISTENERS,
        ["setTables", {"t": {"b": {"x": 1}, "2": {"x": 2}, "10": {"x": 3}, "a": {"y": 1}}}],
        ["getRowIds", "t"],
        ["setTable", "t", {"a": {"y": 2}, "z": {"x": 1, "1": 5}}],
        ["getTableCellIds", "t"],
        ["setRow", "t", "z", {"q": 1}],
        ["setPartialRow", "t", "z", {"r": 2, "q": 1}],
        ["setTables", {}],
        ["setTables", []],
        ["setTable", "u", {}],
        ["setRow", "u", "r", "notarow"],
        ["setRow", "u", "r", [1, 2]],
        ["setRow", "u", "r", {}],
        ["delTables"],
    ],
    "add_row_ids": [
        ["addRow", "t", {"a": 1}],
        ["addRow", "t", {"a": 2}],
        ["setRow", "t", "5", {"a": 3}],
        ["addRow", "t", {"a": 4}],
        ["delRow", "t", "0"],
        ["addRow", "t", {"a": 5}, False],
        ["addRow", "t", {"a": 6}],
        ["addRow", "t", {}],
        ["addRow", "t", "x"],
        ["delRow", "t", "1"],
        ["delRow", "t", "5"],
        ["addRow", "t", {"a": 7}],
        ["addRow", "t", {"a": 8}],
        ["getRowIds", "t"],
        ["delTable", "t"],
        ["addRow", "t", {"a": 9}],
    ],
    "values": [
        *ALL_LISTENERS,
        ["setValues", {"a": 1, "b": "x"}],
        ["setPartialValues", {"b": "y", "c": False}],
        ["setValue", "a", 1.0],
        ["delValue", "b"],
        ["setValues", {"c": False}],
        ["setValues", {}],
        ["delValues"],
        ["setValue", "z", [1]],
        ["setPartialValues", []],
    ],
    "transactions_and_rollback": [
        *ALL_LISTENERS,
        ["listenTx", "Start"],
        ["listenTx", "WillFinish"],
        ["setCell", "t", "r", "c", 1],
        ["setCell", "t", "r", "j", {"x": 1}],
        ["setValue", "v", {"x": 1}],
        [
            "transaction",
            [
                ["setCell", "t", "r", "c", 2],
                ["setCell", "t", "r", "j", {"x": 2}],
                ["setCell", "t", "r2", "c", 2],
                ["setValue", "v", {"x": 2}],
                ["setValue", "w", 3],
                ["delCell", "t", "r", "c"],
            ],
            True,
        ],
        [
            "transaction",
            [["setCell", "t", "r", "c", 5], ["setCell", "t", "r", "c", 1]],
            False,
        ],
        ["throwIn", [["setCell", "t", "r", "c", 9], ["setValue", "x", 1]]],
        ["startTransaction"],
        ["setCell", "t", "r3", "c", 3],
        ["startTransaction"],
        ["delTable", "t"],
        ["finishTransaction"],
        ["finishTransaction"],
        ["finishTransaction"],
    ],
    "apply_changes": [
        *ALL_LISTENERS,
        ["setTables", {"t": {"r": {"a": 1, "b": 2}, "s": {"a": 1}}, "u": {"r": {"a": 1}}}],
        [
            "applyChanges",
            [
                {
                    "t": {"r": {"a": UNDEF_ARG, "c": {"j": 1}}, "s": UNDEF_ARG, "n": {"x": 1}},
                    "u": UNDEF_ARG,
                },
                {"v": 1, "w": UNDEF_ARG},
                1,
            ],
        ],
        ["applyChanges", [{}, {"v": UNDEF_ARG}, 1]],
    ],
    "schema_defaults": [
        *ALL_LISTENERS,
        [
            "setTablesSchema",
            {"t": {"n": {"type": "number", "default": 5}, "s": {"type": "string"}}},
        ],
        ["setRow", "t", "r", {"s": "x"}],
        ["setRow", "t", "r2", {"n": "bad", "s": "y", "extra": 1}],
        ["setCell", "t", "r3", "s", "z"],
        ["setCell", "t", "r3", "n", None],
        ["setCell", "u", "r", "s", "z"],
        ["delCell", "t", "r", "n"],
        ["setCell", "t", "r", "n", 7],
        ["delCell", "t", "r", "n"],
        ["delCell", "t", "r", "n", True],
        ["addRow", "t", {"s": 1}],
        ["getTablesSchemaJson"],
    ],
    "schema_enum_null_required": [
        *ALL_LISTENERS,
        [
            "setTablesSchema",
            {
                "t": {
                    "e": {"enum": ["a", "b", 1], "default": "b"},
                    "n": {"type": ["number", "null"], "allowNull": True},
                    "q": {"type": "boolean", "required": True},
                    "o": {"type": ["object", "array"], "default": {"k": 1}},
                    "bad": {"type": "date"},
                    "bad2": {"enum": [], "type": "string"},
                },
                "empty": {"x": {"foo": 1}},
            },
        ],
        ["getTablesSchemaJson"],
        ["setRow", "t", "r", {"q": True, "e": "a", "n": None}],
        ["setRow", "t", "r2", {"e": "c", "n": 1}],
        ["setRow", "t", "r3", {"q": False, "e": True, "n": "x", "o": [1]}],
        ["setCell", "t", "r", "e", 1],
        ["setCell", "t", "r", "e", True],
        ["setCell", "t", "r", "o", "str"],
        ["setTablesSchema", {}],
        ["setTablesSchema", {"t": {"e": {"type": "string", "default": None}}}],
        ["getTablesSchemaJson"],
    ],
    "schema_reapplied_to_data": [
        *ALL_LISTENERS,
        ["setTables", {"t": {"r": {"a": 1, "b": "x"}, "s": {"a": "y"}}, "u": {"r": {"a": 1}}}],
        ["setValues", {"a": 1, "b": "x"}],
        [
            "setTablesSchema",
            {"t": {"a": {"type": "number"}, "c": {"type": "string", "default": "d"}}},
        ],
        ["setValuesSchema", {"a": {"type": "string", "default": "q"}, "c": {"type": "number"}}],
        ["delValue", "a"],
        ["delValues"],
        ["delTablesSchema"],
        ["delValuesSchema"],
        [
            "setSchema",
            {"t": {"a": {"type": "number", "default": 0}}},
            {"z": {"type": "number", "default": 3}},
        ],
        ["delSchema"],
    ],
    "values_schema_required": [
        *ALL_LISTENERS,
        ["setValuesSchema", {"r": {"type": "string", "required": True}, "o": {"type": "number"}}],
        ["setValues", {"o": 1}],
        ["setValues", {"r": "x", "o": "bad"}],
        ["setPartialValues", {"o": 2}],
        ["setValue", "nope", 1],
        ["setValue", "r", None],
    ],
    "mutator_listeners": [
        [
            "listen",
            "Cell",
            ["t", None, "c"],
            True,
            [["setCell", "t", "r", "d", 10], ["setValue", "m", 1]],
        ],
        ["listen", "Value", [None], True, [["setValue", "n", 2]]],
        *ALL_LISTENERS,
        ["setCell", "t", "r", "c", 1],
        ["setValue", "x", 1],
        ["listen", "Row", [None, None], False, [["setCell", "t", "r", "ignored", 1]]],
        ["setCell", "t", "r", "c", 2],
    ],
    "sorted_row_ids": [
        [
            "setTable",
            "t",
            {
                "a": {"v": 3},
                "b": {"v": "10"},
                "c": {"v": "9"},
                "d": {"v": True},
                "e": {},
                "f": {"v": None},
                "g": {"v": [2]},
                "h": {"v": {"x": 1}},
                "i": {"v": "abc"},
                "j": {"v": -1},
                "k": {"v": 3},
                "l": {"v": "3"},
                "m": {"v": False},
            },
        ],
        ["getSortedRowIds", "t", "v"],
        ["getSortedRowIds", "t", "v", True],
        ["getSortedRowIds", "t", "v", False, 2, 4],
        ["getSortedRowIds", "t", "v", True, 1, 3],
        ["getSortedRowIds", "t"],
        ["getSortedRowIds", "t", UNDEF_ARG, True],
        ["getSortedRowIds", "t", "missing", True],
        ["getSortedRowIds", "nope", "v"],
        ["listenSorted", "t", "v", False, 0, 3, False],
        ["listenSorted", "t", UNDEF_ARG, True, 0, UNDEF_ARG, False],
        ["setCell", "t", "z", "v", -5],
        ["setCell", "t", "a", "w", 1],
        ["setCell", "t", "a", "v", 3.0],
        ["setCell", "t", "k", "v", 100],
        ["delRow", "t", "z"],
    ],
    "ids_listeners_specific": [
        ["listen", "TableIds", [], False],
        ["listen", "HasTable", ["t"], False],
        ["listen", "RowIds", ["t"], False],
        ["listen", "HasRow", ["t", "r"], False],
        ["listen", "HasRow", [None, "r"], False],
        ["listen", "CellIds", ["t", "r"], False],
        ["listen", "HasCell", ["t", None, "c"], False],
        ["listen", "Cell", ["t", "r", "c"], False],
        ["listen", "Cell", [None, "r", None], False],
        ["listen", "Cell", ["t", None, "c"], False],
        ["listen", "HasTableCell", ["t", "c"], False],
        ["listen", "RowCount", ["t"], False],
        ["setCell", "t", "r", "c", 1],
        ["setCell", "t", "r2", "c", 1],
        ["setCell", "u", "r", "c", 1],
        ["delCell", "t", "r", "c"],
        ["delRow", "t", "r2"],
        ["callListener", "7"],
        ["callListener", "3"],
        ["callListener", "99"],
        ["delListener", "0"],
        ["getListenerStats"],
        ["listen", "Tables", [], False],
        ["getListenerStats"],
    ],
    "set_json_variants": [
        *ALL_LISTENERS,
        ["setJson", '[{"t":{"r":{"c":1}}},{"v":2}]'],
        ["setJson", '{"t":{"r":{"c":3}}}'],
        ["setJson", "not json"],
        ["setJson", "[{}, {}]"],
        ["setJson", '"ab"'],
        ["setTablesJson", "[1]"],
        ["setValuesJson", '{"x":1e400}'],
        ["setTablesJson", '{"t":{"r":{"c":1,"d":1e999}}}'],
        ["setContent", [{"t": {"r": {"c": 1}}}, {"v": 1}]],
        ["setContent", [{}, {}]],
        ["setContent", "nope"],
        ["setContent", [{"t": {"r": {"c": 1}}}]],
    ],
    "sort_ties_and_mixed": [
        [
            "setTable",
            "t",
            {
                str(i): {"v": [1, "1", True, None, 0, "a", 2.5, "b", False, [1], "", " 1 "][i % 12]}
                for i in range(70)
            },
        ],
        ["getSortedRowIds", "t", "v"],
        ["getSortedRowIds", "t", "v", True],
        ["getSortedRowIds", "t", "v", True, 5, 20],
        ["getSortedRowIds", "t", "v", False, -3],
    ],
    "defaults_and_forced_deletes": [
        *ALL_LISTENERS,
        [
            "setTablesSchema",
            {"t": {"a": {"type": "number", "default": 1}, "b": {"type": "string"}}},
        ],
        ["setValuesSchema", {"x": {"type": "number", "default": 0}, "y": {"type": "boolean"}}],
        ["setRow", "t", "r", {"a": 2, "b": "x"}],
        ["delCell", "t", "r", "a", True],
        ["setRow", "t", "r", {"a": 2, "b": "x"}],
        ["delCell", "t", "r", "b"],
        ["delRow", "t", "r"],
        ["setValues", {"x": 5, "y": True}],
        ["delValue", "x"],
        ["delValue", "y"],
        ["delValues"],
        ["setPartialRow", "t", "q", {"b": "new"}],
        ["setPartialRow", "t", "q", {"b": 1}],
        ["mapCell", "t", "q", "a", 10],
        ["mapCell", "t", "new", "a", 1],
    ],
    "mutator_invalid_and_has": [
        ["listen", "InvalidCell", [None, None, None], True, [["setValue", "inv", 1]]],
        ["listen", "InvalidValue", [None], True],
        ["listen", "HasTables", [], True, [["setValue", "had", True]]],
        ["listen", "HasValues", [], True],
        *ALL_LISTENERS,
        ["setCell", "t", "r", "c", "\ufffc"],
        ["setCell", "t", "r", "c", 1],
        ["setValue", "v", "\ufffd"],
        ["delTables"],
        ["delValues"],
        ["transaction", [["setCell", "t", "r", "c", 1], ["delTables"]], False],
    ],
    "nested_transactions_rollback_schema": [
        *ALL_LISTENERS,
        ["listenTx", "WillFinish"],
        ["setCell", "t", "r", "c", 1],
        [
            "transaction",
            [
                ["setTablesSchema", {"t": {"c": {"type": "string", "default": "d"}}}],
                ["transaction", [["setCell", "t", "r2", "c", "z"]], False],
                ["getTablesSchemaJson"],
            ],
            True,
        ],
        ["getTablesSchemaJson"],
        ["hasTablesSchema"],
        ["throwIn", [["setValuesSchema", {"v": {"type": "number", "default": 1}}]]],
        ["getValuesSchemaJson"],
        ["getValues"],
    ],
    "mutators_see_invalid_input_added_by_mutators": [
        ["listen", "InvalidCell", [None, None, None], True, [["setCell", "t", "r", "n", "bad"]]],
        ["listen", "InvalidValue", [None], True, [["setValue", "n", "bad"]]],
        ["listen", "HasRow", [None, None], True, [["setCell", "t", "q", "n", 1]]],
        ["listen", "RowCount", [None], True, [["delRow", "t", "gone"]]],
        *ALL_LISTENERS,
        ["setTablesSchema", {"t": {"n": {"type": "number"}, "s": {"type": "string"}}}],
        ["setValuesSchema", {"n": {"type": "number"}}],
        ["setRow", "t", "gone", {"n": 0}],
        [
            "transaction",
            [
                ["setCell", "t", "a", "s", 1],
                ["setCell", "t", "r", "n", "bad"],
                ["setCell", "t", "r", "s", "ok"],
                ["setValue", "n", "bad"],
                ["setValue", "x", 1],
            ],
            False,
        ],
    ],
    "listener_errors": [
        ["listenThrow", "Cell", [None, None, None], True],
        *ALL_LISTENERS,
        ["listenTx", "WillFinish"],
        ["setCell", "t", "r", "c", 1],
        ["getTables"],
        ["delListener", "0"],
        ["listenThrow", "Cell", [None, None, None], False],
        ["listenThrow", "Row", [None, None], False],
        ["setCell", "t", "r", "c", 2],
        ["getTables"],
        ["listenThrow", "DidFinishTransaction", []],
        ["listenThrow", "WillFinishTransaction", []],
        ["setCell", "t", "r", "c", 3],
        ["getTables"],
        ["listenThrow", "StartTransaction", []],
        ["setCell", "t", "r", "c", 4],
        ["getTables"],
    ],
    "del_noops_and_invalid_types": [
        *ALL_LISTENERS,
        ["delTable", "none"],
        ["delRow", "none", "r"],
        ["delCell", "none", "r", "c"],
        ["delValue", "none"],
        ["setCell", "t", "r", "c", 1],
        ["delRow", "t", "none"],
        ["delCell", "t", "r", "none"],
        ["setTable", "t", "x"],
        ["setTables", {"t": "x", "u": {"r": {"c": 1}}}],
        ["setTables", {"t": {"r": "x"}, "u": {"r": {}}}],
        ["setValues", "x"],
        ["setValues", {"a": "\ufffc", "b": 1}],
    ],
}


def run_node(scenarios: list[list[Any]]) -> list[Any]:
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", NODE_SCRIPT],
        input=json.dumps(scenarios),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    result: list[Any] = json.loads(proc.stdout)
    return result


@pytest.fixture(scope="module")
def node_logs() -> dict[str, list[Any]]:
    names = list(SCENARIOS)
    logs = run_node([SCENARIOS[name] for name in names])
    return dict(zip(names, logs, strict=True))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_store_matches_tinybase(name: str, node_logs: dict[str, list[Any]]) -> None:
    python_log = json.loads(json.dumps(run_python(SCENARIOS[name])))
    expected = node_logs[name]
    for index, (mine, theirs) in enumerate(zip(python_log, expected, strict=False)):
        # call_listener passes None where TinyBase passes nothing at all.
        while len(mine) > len(theirs) and mine[-1] is None:
            mine = mine[:-1]
        assert mine == theirs, f"entry {index} differs in {name}"
    assert len(python_log) == len(expected)
