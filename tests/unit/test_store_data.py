"""Store data: getters, setters, JSON, row Ids, JavaScript semantics, Python input checks."""

from __future__ import annotations

import datetime
import decimal
import enum
import math
from typing import Any

import pytest

from partywidget.model import DELETED
from partywidget.store import Store, create_store


@pytest.fixture
def store() -> Store:
    return create_store()


def test_empty_store_getters(store: Store) -> None:
    assert store.get_content() == ({}, {})
    assert store.get_tables() == {}
    assert store.get_table_ids() == []
    assert store.get_table("t") == {}
    assert store.get_table_cell_ids("t") == []
    assert store.get_row_count("t") == 0
    assert store.get_row_ids("t") == []
    assert store.get_sorted_row_ids("t", "c") == []
    assert store.get_row("t", "r") == {}
    assert store.get_cell_ids("t", "r") == []
    assert store.get_cell("t", "r", "c") is None
    assert store.get_values() == {}
    assert store.get_value_ids() == []
    assert store.get_value("v") is None
    assert not store.has_tables()
    assert not store.has_table("t")
    assert not store.has_table_cell("t", "c")
    assert not store.has_row("t", "r")
    assert not store.has_cell("t", "r", "c")
    assert not store.has_values()
    assert not store.has_value("v")
    assert store.get_json() == "[{},{}]"
    assert store.get_tables_json() == "{}"
    assert store.get_values_json() == "{}"
    assert store.get_schema_json() == "[{},{}]"


def test_setters_are_chainable_and_getters_reflect_data(store: Store) -> None:
    result = (
        store.set_tables({"pets": {"fido": {"species": "dog", "legs": 4}}})
        .set_table("toys", {"ball": {"color": "red"}})
        .set_row("pets", "felix", {"species": "cat"})
        .set_partial_row("pets", "fido", {"sold": False})
        .set_cell("pets", "felix", "legs", 4.0)
        .set_values({"open": True})
        .set_partial_values({"employees": 3})
        .set_value("owner", None)
    )
    assert result is store
    assert store.get_tables() == {
        "pets": {
            "fido": {"species": "dog", "legs": 4, "sold": False},
            "felix": {"species": "cat", "legs": 4.0},
        },
        "toys": {"ball": {"color": "red"}},
    }
    assert store.get_table_ids() == ["pets", "toys"]
    assert store.get_table_cell_ids("pets") == ["species", "legs", "sold"]
    assert store.get_row_count("pets") == 2
    assert store.get_row_ids("pets") == ["fido", "felix"]
    assert store.get_cell_ids("pets", "fido") == ["species", "legs", "sold"]
    assert store.get_values() == {"open": True, "employees": 3, "owner": None}
    assert store.get_value_ids() == ["open", "employees", "owner"]
    assert store.has_table_cell("pets", "sold")
    assert store.has_cell("pets", "fido", "sold")
    assert store.has_value("owner")
    assert store.get_value("owner") is None


def test_setting_tables_replaces_and_table_row_replace(store: Store) -> None:
    store.set_tables({"t": {"r": {"a": 1, "b": 2}, "s": {"a": 1}}, "u": {"r": {"a": 1}}})
    store.set_tables({"t": {"r": {"b": 3}}})
    assert store.get_tables() == {"t": {"r": {"b": 3}}}
    store.set_table("t", {"x": {"c": 1}})
    assert store.get_tables() == {"t": {"x": {"c": 1}}}
    store.set_row("t", "x", {"d": 2})
    assert store.get_row("t", "x") == {"d": 2}


def test_deleters(store: Store) -> None:
    store.set_tables({"t": {"r": {"a": 1, "b": 2}, "s": {"a": 1}}, "u": {"r": {"a": 1}}})
    store.set_values({"a": 1, "b": 2})
    assert store.del_cell("t", "r", "a") is store
    assert store.get_row("t", "r") == {"b": 2}
    store.del_cell("t", "r", "b")
    assert not store.has_row("t", "r")
    store.del_row("t", "s")
    assert not store.has_table("t")
    assert store.get_table_cell_ids("t") == []
    store.del_table("u").del_value("a")
    assert store.get_content() == ({}, {"b": 2})
    store.set_cell("t", "r", "c", 1).del_tables().del_values()
    assert store.get_content() == ({}, {})
    # Deleting what does not exist is a no-op.
    store.del_table("x").del_row("x", "y").del_cell("x", "y", "z").del_value("x")
    assert store.get_content() == ({}, {})


