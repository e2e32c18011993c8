"""Store listeners: arguments, order, wildcards, mutators, call/del, ids and stats."""

from __future__ import annotations

from typing import Any

import pytest

from partywidget.model import DELETED
from partywidget.store import Store, create_store


def recorder(log: list[Any], name: str) -> Any:
    def listener(store: Store, *args: Any) -> None:
        assert isinstance(store, Store)
        resolved = []
        for arg in args:
            if callable(arg) and name.endswith("ids"):
                resolved.append(arg())
            elif callable(arg):
                resolved.append("fn")
            else:
                resolved.append(arg)
        log.append((name, *resolved))

    return listener


@pytest.fixture
def store() -> Store:
    return create_store()


def test_every_tabular_listener_kind_in_tinybase_order(store: Store) -> None:
    log: list[Any] = []
    store.add_has_tables_listener(recorder(log, "has_tables"))
    store.add_tables_listener(recorder(log, "tables"))
    store.add_table_ids_listener(recorder(log, "table_ids"))
    store.add_has_table_listener("t", recorder(log, "has_table"))
    store.add_table_listener("t", recorder(log, "table"))
    store.add_table_cell_ids_listener("t", recorder(log, "table_cell_ids"))
    store.add_has_table_cell_listener("t", "c", recorder(log, "has_table_cell"))
    store.add_row_count_listener("t", recorder(log, "row_count"))
    store.add_row_ids_listener("t", recorder(log, "row_ids"))
    store.add_sorted_row_ids_listener("t", "c", False, 0, None, recorder(log, "sorted"))
    store.add_has_row_listener("t", "r", recorder(log, "has_row"))
    store.add_row_listener("t", "r", recorder(log, "row"))
    store.add_cell_ids_listener("t", "r", recorder(log, "cell_ids"))
    store.add_has_cell_listener("t", "r", "c", recorder(log, "has_cell"))
    store.add_cell_listener("t", "r", "c", recorder(log, "cell"))
    store.set_cell("t", "r", "c", 1)
    assert log == [
        ("has_tables", True),
        ("table_ids", {"t": 1}),
        ("has_table", "t", True),
        ("table_cell_ids", "t", {"c": 1}),
        ("has_table_cell", "t", "c", True),
        ("row_count", "t", 1),
        ("row_ids", "t", {"r": 1}),
        ("has_row", "t", "r", True),
        ("sorted", "t", "c", False, 0, None, ["r"]),
        ("cell_ids", "t", "r", {"c": 1}),
        ("has_cell", "t", "r", "c", True),
        ("cell", "t", "r", "c", 1, DELETED, "fn"),
        ("row", "t", "r", "fn"),
        ("table", "t", "fn"),
        ("tables", "fn"),
    ]
    log.clear()
    store.set_cell("t", "r", "c", 2)
    assert log == [
        ("cell", "t", "r", "c", 2, 1, "fn"),
        ("row", "t", "r", "fn"),
        ("table", "t", "fn"),
        ("tables", "fn"),
    ]
    log.clear()
    store.del_tables()
    assert log == [
        ("has_tables", False),
        ("table_ids", {"t": -1}),
        ("has_table", "t", False),
        ("table_cell_ids", "t", {"c": -1}),
        ("has_table_cell", "t", "c", False),
        ("row_count", "t", 0),
        ("row_ids", "t", {"r": -1}),
        ("has_row", "t", "r", False),
        ("sorted", "t", "c", False, 0, None, []),
        ("cell_ids", "t", "r", {"c": -1}),
        ("has_cell", "t", "r", "c", False),
        ("cell", "t", "r", "c", DELETED, 2, "fn"),
        ("row", "t", "r", "fn"),
        ("table", "t", "fn"),
        ("tables", "fn"),
    ]


def test_every_values_listener_kind(store: Store) -> None:
    log: list[Any] = []
    store.add_has_values_listener(recorder(log, "has_values"))
    store.add_values_listener(recorder(log, "values"))
    store.add_value_ids_listener(recorder(log, "value_ids"))
    store.add_has_value_listener("v", recorder(log, "has_value"))
    store.add_value_listener("v", recorder(log, "value"))
    store.set_value("v", [1])
    store.set_value("v", "x")
    store.del_value("v")
    assert log == [
        ("has_values", True),
        ("value_ids", {"v": 1}),
        ("has_value", "v", True),
        ("value", "v", [1], DELETED, "fn"),
        ("values", "fn"),
        ("value", "v", "x", [1], "fn"),
        ("values", "fn"),
        ("has_values", False),
        ("value_ids", {"v": -1}),
        ("has_value", "v", False),
        ("value", "v", DELETED, "x", "fn"),
        ("values", "fn"),
    ]


def test_wildcard_order_and_specific_ids(store: Store) -> None:
    log: list[Any] = []
    for ids in [
        (None, None, None),
        (None, None, "c"),
        (None, "r", None),
        (None, "r", "c"),
        ("t", None, None),
        ("t", None, "c"),
        ("t", "r", None),
        ("t", "r", "c"),
        ("t", "r", "other"),
        ("u", None, None),
    ]:
        store.add_cell_listener(*ids, recorder(log, "/".join(i or "*" for i in ids)))
    store.set_cell("t", "r", "c", 1)
    assert [entry[0] for entry in log] == [
        "t/r/c",
        "t/r/*",
        "t/*/c",
        "t/*/*",
        "*/r/c",
        "*/r/*",
        "*/*/c",
        "*/*/*",
    ]


