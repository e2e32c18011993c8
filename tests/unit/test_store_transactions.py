"""Store transactions: nesting, Changes, rollback, exceptions, transaction listeners, log."""

from __future__ import annotations

from typing import Any

import pytest

from partywidget.model import DELETED
from partywidget.store import Store, create_store


@pytest.fixture
def store() -> Store:
    return create_store()


def changes_log(store: Store) -> list[Any]:
    log: list[Any] = []
    store.add_did_finish_transaction_listener(lambda s: log.append(s.get_transaction_changes()))
    return log


def test_transaction_with_actions_returns_result_and_batches_listeners(store: Store) -> None:
    calls: list[Any] = []
    store.add_cell_listener(None, None, None, lambda s, *a: calls.append(a[:5]))
    changes = changes_log(store)

    def actions() -> str:
        store.set_cell("t", "r", "c", 1)
        store.set_cell("t", "r", "c", 2)
        assert calls == []  # listeners wait for the end of the transaction
        return "result"

    assert store.transaction(actions) == "result"
    assert calls == [("t", "r", "c", 2, DELETED)]
    assert changes == [({"t": {"r": {"c": 2}}}, {}, 1)]


def test_context_manager_and_nesting(store: Store) -> None:
    changes = changes_log(store)
    with store.transaction() as inner:
        assert inner is store
        store.set_value("a", 1)
        with store.transaction():
            store.set_value("b", 2)
        store.transaction(lambda: store.set_value("c", 3))
        assert changes == []
    assert changes == [({}, {"a": 1, "b": 2, "c": 3}, 1)]


def test_start_and_finish_transaction(store: Store) -> None:
    changes = changes_log(store)
    assert store.start_transaction() is store
    store.set_cell("t", "r", "c", 1)
    store.start_transaction()
    store.del_cell("t", "r", "c")
    store.set_cell("t", "r2", "c", 2)
    assert store.finish_transaction() is store
    assert changes == []
    store.finish_transaction()
    assert changes == [({"t": {"r2": {"c": 2}}}, {}, 1)]
    store.finish_transaction()  # an extra finish is a no-op
    assert len(changes) == 1


@pytest.mark.parametrize(
    ("setup", "action", "expected"),
    [
        (
            lambda s: None,
            lambda s: s.set_cell("t", "r", "c", [1, {"a": None}]),
            ({"t": {"r": {"c": [1, {"a": None}]}}}, {}, 1),
        ),
        (
            lambda s: s.set_cell("t", "r", "c", 1),
            lambda s: s.del_cell("t", "r", "c"),
            ({"t": DELETED}, {}, 1),
        ),
        (
            lambda s: s.set_row("t", "r", {"a": 1, "b": 2}),
            lambda s: s.del_cell("t", "r", "a"),
            ({"t": {"r": {"a": DELETED}}}, {}, 1),
        ),
        (
            lambda s: s.set_table("t", {"r": {"a": 1}, "s": {"a": 2}}),
            lambda s: s.del_row("t", "r"),
            ({"t": {"r": DELETED}}, {}, 1),
        ),
        (
            lambda s: s.set_tables({"t": {"r": {"a": 1}}, "u": {"r": {"a": 1}}}),
            lambda s: s.del_table("u"),
            ({"u": DELETED}, {}, 1),
        ),
        (
            lambda s: s.set_tables({"t": {"r": {"a": 1}}}),
            lambda s: s.set_tables({"u": {"r": {"a": {"j": 1}}}}),
            ({"t": DELETED, "u": {"r": {"a": {"j": 1}}}}, {}, 1),
        ),
        (
            lambda s: s.set_values({"a": 1, "b": 2}),
            lambda s: s.set_values({"b": 3}),
            ({}, {"a": DELETED, "b": 3}, 1),
        ),
        (lambda s: s.set_value("a", 1), lambda s: s.del_values(), ({}, {"a": DELETED}, 1)),
        (lambda s: None, lambda s: s.set_partial_values({"x": [1]}), ({}, {"x": [1]}, 1)),
        (
            lambda s: s.set_cell("t", "r", "c", 1),
            lambda s: s.set_cell("t", "r", "c", 1),
            ({}, {}, 1),
        ),
        (lambda s: None, lambda s: s.add_row("t", {"a": 1}), ({"t": {"0": {"a": 1}}}, {}, 1)),
        (
            lambda s: s.set_row("t", "r", {"a": 1}),
            lambda s: s.apply_changes(({"t": {"r": {"a": DELETED, "b": 2}}}, {"v": True}, 1)),
            ({"t": {"r": {"a": DELETED, "b": 2}}}, {"v": True}, 1),
        ),
    ],
)
def test_transaction_changes_for_each_operation(
    store: Store, setup: Any, action: Any, expected: Any
) -> None:
    setup(store)
    changes = changes_log(store)
    action(store)
    assert changes == [expected]