def test_table_cell_ids_count_across_rows(store: Store) -> None:
    store.set_row("t", "r1", {"a": 1, "b": 1}).set_row("t", "r2", {"a": 1})
    assert store.get_table_cell_ids("t") == ["a", "b"]
    store.del_cell("t", "r1", "a")
    assert store.get_table_cell_ids("t") == ["a", "b"]
    store.del_row("t", "r2")
    assert store.get_table_cell_ids("t") == ["b"]
    seen: list[tuple[str, int]] = []
    store.for_each_table_cell("t", lambda cell_id, count: seen.append((cell_id, count)))
    assert seen == [("b", 1)]


def test_integer_like_ids_are_ordered_like_javascript_objects(store: Store) -> None:
    store.set_table("t", {"b": {"x": 1}, "10": {"x": 1}, "2": {"x": 1}, "02": {"x": 1}})
    assert store.get_row_ids("t") == ["2", "10", "b", "02"]
    store.set_row("t", "r", {"z": 1, "1": 1})
    assert store.get_cell_ids("t", "r") == ["1", "z"]


def test_add_row_ids_and_reuse(store: Store) -> None:
    assert store.add_row("t", {"a": 1}) == "0"
    assert store.add_row("t", {"a": 2}) == "1"
    store.set_row("t", "2", {"a": 3})
    assert store.add_row("t", {"a": 4}) == "3"  # "2" is taken: skipped
    store.del_row("t", "0")
    assert store.add_row("t", {"a": 5}, reuse_row_ids=False) == "4"
    assert store.add_row("t", {"a": 6}) == "0"  # released id reused
    assert store.add_row("t", {}) is None
    assert store.add_row("t", "not a row") is None
    store.del_table("t")
    assert store.add_row("t", {"a": 7}) == "0"  # a new table starts over


def test_set_cell_and_value_mappers(store: Store) -> None:
    store.set_cell("t", "r", "n", lambda old: (old or 0) + 1)
    store.set_cell("t", "r", "n", lambda old: old + 1)
    store.set_value("v", lambda old: [old])
    store.set_value("v", lambda old: [*old, 1])
    assert store.get_cell("t", "r", "n") == 2
    assert store.get_value("v") == [None, 1]


def test_json_cells_are_copied_in_and_out(store: Store) -> None:
    cell: dict[str, Any] = {"list": [1, 2], "nested": {"x": None}}
    store.set_cell("t", "r", "c", cell)
    cell["list"].append(3)
    out = store.get_cell("t", "r", "c")
    assert out == {"list": [1, 2], "nested": {"x": None}}
    out["list"].append(4)
    assert store.get_cell("t", "r", "c") == {"list": [1, 2], "nested": {"x": None}}
    assert store.get_tables()["t"]["r"]["c"] is not store.get_tables()["t"]["r"]["c"]
    value = [1, {"a": True}]
    store.set_value("v", value)
    value.append(2)
    assert store.get_value("v") == [1, {"a": True}]
    store.set_cell("t", "r", "tuple", (1, 2))
    assert store.get_cell("t", "r", "tuple") == [1, 2]


def test_json_cells_are_stored_encoded_like_tinybase(store: Store) -> None:
    store.set_cell("t", "r", "c", {"b": 1, "a": [1.0, "é"]}).set_value("v", [])
    assert store.get_tables_json() == '{"t":{"r":{"c":"\ufffd{\\"b\\":1,\\"a\\":[1,\\"é\\"]}"}}}'
    assert store.get_values_json() == '{"v":"\ufffd[]"}'
    assert store.get_json() == "[" + store.get_tables_json() + "," + store.get_values_json() + "]"


def test_json_round_trip_through_set_json(store: Store) -> None:
    store.set_cell("t", "r", "c", {"x": [1, 2]}).set_cell("t", "r", "n", 1.5)
    store.set_value("v", {"y": None})
    other = create_store().set_json(store.get_json())
    assert other.get_content() == store.get_content()
    assert other.get_json() == store.get_json()
    only_tables = create_store().set_tables_json(store.get_tables_json())
    assert only_tables.get_tables() == store.get_tables()
    only_values = create_store().set_values_json(store.get_values_json())
    assert only_values.get_values() == store.get_values()