def test_listeners_with_same_path_run_in_registration_order(store: Store) -> None:
    log: list[Any] = []
    store.add_row_listener("t", "r", recorder(log, "first"))
    store.add_row_listener("t", "r", recorder(log, "second"))
    store.set_cell("t", "r", "c", 1)
    assert [entry[0] for entry in log] == ["first", "second"]


def test_get_cell_change_and_value_change(store: Store) -> None:
    store.set_cell("t", "r", "c", {"a": 1}).set_value("v", 1)
    seen: list[Any] = []

    def on_tables(s: Store, get_cell_change: Any) -> None:
        seen.append(get_cell_change("t", "r", "c"))
        seen.append(get_cell_change("t", "r", "unchanged"))
        seen.append(get_cell_change("t", "r", "new"))

    def on_values(s: Store, get_value_change: Any) -> None:
        seen.append(get_value_change("v"))
        seen.append(get_value_change("missing"))

    store.set_cell("t", "r", "unchanged", "u")
    store.add_tables_listener(on_tables)
    store.add_values_listener(on_values)
    with store.transaction():
        store.set_cell("t", "r", "c", [2])
        store.set_cell("t", "r", "new", 3)
        store.set_value("v", 2)
    assert seen == [
        (True, {"a": 1}, [2]),
        (False, "u", "u"),
        (True, DELETED, 3),
        (True, 1, 2),
        (False, DELETED, DELETED),
    ]


def test_invalid_listeners_get_all_refused_input(store: Store) -> None:
    log: list[Any] = []
    store.add_invalid_cell_listener("t", None, None, recorder(log, "invalid_cell"))
    store.add_invalid_value_listener(None, recorder(log, "invalid_value"))
    with store.transaction():
        store.set_cell("t", "r", "c", "\ufffc")
        store.set_cell("t", "r", "c", "\ufffd")
        store.set_cell("u", "r", "c", "\ufffc")
        store.set_value("v", "\ufffc")
    store.set_row("t", "r", "not a row")
    store.set_values([])
    assert log == [
        ("invalid_cell", "t", "r", "c", ["\ufffc", "\ufffd"]),
        ("invalid_value", "v", ["\ufffc"]),
        ("invalid_cell", "t", "r", None, [DELETED]),
        ("invalid_value", None, [DELETED]),
    ]


def test_mutator_listeners_run_first_and_their_changes_join(store: Store) -> None:
    log: list[Any] = []

    def mutator(s: Store, table_id: str, row_id: str, cell_id: str, new: Any, *_: Any) -> None:
        log.append(("mutator", new))
        s.set_cell(table_id, row_id, "doubled", new * 2)

    def late(s: Store, *_: Any) -> None:
        log.append(("late", s.get_row("t", "r")))
        s.set_cell("t", "r", "ignored", 1)  # non-mutators cannot change the Store

    store.add_cell_listener("t", None, "c", late)
    store.add_cell_listener("t", None, "c", mutator, mutator=True)
    store.add_did_finish_transaction_listener(
        lambda s: log.append(("changes", s.get_transaction_changes()))
    )
    store.set_cell("t", "r", "c", 2)
    assert log == [
        ("mutator", 2),
        ("late", {"c": 2, "doubled": 4}),
        ("changes", ({"t": {"r": {"c": 2, "doubled": 4}}}, {}, 1)),
    ]
    assert store.get_row("t", "r") == {"c": 2, "doubled": 4}


def test_sorted_row_ids_listener_only_fires_on_order_change(store: Store) -> None:
    store.set_table("t", {"a": {"n": 2}, "b": {"n": 1}})
    log: list[Any] = []
    store.add_sorted_row_ids_listener("t", "n", True, 0, 1, recorder(log, "sorted"))
    store.add_sorted_row_ids_listener({"tableId": "t", "cellId": "n"}, recorder(log, "sorted_args"))
    store.set_cell("t", "a", "n", 3)  # order unchanged
    store.set_cell("t", "b", "other", 1)  # a cell that is not sorted on
    assert log == []
    store.set_cell("t", "b", "n", 5)
    assert log == [
        ("sorted", "t", "n", True, 0, 1, ["b"]),
        ("sorted_args", "t", "n", False, 0, None, ["a", "b"]),
    ]


def test_call_listener_expands_wildcards(store: Store) -> None:
    store.set_tables({"t": {"r": {"c": 1, "d": 2}}, "u": {"s": {"c": 3}}})
    log: list[Any] = []
    cell_id = store.add_cell_listener(None, None, "c", recorder(log, "cell"))
    row_id = store.add_row_listener("u", None, recorder(log, "row"))
    has_id = store.add_has_row_listener("t", "missing", recorder(log, "has_row"))
    count_id = store.add_row_count_listener(None, recorder(log, "row_count"))
    assert store.call_listener(cell_id) is store
    store.call_listener(row_id).call_listener(has_id).call_listener(count_id)
    store.call_listener("no such listener")
    assert log == [
        ("cell", "t", "r", "c", 1, 1, None),
        ("cell", "u", "s", "c", 3, 3, None),
        ("row", "u", "s", None),
        ("has_row", "t", "missing", False),
        ("row_count", "t", None),
        ("row_count", "u", None),
    ]