def test_changes_outside_listeners_are_of_the_running_transaction(store: Store) -> None:
    with store.transaction():
        store.set_cell("t", "r", "c", 1)
        assert store.get_transaction_changes() == ({"t": {"r": {"c": 1}}}, {}, 1)
    assert store.get_transaction_changes() == ({}, {}, 1)


def test_do_rollback_restores_content(store: Store) -> None:
    store.set_cell("t", "r", "c", 1).set_value("v", "x")
    log: list[Any] = []
    store.add_cell_listener(None, None, None, lambda s, *a: log.append(("cell", *a[:5])))
    store.add_will_finish_transaction_listener(
        lambda s: log.append(("will", s.get_transaction_changes()))
    )
    store.add_did_finish_transaction_listener(
        lambda s: log.append(("did", s.get_transaction_changes()))
    )
    seen_by_rollback: list[Any] = []

    def do_rollback(s: Store) -> bool:
        seen_by_rollback.append(s.get_transaction_changes())
        return True

    def actions() -> None:
        store.set_cell("t", "r", "c", 2)
        store.set_cell("t", "r2", "c", 3)
        store.del_value("v")

    store.transaction(actions, do_rollback)
    assert store.get_content() == ({"t": {"r": {"c": 1}}}, {"v": "x"})
    assert seen_by_rollback == [({"t": {"r": {"c": 2}, "r2": {"c": 3}}}, {"v": DELETED}, 1)]
    # Finish listeners still run, and see no net change; no cell listener is called.
    assert log == [("will", ({}, {}, 1)), ("did", ({}, {}, 1))]


def test_do_rollback_via_context_manager(store: Store) -> None:
    with store.transaction(do_rollback=lambda s: True):
        store.set_cell("t", "r", "c", 1)
    assert store.get_tables() == {}


def test_rollback_of_json_cells_mirrors_tinybase(store: Store) -> None:
    # TinyBase 10.0.1 re-validates rolled-back JSON cells as (reserved) strings and so
    # cannot restore them: the new JSON cell stays and the old one is reported invalid.
    store.set_cell("t", "r", "j", {"a": 1})
    invalid: list[Any] = []
    store.add_invalid_cell_listener(None, None, None, lambda s, *a: invalid.append(a))
    store.transaction(lambda: store.set_cell("t", "r", "j", {"a": 2}), lambda s: True)
    assert store.get_cell("t", "r", "j") == {"a": 2}
    assert invalid == [("t", "r", "j", ['\ufffd{"a":1}'])]


def test_exception_in_with_block_rolls_back_and_propagates(store: Store) -> None:
    store.set_cell("t", "r", "c", 1)
    log: list[Any] = []
    store.add_cell_listener(None, None, None, lambda s, *a: log.append(a))
    store.add_did_finish_transaction_listener(lambda s: log.append("did"))
    with pytest.raises(KeyError), store.transaction():
        store.set_cell("t", "r", "c", 2)
        store.set_value("v", 1)
        raise KeyError("boom")
    assert store.get_content() == ({"t": {"r": {"c": 1}}}, {})
    assert log == []  # rolled back: no change listeners, no finish listeners
    store.set_cell("t", "r", "c", 3)  # the Store is usable afterwards
    assert store.get_cell("t", "r", "c") == 3