def test_set_json_ignores_garbage_and_accepts_tables_alone(store: Store) -> None:
    store.set_json("not json").set_tables_json("{").set_values_json("NaN")
    assert store.get_content() == ({}, {})
    store.set_json('{"t":{"r":{"c":1}}}')
    assert store.get_tables() == {"t": {"r": {"c": 1}}}
    store.set_json("[{},{}]")
    assert store.get_content() == ({}, {})


def test_reserved_strings_are_refused(store: Store) -> None:
    store.set_cell("t", "r", "c", "\ufffc").set_cell("t", "r", "d", "\ufffd{}")
    store.set_value("v", "\ufffd[1]")
    assert store.get_content() == ({}, {})
    store.set_cell("t", "r", "ok", "a\ufffd")
    assert store.get_cell("t", "r", "ok") == "a\ufffd"


def test_set_content_and_get_content(store: Store) -> None:
    store.set_content(({"t": {"r": {"c": 1}}}, {"v": 2}))
    assert store.get_content() == ({"t": {"r": {"c": 1}}}, {"v": 2})
    store.set_content([{}, {"w": 3}])
    assert store.get_content() == ({}, {"w": 3})
    store.set_content(lambda: [{"t": {"r": {"c": 2}}}, {}])
    assert store.get_content() == ({"t": {"r": {"c": 2}}}, {})
    store.set_content("not content")
    assert store.get_content() == ({"t": {"r": {"c": 2}}}, {})


def test_apply_changes_with_deleted(store: Store) -> None:
    store.set_tables({"t": {"r": {"a": 1, "b": 2}, "s": {"a": 1}}, "u": {"r": {"a": 1}}})
    store.set_values({"v": 1, "w": 2})
    changes = (
        {"t": {"r": {"a": DELETED, "c": [1]}, "s": DELETED, "n": {"x": 1}}, "u": DELETED},
        {"v": DELETED, "z": {"k": 1}},
        1,
    )
    assert store.apply_changes(changes) is store
    assert store.get_content() == (
        {"t": {"r": {"b": 2, "c": [1]}, "n": {"x": 1}}},
        {"w": 2, "z": {"k": 1}},
    )
    store.apply_changes([{}, {}, 1])
    with pytest.raises(TypeError):
        store.apply_changes(({"t": "row"}, {}, 1))
    with pytest.raises(TypeError):
        store.apply_changes("nope")  # type: ignore[arg-type]


def test_javascript_equality_semantics(store: Store) -> None:
    changes: list[object] = []
    store.add_did_finish_transaction_listener(lambda s: changes.append(s.get_transaction_changes()))
    store.set_cell("t", "r", "c", 4)
    store.set_cell("t", "r", "c", 4.0)  # equal in JavaScript: no change
    store.set_cell("t", "r", "c", True)  # true !== 4
    store.set_cell("t", "r", "b", 1)
    store.set_cell("t", "r", "b", True)  # true !== 1
    store.set_cell("t", "r", "j", {"a": 1, "b": 2})
    store.set_cell("t", "r", "j", {"a": 1, "b": 2})  # same JSON: no change
    store.set_cell("t", "r", "j", {"b": 2, "a": 1})  # different JSON text: a change
    assert changes == [
        ({"t": {"r": {"c": 4}}}, {}, 1),
        ({}, {}, 1),
        ({"t": {"r": {"c": True}}}, {}, 1),
        ({"t": {"r": {"b": 1}}}, {}, 1),
        ({"t": {"r": {"b": True}}}, {}, 1),
        ({"t": {"r": {"j": {"a": 1, "b": 2}}}}, {}, 1),
        ({}, {}, 1),
        ({"t": {"r": {"j": {"b": 2, "a": 1}}}}, {}, 1),
    ]


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({1, 2}, TypeError),
        (b"bytes", TypeError),
        (datetime.datetime(2020, 1, 1), TypeError),
        (decimal.Decimal("1.5"), TypeError),
        (1j, TypeError),
        (object(), TypeError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        (10**400, ValueError),
        ({1: "non-str key"}, TypeError),
        ({"nested": [1, {"deep": {2, 3}}]}, TypeError),
        ([math.nan], ValueError),
    ],
)
def test_unsupported_python_values_raise_before_any_change(
    store: Store, bad: object, error: type[Exception]
) -> None:
    store.set_cell("t", "r", "c", "keep")
    calls: list[object] = []
    store.add_tables_listener(lambda *a: calls.append(a))
    store.add_invalid_cell_listener(None, None, None, lambda *a: calls.append(a))
    with pytest.raises(error, match=r"'t'.*'r'.*'bad'"):
        store.set_cell("t", "r", "bad", bad)
    with pytest.raises(error, match="'bad'"):
        store.set_row("t", "r", {"ok": 1, "bad": bad})
    with pytest.raises(error):
        store.set_tables({"t": {"r": {"ok": 1}}, "u": {"r": {"bad": bad}}})
    with pytest.raises(error, match="'bad'"):
        store.set_values({"ok": 1, "bad": bad})
    with pytest.raises(error):
        store.set_value("bad", bad)
    with pytest.raises(error):
        store.add_row("t", {"bad": bad})
    with pytest.raises(error):
        store.apply_changes(({"t": {"r": {"bad": bad}}}, {}, 1))
    with pytest.raises(error):
        store.set_content(({"t": {"r": {"bad": bad}}}, {}))
    with pytest.raises(error):
        store.set_cell("t", "r", "bad", lambda old: bad)
    assert store.get_content() == ({"t": {"r": {"c": "keep"}}}, {})
    assert calls == []
    assert store._transactions == 0