def test_del_listener_and_id_reuse(store: Store) -> None:
    log: list[Any] = []
    first = store.add_tables_listener(recorder(log, "a"))
    second = store.add_values_listener(recorder(log, "b"))
    assert (first, second) == ("0", "1")
    assert store.del_listener(first) is store
    store.del_listener(first)  # deleting twice is harmless
    store.set_cell("t", "r", "c", 1)
    assert log == []
    assert store.add_cell_listener(None, None, None, recorder(log, "c")) == "0"
    assert store.add_start_transaction_listener(lambda s: None) == "2"


def test_listener_stats(store: Store) -> None:
    def noop(*_: Any) -> None:
        return None

    stats = store.get_listener_stats()
    assert set(stats.values()) == {0}
    ids = [
        store.add_cell_listener("t", "r", "c", noop),
        store.add_cell_listener(None, None, None, noop, mutator=True),
        store.add_row_listener("t", None, noop),
        store.add_has_table_cell_listener("t", "c", noop),
        store.add_invalid_cell_listener(None, None, None, noop),
        store.add_value_listener("v", noop),
        store.add_start_transaction_listener(noop),
        store.add_did_finish_transaction_listener(noop),
    ]
    stats = store.get_listener_stats()
    assert stats["cell"] == 2
    assert stats["row"] == 1
    assert stats["has_table_cell"] == 1
    assert stats["invalid_cell"] == 1
    assert stats["value"] == 1
    assert stats["transaction"] == 2
    assert stats["tables"] == 0
    for listener_id in ids:
        store.del_listener(listener_id)
    assert set(store.get_listener_stats().values()) == {0}


# Every kind of data listener: how many Ids its add_*_listener method takes.
KIND_ARITY = {
    "has_tables": 0,
    "tables": 0,
    "table_ids": 0,
    "has_table": 1,
    "table": 1,
    "table_cell_ids": 1,
    "has_table_cell": 2,
    "row_count": 1,
    "row_ids": 1,
    "has_row": 2,
    "row": 2,
    "cell_ids": 2,
    "has_cell": 3,
    "cell": 3,
    "invalid_cell": 3,
    "has_values": 0,
    "values": 0,
    "value_ids": 0,
    "has_value": 1,
    "value": 1,
    "invalid_value": 1,
}


@pytest.mark.parametrize("mutator", [False, True])
@pytest.mark.parametrize(("kind", "arity"), KIND_ARITY.items())
def test_every_kind_of_listener_is_counted_called_and_deleted(
    store: Store, kind: str, arity: int, mutator: bool
) -> None:
    log: list[Any] = []
    add = getattr(store, f"add_{kind}_listener")
    listener_id = add(*[None] * arity, recorder(log, kind), mutator)
    stats = store.get_listener_stats()
    assert stats[kind] == 1
    assert sum(stats.values()) == 1
    store.set_tables({"t": {"r": {"c": 1}}}).set_values({"v": 1})
    store.set_cell("t", "r", "c", "\ufffc").set_value("v", "\ufffc")  # refused: invalid
    assert log
    extras = 3 if kind in ("cell", "value") else 1  # new, old, get_change; else one
    assert all(entry[0] == kind and len(entry) == 1 + arity + extras for entry in log)
    if arity:
        with pytest.raises(TypeError):
            add(*[1.5] * arity, recorder(log, kind))
    store.del_listener(listener_id)
    assert sum(store.get_listener_stats().values()) == 0
    log.clear()
    store.del_tables().del_values()
    assert log == []


def test_listener_must_be_callable(store: Store) -> None:
    with pytest.raises(TypeError):
        store.add_tables_listener("not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.add_cell_listener(1.5, None, None, lambda *a: None)  # type: ignore[arg-type]


def test_listeners_added_or_deleted_during_a_call(store: Store) -> None:
    # As JavaScript's Set iteration in TinyBase: a listener added to a leaf being called is
    # called too (after the others); a deleted one is not called any more.
    log: list[str] = []
    later: list[str] = []

    def first(s: Store, *_: Any) -> None:
        log.append("first")
        if not later:
            later.append(s.add_cell_listener("t", "r", "c", lambda *a: log.append("added")))
            s.add_cell_listener("t", None, "c", lambda *a: log.append("added_wild"))
            s.del_listener(doomed)

    store.add_cell_listener("t", "r", "c", first)
    doomed = store.add_cell_listener("t", "r", "c", lambda *a: log.append("doomed"))
    store.add_cell_listener("t", None, "c", lambda *a: log.append("wild"))
    store.set_cell("t", "r", "c", 1)
    assert log == ["first", "added", "wild", "added_wild"]
