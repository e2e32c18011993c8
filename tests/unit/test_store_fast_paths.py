"""The Store's fast paths behave exactly like its general path.

``set_content``/``set_tables``/``set_table`` into a table the transaction creates take a
bulk path (``_set_new_table``: C-level record building, the per-cell Changes
pairs built only when something needs them), plain input skips the per-cell checks
(``plain_table``), and ``set_cell`` inside a transaction has an inlined path for a new
scalar in an existing cell. These tests replay random programs twice -- on the real
Store, and on one forced through the general path -- and require identical observable
behaviour: every listener call with its arguments and order, Changes and transaction
logs, invalid-cell reports, errors, data, Ids and row-Id pools. (The differential tests
compare the general path with real TinyBase; this closes the loop for the fast paths.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import partywidget.store._input as input_module
from partywidget.store import Store, create_store
from partywidget.store._cells import py_cell, where
from partywidget.store._js import js_keys


class GeneralStore(Store):
    """A Store whose new tables, and cells set inside transactions, go through the
    general per-cell path."""

    def _set_new_table(self, table_id: str, table: dict[str, Any]) -> None:
        table_map = self._get_or_create_table(table_id)
        for row_id in js_keys(table):
            self._set_valid_row(table_id, table_map, row_id, table[row_id])

    def set_cell(self, table_id: str, row_id: str, cell_id: str, cell: Any) -> Store:
        if callable(cell):  # mappers never take the inlined path
            return super().set_cell(table_id, row_id, cell_id, cell)
        cell = py_cell(cell, lambda: where("cell", table_id, row_id, cell_id))
        if self._transactions <= 0:
            return self._fluent(self._set_cell_now, table_id, row_id, cell_id, cell, None)
        try:
            self._set_cell_now(table_id, row_id, cell_id, cell, None)
        except BaseException:
            self._rollback_requested = True
            raise
        return self


@contextlib.contextmanager
def general_path() -> Iterator[None]:
    """No input is treated as plain (so it is normalized and validated cell by cell)."""
    with mock.patch.object(input_module, "plain_table", lambda _table: None):
        yield


# -- random programs ---------------------------------------------------------------------

ids = st.sampled_from(["a", "b", "0", "1", "10", "2", "01", "x"])
scalars = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([0.5, -0.0, 2.0, 1e300, True, False, None, "s", "", "0"]),
)
odd_cells = st.sampled_from(["\ufffc", "\ufffd{}", {"k": 1}, [1, 2], 2**60, float("nan")])
cells = st.one_of(scalars, scalars, scalars, odd_cells)
rows = st.dictionaries(ids, cells, max_size=4)
tables = st.dictionaries(ids, st.one_of(rows, rows, rows, st.just(3)), max_size=5)
contents = st.dictionaries(st.sampled_from(["t", "u", "0"]), tables, max_size=3)

ops = st.one_of(
    st.tuples(st.just("set_content"), contents, st.dictionaries(ids, scalars, max_size=2)),
    st.tuples(st.just("set_tables"), contents),
    st.tuples(st.just("set_table"), st.sampled_from(["t", "u"]), tables),
    st.tuples(st.just("set_cell"), st.sampled_from(["t", "u"]), ids, ids, cells),
    st.tuples(st.just("set_row"), st.sampled_from(["t", "u"]), ids, rows),
    st.tuples(st.just("add_row"), st.sampled_from(["t", "u"]), rows),
    st.tuples(st.just("del_row"), st.sampled_from(["t", "u"]), ids),
    st.tuples(st.just("del_cell"), st.sampled_from(["t", "u"]), ids, ids, st.booleans()),
    st.tuples(st.just("del_table"), st.sampled_from(["t", "u"])),
    st.tuples(st.just("del_tables")),
    st.tuples(st.just("changes")),
    st.tuples(st.just("schema"), st.sampled_from(["t", "u"])),
)
# A step is one op alone, or several ops in one transaction (maybe rolled back).
steps = st.one_of(
    st.tuples(st.just("op"), ops),
    st.tuples(st.just("txn"), st.lists(ops, min_size=1, max_size=5), st.booleans()),
)
listener_kinds = st.sets(
    st.sampled_from(
        [
            "cell",
            "row",
            "table",
            "tables",
            "cell_ids",
            "row_ids",
            "table_ids",
            "table_cell_ids",
            "row_count",
            "sorted",
            "has",
            "invalid",
            "mutator",
            "finish",
        ]
    )
)


def _listen(store: Store, kinds: set[str], log: list[Any]) -> None:
    def rec(name: str) -> Callable[..., None]:
        def listener(_store: Any, *args: Any) -> None:
            out = []
            for arg in args:
                if callable(arg):  # get_cell_change / get_id_changes: call it
                    try:
                        out.append(("fn", arg()))
                    except TypeError:
                        out.append(("fn", arg("t", "0", "a")))
                else:
                    out.append(arg)
            log.append((name, out))

        return listener

    if "cell" in kinds:
        store.add_cell_listener(None, None, None, rec("cell"))
    if "row" in kinds:
        store.add_row_listener(None, None, rec("row"))
    if "table" in kinds:
        store.add_table_listener(None, rec("table"))
    if "tables" in kinds:
        store.add_tables_listener(rec("tables"))
    if "cell_ids" in kinds:
        store.add_cell_ids_listener(None, None, rec("cell_ids"))
    if "row_ids" in kinds:
        store.add_row_ids_listener(None, rec("row_ids"))
    if "table_ids" in kinds:
        store.add_table_ids_listener(rec("table_ids"))
    if "table_cell_ids" in kinds:
        store.add_table_cell_ids_listener(None, rec("table_cell_ids"))
    if "row_count" in kinds:
        store.add_row_count_listener(None, rec("row_count"))
    if "sorted" in kinds:
        store.add_sorted_row_ids_listener("t", "a", False, 0, None, rec("sorted"))
    if "has" in kinds:
        store.add_has_cell_listener(None, None, None, rec("has_cell"))
        store.add_has_row_listener(None, None, rec("has_row"))
        store.add_has_table_listener(None, rec("has_table"))
        store.add_has_table_cell_listener(None, None, rec("has_table_cell"))
        store.add_has_tables_listener(rec("has_tables"))
    if "invalid" in kinds:
        store.add_invalid_cell_listener(None, None, None, rec("invalid"))
    if "mutator" in kinds:

        def mutate(s: Store, table_id: str, *_: Any) -> None:
            log.append(("mutator", table_id))
            if table_id == "t":
                s.set_cell("u", "m", "n", 1)

        store.add_table_listener(None, mutate, True)
        store.add_cell_listener(None, None, None, rec("mutator_cell"), True)
    if "finish" in kinds:
        store.add_will_finish_transaction_listener(
            lambda s: log.append(("will", s.get_transaction_changes()))
        )
        store.add_did_finish_transaction_listener(
            lambda s: log.append(("did", s.get_transaction_changes(), s.get_transaction_log()))
        )


def _run_op(store: Store, op: tuple[Any, ...], log: list[Any]) -> None:
    name, args = op[0], op[1:]
    if name == "set_content":
        store.set_content((args[0], args[1]))
    elif name == "changes":
        log.append(("changes", store.get_transaction_changes()))
    elif name == "schema":
        store.set_tables_schema({args[0]: {"a": {"type": "number", "default": 7}}})
    elif name == "add_row":
        log.append(("add_row", store.add_row(*args)))
    else:
        getattr(store, name)(*args)


def _replay(make: Callable[[], Store], start: Any, kinds: set[str], program: list[Any]) -> Any:
    store = make()
    log: list[Any] = []
    with contextlib.suppress(TypeError, ValueError):
        store.set_tables(start)
    _listen(store, kinds, log)
    for step in program:
        try:
            if step[0] == "op":
                _run_op(store, step[1], log)
            else:
                _, txn_ops, rollback = step

                def actions(txn_ops: list[Any] = txn_ops) -> None:
                    for op in txn_ops:
                        _run_op(store, op, log)

                store.transaction(actions, (lambda _s: True) if rollback else None)
        except (TypeError, ValueError) as error:
            log.append(("error", type(error).__name__, str(error)))
        log.append(
            (
                "state",
                store.get_json(),
                {t: store.get_table_cell_ids(t) for t in store.get_table_ids()},
                {t: [store.get_row_count(t), store.get_row_ids(t)] for t in store.get_table_ids()},
            )
        )
    log.append(("add_row_after", [store.add_row(t, {"z": 1}) for t in store.get_table_ids()]))
    return log


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    start=contents,
    kinds=listener_kinds,
    program=st.lists(steps, min_size=1, max_size=4),
)
def test_bulk_path_matches_general_path(start: Any, kinds: set[str], program: list[Any]) -> None:
    with general_path():
        expected = _replay(GeneralStore, start, kinds, program)
    actual = _replay(create_store, start, kinds, program)
    assert actual == expected


def test_bulk_load_defers_cell_records_until_needed() -> None:
    """A load with no cell listeners never builds per-cell Changes pairs; asking for the
    transaction's Changes (or changing the table) builds exactly the general path's."""
    store = create_store()
    seen: list[Any] = []
    store.add_did_finish_transaction_listener(lambda s: seen.append(s.get_transaction_changes()))
    with store.transaction():
        store.set_content(({"t": {"r1": {"a": 1, "b": "x"}, "0": {"a": None}}}, {"v": 1}))
        assert store._lazy_cells  # deferred while nothing needed them
        store.set_cell("t", "r1", "a", 2)  # changing the table builds them first
        assert not store._lazy_cells
    assert seen == [({"t": {"0": {"a": None}, "r1": {"a": 2, "b": "x"}}}, {"v": 1}, 1)]
    assert store.get_json() == '[{"t":{"0":{"a":null},"r1":{"a":2,"b":"x"}}},{"v":1}]'


@pytest.mark.parametrize("cell", [[], {"a": 1}, "\ufffc", "text", 2**60, 1.5, True, None])
def test_set_cell_in_a_transaction_over_an_existing_cell(cell: Any) -> None:
    """The inlined path only takes scalars that need no encoding or validation."""
    logs = []
    for make in (GeneralStore, create_store):
        store = make().set_cell("t", "r", "c", 1)
        log: list[Any] = []
        store.add_cell_listener(None, None, None, lambda _s, *a, log=log: log.append(a[:5]))
        store.add_invalid_cell_listener(None, None, None, lambda _s, *a, log=log: log.append(a))
        store.add_did_finish_transaction_listener(
            lambda s, log=log: log.append(s.get_transaction_changes())
        )
        with store.transaction():
            store.set_cell("t", "r", "c", cell)
            store.set_cell("t", "r", "c", cell)
        store.set_cell("t", "r", "c", 1)  # outside a transaction
        store.set_cell("t", "r", "c", 1)  # no change: finish listeners still run
        logs.append((log, store.get_json()))
    assert logs[1] == logs[0]
    assert logs[0][0]  # the listeners did see something


def test_plain_input_is_still_copied() -> None:
    """The plain fast path copies rows: changing the caller's dicts changes nothing."""
    row = {"a": 1}
    store = create_store().set_tables({"t": {"r": row}})
    row["a"] = 2
    assert store.get_cell("t", "r", "a") == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"t": {"r": {"a": float("inf")}}},
        {"t": {"r": {1: "x"}}},
        {"t": {"r": {"a": {1, 2}}}},
    ],
)
def test_plain_fast_path_falls_back_to_the_same_errors(bad: Any) -> None:
    with general_path(), pytest.raises((TypeError, ValueError)) as expected:
        GeneralStore().set_content((bad, {}))
    with pytest.raises(type(expected.value)) as actual:
        create_store().set_content((bad, {}))
    assert str(actual.value) == str(expected.value)
