"""Differential tests: ``partywidget.Store`` versus the real TinyBase 10.0.1 in Node.

TinyBase's behaviour is the specification, so rather than hand-writing expectations
these tests generate programs of Store operations (valid and invalid-but-JSON input,
schemas, mapper functions, nested, manual and rolled-back transactions, getters), replay
each on a fresh TinyBase Store in a long-running Node process
(``tests/node/store_replay.mjs``) and on a fresh Python Store, and require after every
top-level op: the same result, content, ``getJson()``/``getSchemaJson()`` text,
``JSON.stringify(getContent())`` == ``codec.js_dumps(get_content())``, transaction
Changes (and optionally ``getTransactionLog()``) seen by will/did-finish listeners, and
the same ordered listener log (every kind or a random subset, mutator and not, plus
"reaction" listeners that change the Store themselves).

``PARTYWIDGET_DIFF_EXAMPLES=20000`` runs a long soak instead of the CI-sized run (1000).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partywidget.model import DELETED
from partywidget.store import create_store
from support.store_ops import (
    NodeReplayer,
    canon_step,
    describe,
    diff_examples_default,
    listener_subsets,
    normalize_node_steps,
    programs,
    reaction_lists,
    replay_python,
)

pytestmark = [
    pytest.mark.node,
    # Hypothesis renders the (large, lambda-built) op strategy once for its reports.
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
    pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js"),
]

EXAMPLES = diff_examples_default() or 1000


@pytest.fixture(scope="module")
def node() -> Iterator[NodeReplayer]:
    replayer = NodeReplayer()
    try:
        yield replayer
    finally:
        replayer.close()


def _show(x: Any) -> str:
    """Readable JSON-ish text of a value from either side (undefined, -0 spelled out)."""

    def plain(v: Any) -> Any:
        if v is DELETED:
            return "<undefined>"
        if isinstance(v, float) and v == 0 and str(v).startswith("-"):
            return "<-0>"
        if isinstance(v, list | tuple):
            return [plain(i) for i in v]
        if isinstance(v, dict):
            return {k: plain(i) for k, i in v.items()}
        return v

    return json.dumps(plain(x), ensure_ascii=False)[:600]


def _step_difference(js: dict[str, Any], py: dict[str, Any]) -> str | None:
    """Which observable part of one step differs, with both sides shown."""
    cjs, cpy = canon_step(js), canon_step(py)
    for field in ("result", "content", "json", "contentJson", "schemaJson"):
        if cjs[field] != cpy[field]:
            return f"{field}:\n    TinyBase: {_show(js[field])}\n    Python:   {_show(py[field])}"
    for index, (a, b) in enumerate(zip(cjs["log"], cpy["log"], strict=False)):
        if a != b:
            return (
                f"listener call #{index}:\n    TinyBase: {_show(js['log'][index])}"
                f"\n    Python:   {_show(py['log'][index])}"
            )
    if len(cjs["log"]) != len(cpy["log"]):
        n = min(len(js["log"]), len(py["log"]))
        return (
            f"listener calls: {len(js['log'])} != {len(py['log'])}\n"
            f"    TinyBase extra: {_show(js['log'][n:])}\n    Python extra:   {_show(py['log'][n:])}"
        )
    return None


def assert_same_behaviour(
    node: NodeReplayer,
    program: list[dict[str, Any]],
    *,
    transaction_log: bool = False,
    listeners: list[str] | None = None,
    reactions: list[dict[str, Any]] | None = None,
) -> None:
    """Replay on both sides; fail at the first step whose observable behaviour differs.

    With ``transaction_log``, finish listeners also record ``getTransactionLog()``;
    ``listeners`` limits which listener kinds are registered (None: all); ``reactions``
    are listeners that run ops (mutator ones change the Store mid-transaction).
    """
    options: dict[str, Any] = {
        "transaction_log": transaction_log,
        "listeners": listeners,
        "reactions": reactions,
    }
    expected = normalize_node_steps(program, node.run(program, **options))
    actual = replay_python(program, create_store, **options)
    assert len(expected) == len(actual)
    for index, (js_step, py_step) in enumerate(zip(expected, actual, strict=True)):
        difference = _step_difference(js_step, py_step)
        if difference is not None:
            raise AssertionError(
                f"step {index} ({program[index]['op']}) differs in {difference}"
                f"\n  program: {describe(program)}"
            )


# Hand-picked programs for behaviour that random generation reaches rarely; each is
# also a readable example of a TinyBase rule our Store must follow.
FIXED_PROGRAMS: dict[str, list[dict[str, Any]]] = {
    "add_row_ids_reuse": [
        {"op": "addRow", "tableId": "t0", "row": {"c0": 1}},
        {"op": "addRow", "tableId": "t0", "row": {"c0": 2}},
        {"op": "delRow", "tableId": "t0", "rowId": "0"},
        {"op": "addRow", "tableId": "t0", "row": {"c0": 3}},
        {"op": "addRow", "tableId": "t0", "row": {"c0": 4}, "reuseRowIds": False},
        {"op": "setRow", "tableId": "t0", "rowId": "3", "row": {"c0": 5}},
        {"op": "addRow", "tableId": "t0", "row": {"c0": 6}},
        {"op": "addRow", "tableId": "t0", "row": []},
    ],
    "js_key_order_and_json": [
        {"op": "setRow", "tableId": "t0", "rowId": "r", "row": {"b": 1, "10": 2, "2": 3, "01": 4}},
        {
            "op": "setCell",
            "tableId": "t0",
            "rowId": "0",
            "cellId": "x",
            "cell": {"z": 1, "1": [1.5, -0.0]},
        },
        {"op": "setValue", "valueId": "17", "value": 1e21},
        {"op": "setValue", "valueId": "a", "value": 1e-7},
        {"op": "setValue", "valueId": "z", "value": -0.0},
        {"op": "getTableIds"},
        {"op": "getRowIds", "tableId": "t0"},
    ],
    "invalid_inputs": [
        {"op": "setTables", "tables": {"t0": {"r0": [1, 2]}, "t1": {"r0": {"c0": 1}}}},
        {"op": "setRow", "tableId": "t0", "rowId": "r0", "row": {"a": "\ufffc", "b": "\ufffd{}"}},
        {"op": "setValues", "values": []},
        {"op": "setValue", "valueId": "v0", "value": []},
        {"op": "setContent", "content": {"a": 1}},
        {"op": "setTable", "tableId": "t0", "table": {}},
    ],
    "schema_defaults_and_required": [
        {"op": "setRow", "tableId": "t0", "rowId": "r0", "row": {"c0": "x", "c1": 2}},
        {
            "op": "setTablesSchema",
            "schema": {
                "t0": {
                    "c0": {"type": "number", "default": 7},
                    "c1": {"type": "number", "required": True},
                    "c2": {"type": ["string", "boolean"], "allowNull": True},
                }
            },
        },
        {"op": "setRow", "tableId": "t0", "rowId": "r1", "row": {"c2": None}},
        {"op": "setRow", "tableId": "t0", "rowId": "r2", "row": {"c1": 1, "c2": True}},
        {"op": "delCell", "tableId": "t0", "rowId": "r2", "cellId": "c0"},
        {"op": "delCell", "tableId": "t0", "rowId": "r2", "cellId": "c0", "forceDel": True},
        {"op": "setValuesSchema", "schema": {"v0": {"enum": ["a", "b"], "default": "a"}}},
        {"op": "setValue", "valueId": "v0", "value": "c"},
        {"op": "delValue", "valueId": "v0"},
        {"op": "delSchema"},
        {"op": "getSchemaJson"},
    ],
    "transactions_nested_rollback_errors": [
        {
            "op": "transaction",
            "ops": [
                {"op": "setCell", "tableId": "t0", "rowId": "r0", "cellId": "c0", "cell": 1},
                {
                    "op": "transaction",
                    "ops": [{"op": "setValue", "valueId": "v0", "value": "x"}],
                    "rollback": True,
                },
                {"op": "setCell", "tableId": "t0", "rowId": "r0", "cellId": "c0", "cell": 2},
            ],
        },
        {
            "op": "transaction",
            "ops": [{"op": "delTables"}, {"op": "setValue", "valueId": "v1", "value": 1}],
            "rollback": True,
        },
        {
            "op": "transaction",
            "manual": True,
            "ops": [
                {"op": "setCell", "tableId": "t0", "rowId": "r0", "cellId": "c0", "cell": 2},
                {"op": "setCell", "tableId": "t0", "rowId": "r0", "cellId": "c0", "cell": 3},
            ],
        },
        {
            "op": "transaction",
            "ops": [
                {"op": "setValue", "valueId": "v0", "value": 1},
                {
                    "op": "setTablesSchema",
                    "schema": {"t0": {"c0": {"type": "number", "default": 1}}},
                },
                {"op": "setRow", "tableId": "t0", "rowId": "r9", "row": None},
                {"op": "setValue", "valueId": "v0", "value": 2},
            ],
        },
    ],
    "apply_changes_and_set_json": [
        {"op": "setJson", "json": '[{"t0":{"r0":{"c0":"\ufffd{\\"a\\":1}"}}},{"v0":true}]'},
        {
            "op": "applyChanges",
            "changes": [{"t0": {"r0": {"c0": DELETED, "c1": 0}}}, {"v0": DELETED}, 1],
        },
        {"op": "setJson", "json": '{"t1":{"r":{"c":1}}}'},
        {"op": "setJson", "json": "{"},
        {"op": "applyChanges", "changes": [{"t1": DELETED}, {}, 1]},
    ],
    "unsafe_integers_round_like_javascript": [
        {"op": "setValue", "valueId": "v0", "value": 2**53 + 1},
        {"op": "setValue", "valueId": "v0", "value": float(2**53)},
        {"op": "setRow", "tableId": "t0", "rowId": "r0", "row": {"c0": 2**60 + 1, "c1": [10**30]}},
        {"op": "setCell", "tableId": "t0", "rowId": "r0", "cellId": "c0", "cell": float(2**60)},
    ],
    "strings_and_arrays_own_index_keys": [
        {"op": "setValuesSchema", "schema": {"0": {"type": "string"}, "v1": {"type": "number"}}},
        {"op": "setValues", "values": "x"},
        {"op": "setValues", "values": [1, 2]},
        {
            "op": "setTablesSchema",
            "schema": {"t0": {"0": {"type": "string"}, "1": {"type": "number"}}},
        },
        {"op": "setRow", "tableId": "t0", "rowId": "r0", "row": "😀"},
        {"op": "setRow", "tableId": "t0", "rowId": "r0", "row": "é"},
        {"op": "setTablesSchema", "schema": {"t0": {"0": {"type": "string", "default": "d"}}}},
        {"op": "setRow", "tableId": "t0", "rowId": "r0", "row": "é"},
        {"op": "setRow", "tableId": "t0", "rowId": "r0", "row": 5},
    ],
    "mappers_including_undefined_results": [
        {"op": "setCell", "tableId": "t0", "rowId": "r0", "cellId": "c0", "mapper": "identity"},
        {"op": "setValue", "valueId": "v0", "mapper": "wrap"},
        {"op": "setValue", "valueId": "v0", "mapper": "identity"},
        {"op": "setTablesSchema", "schema": {"t0": {"c0": {"type": "number", "default": 3}}}},
        {"op": "setCell", "tableId": "t0", "rowId": "r1", "cellId": "c0", "mapper": "identity"},
        {
            "op": "setCell",
            "tableId": "t0",
            "rowId": "r1",
            "cellId": "c0",
            "mapper": "const",
            "cell": 4,
        },
    ],
    "sorted_row_ids": [
        {
            "op": "setTable",
            "tableId": "t0",
            "table": {
                "a": {"c0": 3, "c1": "b"},
                "b": {"c0": 1, "c1": "a"},
                "c": {"c0": 2},
                "d": {"c0": -1, "c1": "c"},
            },
        },
        {"op": "getSortedRowIds", "tableId": "t0", "cellId": "c0"},
        {
            "op": "getSortedRowIds",
            "tableId": "t0",
            "cellId": "c1",
            "descending": True,
            "offset": 1,
            "limit": 2,
            "form": "object",
        },
        {"op": "setCell", "tableId": "t0", "rowId": "c", "cellId": "c0", "cell": 10},
        {"op": "setCell", "tableId": "t0", "rowId": "a", "cellId": "c1", "cell": "z"},
    ],
}


@pytest.mark.parametrize("transaction_log", [False, True])
@pytest.mark.parametrize("name", list(FIXED_PROGRAMS))
def test_fixed_program(node: NodeReplayer, name: str, transaction_log: bool) -> None:
    assert_same_behaviour(node, FIXED_PROGRAMS[name], transaction_log=transaction_log)


def test_harness_sees_tinybase_semantics(node: NodeReplayer) -> None:
    """Guards the harness itself: a few facts about TinyBase we rely on being observed."""
    steps = node.run(
        [
            {"op": "addRow", "tableId": "t0", "row": {"c0": 1}},
            {"op": "setRow", "tableId": "t0", "rowId": "r1", "row": [1]},
            {"op": "setValue", "valueId": "z", "value": -0.0},
        ]
    )
    assert steps[0]["result"] == "0"
    assert ["startTransaction"] in steps[0]["log"]
    did_finish = [e for e in steps[0]["log"] if e[0] == "didFinishTransaction"]
    assert did_finish == [["didFinishTransaction", [{"t0": {"0": {"c0": 1}}}, {}, 1]]]
    invalid = [e for e in steps[1]["log"] if e[0] == "invalidCell"]
    assert invalid == [["invalidCell", "t0", "r1", DELETED, [DELETED]]]
    assert steps[1]["json"] == '[{"t0":{"0":{"c0":1}}},{}]'
    assert str(steps[2]["content"][1]["z"]) == "-0.0"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    program=programs,
    transaction_log=st.booleans(),
    listeners=listener_subsets,
    reactions=reaction_lists,
)
def test_random_programs(
    node: NodeReplayer,
    program: list[dict[str, Any]],
    transaction_log: bool,
    listeners: list[str] | None,
    reactions: list[dict[str, Any]],
) -> None:
    assert_same_behaviour(
        node, program, transaction_log=transaction_log, listeners=listeners, reactions=reactions
    )