def test_numeric_subclasses_are_normalized(store: Store) -> None:
    store.set_cell("t", "r", "c", Color.RED)
    cell = store.get_cell("t", "r", "c")
    assert cell == 1 and type(cell) is int
    store.set_value("v", {"k": Color.RED})
    assert store.get_values_json() == '{"v":"\ufffd{\\"k\\":1}"}'


def test_ids_must_be_strings(store: Store) -> None:
    with pytest.raises(TypeError):
        store.set_cell(None, "r", "c", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.set_row("t", ("r",), {"c": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.set_row("t", "r", {1: 1})
    store.set_cell("t", 5, "c", 1)  # type: ignore[arg-type]
    assert store.get_row_ids("t") == ["5"]


def test_get_sorted_row_ids(store: Store) -> None:
    store.set_table(
        "pets",
        {
            "fido": {"species": "dog", "price": 5},
            "felix": {"species": "cat", "price": 4},
            "cujo": {"species": "dog"},
            "rex": {"species": "dog", "price": 10},
        },
    )
    assert store.get_sorted_row_ids("pets", "price") == ["cujo", "felix", "fido", "rex"]
    assert store.get_sorted_row_ids("pets", "price", descending=True) == [
        "rex",
        "fido",
        "felix",
        "cujo",
    ]
    assert store.get_sorted_row_ids("pets", "price", offset=1, limit=2) == ["felix", "fido"]
    assert store.get_sorted_row_ids("pets") == ["cujo", "felix", "fido", "rex"]
    assert store.get_sorted_row_ids({"tableId": "pets", "cellId": "species", "limit": 1}) == [
        "felix"
    ]
    by_length = store.get_sorted_row_ids(
        "pets", sorter=lambda a, b: len(a) - len(b), descending=True
    )
    assert by_length == ["felix", "fido", "cujo", "rex"]


def test_for_each_methods(store: Store) -> None:
    store.set_tables({"t": {"r": {"a": 1, "j": [1]}}, "u": {"s": {"b": 2}}}).set_values({"v": 3})
    seen: list[object] = []
    store.for_each_table(
        lambda table_id, for_each_row: for_each_row(
            lambda row_id, for_each_cell: for_each_cell(
                lambda cell_id, cell: seen.append((table_id, row_id, cell_id, cell))
            )
        )
    )
    assert seen == [("t", "r", "a", 1), ("t", "r", "j", [1]), ("u", "s", "b", 2)]
    seen.clear()
    store.for_each_row("t", lambda row_id, for_each_cell: seen.append(row_id))
    store.for_each_cell("t", "r", lambda cell_id, cell: seen.append(cell_id))
    store.for_each_value(lambda value_id, value: seen.append((value_id, value)))
    assert seen == ["r", "a", "j", ("v", 3)]


def test_repr_and_create_store() -> None:
    store = create_store().set_cell("t", "r", "c", 1)
    assert isinstance(store, Store)
    assert repr(store) == "<Store tables=1 values=0>"
    assert create_store() is not create_store()