def test_exception_in_actions_rolls_back_outer_transaction_too(store: Store) -> None:
    def failing() -> None:
        store.set_cell("t", "r", "c", 1)
        raise ValueError("inner")

    with store.transaction():
        store.set_value("v", 1)
        with pytest.raises(ValueError):
            store.transaction(failing)
        store.set_value("w", 2)
    assert store.get_content() == ({}, {})


def test_listener_exception_propagates_after_finishing(store: Store) -> None:
    log: list[Any] = []

    def failing(*_: Any) -> None:
        raise RuntimeError("listener")

    store.add_cell_listener(None, None, None, failing)
    store.add_did_finish_transaction_listener(lambda s: log.append("did"))
    with pytest.raises(RuntimeError, match="listener"):
        store.set_cell("t", "r", "c", 1)
    assert store.get_cell("t", "r", "c") == 1  # committed: only a mutator error rolls back
    assert log == ["did"]
    assert store._transactions == 0


def test_mutator_listener_exception_rolls_back(store: Store) -> None:
    def failing(*_: Any) -> None:
        raise RuntimeError("mutator")

    store.add_cell_listener(None, None, None, failing, mutator=True)
    with pytest.raises(RuntimeError, match="mutator"):
        store.set_cell("t", "r", "c", 1)
    assert store.get_tables() == {}


def test_transaction_listeners_order(store: Store) -> None:
    log: list[Any] = []
    store.add_start_transaction_listener(lambda s: log.append("start"))
    store.add_will_finish_transaction_listener(lambda s: log.append("will"))
    store.add_did_finish_transaction_listener(lambda s: log.append("did"))
    store.add_cell_listener(None, None, None, lambda *a: log.append("cell"))
    store.add_cell_listener(None, None, None, lambda *a: log.append("mutator"), mutator=True)
    with store.transaction():
        log.append("body")
        store.set_cell("t", "r", "c", 1)
        with store.transaction():
            pass
    assert log == ["start", "body", "mutator", "will", "cell", "did"]
    log.clear()
    store.set_cell("t", "r", "c", 1)  # no change: finish listeners still run
    assert log == ["start", "will", "did"]


def test_setters_do_nothing_in_non_mutator_listeners(store: Store) -> None:
    results: list[Any] = []

    def listener(s: Store, *_: Any) -> None:
        s.set_value("nope", 1)
        results.append(s.add_row("t", {"c": 1}))
        results.append(s.transaction(lambda: "not run"))
        with s.transaction():
            s.set_value("nope2", 1)

    store.add_tables_listener(listener)
    store.set_cell("t", "r", "c", 1)
    assert results == [None, None]
    assert store.get_values() == {}
    assert store.get_row_ids("t") == ["r"]


def test_get_transaction_log(store: Store) -> None:
    store.set_row("t", "r", {"a": 1})
    logs: list[Any] = []
    store.add_did_finish_transaction_listener(lambda s: logs.append(s.get_transaction_log()))
    with store.transaction():
        store.set_cell("t", "r", "a", {"j": 1})
        store.set_cell("t", "s", "b", 2)
        store.set_cell("t", "r", "x", "\ufffc")
        store.set_value("v", 3)
        store.set_value("w", "\ufffc")
        store.set_value("tmp", 1)
        store.del_value("tmp")
    assert logs == [
        (
            True,
            True,
            {"t": {"r": {"a": [1, {"j": 1}]}, "s": {"b": [DELETED, 2]}}},
            {"t": {"r": {"x": ["\ufffc"]}}},
            {"v": [DELETED, 3]},
            {"w": ["\ufffc"]},
            {},
            {"t": {"s": 1}},
            {"t": {"s": {"b": 1}}},
            {"v": 1},
        )
    ]
