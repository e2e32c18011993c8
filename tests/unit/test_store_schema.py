"""Schemas as in TinyBase 10: validation of schemas, defaults, enum, allowNull, required."""

from __future__ import annotations

import json
from typing import Any

import pytest

from partywidget.model import DELETED
from partywidget.store import Store, create_store


def invalid_cells(store: Store) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    store.add_invalid_cell_listener(None, None, None, lambda s, *a: calls.append(a))
    return calls


def invalid_values(store: Store) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    store.add_invalid_value_listener(None, lambda s, *a: calls.append(a))
    return calls


def test_schema_json_getters_and_has_schema() -> None:
    store = create_store()
    assert not store.has_tables_schema() and not store.has_values_schema()
    store.set_schema(
        {
            "t": {
                "n": {"type": "number", "default": 1},
                "j": {"type": "object", "default": {"a": 1}},
            }
        },
        {"v": {"type": "string", "allowNull": True, "default": None}},
    )
    assert store.has_tables_schema() and store.has_values_schema()
    assert json.loads(store.get_tables_schema_json()) == {
        "t": {"n": {"type": "number", "default": 1}, "j": {"type": "object", "default": {"a": 1}}}
    }
    assert json.loads(store.get_values_schema_json()) == {
        "v": {"type": "string", "allowNull": True, "default": None}
    }
    assert store.get_schema_json() == (
        "[" + store.get_tables_schema_json() + "," + store.get_values_schema_json() + "]"
    )
    store.del_tables_schema()
    assert store.get_tables_schema_json() == "{}" and not store.has_tables_schema()
    store.del_schema()
    assert store.get_schema_json() == "[{},{}]" and not store.has_values_schema()


@pytest.mark.parametrize(
    ("cell_schema", "kept"),
    [
        ({"type": "string"}, {"type": "string"}),
        ({"type": ["string", "number"]}, {"type": ["string", "number"]}),
        ({"type": "string", "junk": 1}, {"type": "string"}),
        ({"type": "date"}, None),
        ({"type": []}, None),
        ({"type": "null"}, None),
        ({}, None),
        ("string", None),
        ({"enum": ["a", 1, True]}, {"enum": ["a", 1, True]}),
        ({"enum": ["a"], "type": "string"}, None),
        ({"enum": []}, None),
        ({"enum": [None]}, None),
        ({"enum": [[1]]}, None),
        ({"enum": ["\ufffc"]}, None),
        ({"type": "number", "default": "x"}, {"type": "number"}),
        ({"type": "number", "default": None}, None),
        (
            {"type": "number", "default": None, "allowNull": 1},
            {"type": "number", "default": None, "allowNull": 1},
        ),
        ({"type": ["number", "null"], "allowNull": True}, None),
        ({"enum": ["a", "b"], "default": "c"}, {"enum": ["a", "b"]}),
        ({"enum": [1], "default": True}, {"enum": [1]}),
        ({"type": "string", "default": "\ufffd"}, {"type": "string"}),
        ({"type": "array", "default": [1]}, {"type": "array", "default": [1]}),
        ({"type": "boolean", "required": "yes"}, {"type": "boolean", "required": "yes"}),
    ],
)
def test_cell_schema_validation(cell_schema: Any, kept: Any) -> None:
    store = create_store().set_tables_schema({"t": {"c": cell_schema, "other": {"type": "string"}}})
    schema = json.loads(store.get_tables_schema_json())
    assert schema["t"].get("c") == kept
    assert schema["t"]["other"] == {"type": "string"}


def test_invalid_whole_schema_is_ignored() -> None:
    store = create_store().set_tables_schema({"t": {"c": {"type": "string"}}})
    bad_schemas: list[Any] = [{}, {"t": {}}, {"t": {"c": {"type": "bad"}}}, [], "schema", None]
    for bad in bad_schemas:
        store.set_tables_schema(bad)
    assert json.loads(store.get_tables_schema_json()) == {"t": {"c": {"type": "string"}}}
    store.set_values_schema({"v": {"type": "number"}})
    store.set_values_schema({"v": {"type": "bad"}})
    assert json.loads(store.get_values_schema_json()) == {"v": {"type": "number"}}
    with pytest.raises(TypeError):
        store.set_tables_schema({"t": {"c": {"type": "string", "default": {1, 2}}}})


def test_type_checks_and_defaults_fill_new_rows() -> None:
    store = create_store().set_tables_schema(
        {"t": {"n": {"type": "number", "default": 5}, "s": {"type": "string"}}}
    )
    invalid = invalid_cells(store)
    store.set_row("t", "r", {"s": "x"})
    assert store.get_row("t", "r") == {"s": "x", "n": 5}
    store.set_row("t", "r2", {"n": "bad", "s": "y", "extra": 1})
    assert store.get_row("t", "r2") == {"n": 5, "s": "y"}
    store.set_cell("t", "r3", "s", "z")
    assert store.get_row("t", "r3") == {"s": "z", "n": 5}
    store.set_cell("t", "r3", "n", "still bad")
    store.set_cell("u", "r", "s", "z")  # no such table in the schema
    assert not store.has_table("u")
    assert invalid == [
        ("t", "r2", "n", ["bad"]),
        ("t", "r2", "extra", [1]),
        ("t", "r3", "n", ["still bad"]),
        ("u", "r", "s", ["z"]),
    ]
    # The invalid cell is dropped; the default alone still makes a valid row.
    assert store.add_row("t", {"s": 1}) == "0"
    assert store.get_row("t", "0") == {"n": 5}
    assert invalid[-1] == ("t", None, "s", [1])


def test_missing_non_defaulted_cells_are_reported() -> None:
    store = create_store().set_tables_schema(
        {"t": {"a": {"type": "string"}, "b": {"type": "string"}}}
    )
    invalid = invalid_cells(store)
    store.set_row("t", "r", {"a": "x"})
    assert store.get_row("t", "r") == {"a": "x"}
    assert invalid == [("t", "r", "b", [DELETED])]


def test_required_cells() -> None:
    store = create_store().set_tables_schema(
        {"t": {"q": {"type": "boolean", "required": True}, "o": {"type": "number"}}}
    )
    invalid = invalid_cells(store)
    store.set_row("t", "r", {"o": 1})
    assert not store.has_row("t", "r")
    store.set_row("t", "r", {"q": "not bool", "o": 1})
    assert not store.has_row("t", "r")
    store.set_row("t", "r", {"q": True})
    assert store.get_row("t", "r") == {"q": True}
    # set_partial_row and set_cell skip the required check, as TinyBase.
    store.set_cell("t", "r2", "o", 2)
    assert store.get_row("t", "r2") == {"o": 2}
    assert invalid[0] == ("t", "r", "q", [DELETED])


def test_enum_and_allow_null() -> None:
    store = create_store().set_tables_schema(
        {
            "t": {
                "e": {"enum": ["a", "b", 1], "default": "b"},
                "n": {"type": "number", "allowNull": True},
            }
        }
    )
    invalid = invalid_cells(store)
    store.set_row("t", "r", {"e": "a", "n": None})
    assert store.get_row("t", "r") == {"e": "a", "n": None}
    store.set_cell("t", "r", "e", 1)
    assert store.get_cell("t", "r", "e") == 1
    store.set_cell("t", "r", "e", True)  # True is not 1
    store.set_cell("t", "r", "e", "c")
    assert store.get_cell("t", "r", "e") == "b"  # an invalid cell falls back to the default
    store.set_cell("t", "r", "n", "x")
    assert store.get_cell("t", "r", "n") is None
    assert invalid == [("t", "r", "e", [True]), ("t", "r", "e", ["c"]), ("t", "r", "n", ["x"])]


def test_null_refused_without_allow_null() -> None:
    store = create_store().set_tables_schema({"t": {"s": {"type": "string", "default": "d"}}})
    invalid = invalid_cells(store)
    store.set_cell("t", "r", "s", None)
    assert store.get_cell("t", "r", "s") == "d"
    assert invalid == [("t", "r", "s", [None])]


def test_json_cell_types() -> None:
    store = create_store().set_tables_schema(
        {"t": {"o": {"type": "object"}, "a": {"type": "array"}, "x": {"type": ["object", "array"]}}}
    )
    store.set_row("t", "r", {"o": {"k": 1}, "a": [1], "x": [2]})
    assert store.get_row("t", "r") == {"o": {"k": 1}, "a": [1], "x": [2]}
    store.set_cell("t", "r", "o", [1]).set_cell("t", "r", "a", {"k": 1})
    assert store.get_row("t", "r") == {"o": {"k": 1}, "a": [1], "x": [2]}


def test_json_default_is_reported_invalid_like_tinybase() -> None:
    # TinyBase 10.0.1 re-validates the (encoded) JSON default and reports it as invalid,
    # yet still stores it. We mirror that quirk.
    store = create_store().set_tables_schema(
        {"t": {"j": {"type": "object", "default": {"z": 1}}, "s": {"type": "string"}}}
    )
    invalid = invalid_cells(store)
    store.set_row("t", "r", {"s": "x"})
    assert store.get_row("t", "r") == {"s": "x", "j": {"z": 1}}
    assert invalid == [("t", "r", "j", ['\ufffd{"z":1}'])]


def test_delete_with_defaults_and_force_del() -> None:
    store = create_store().set_tables_schema(
        {"t": {"a": {"type": "number", "default": 1}, "b": {"type": "string"}}}
    )
    store.set_row("t", "r", {"a": 2, "b": "x"})
    store.del_cell("t", "r", "a")
    assert store.get_row("t", "r") == {"a": 1, "b": "x"}  # reset to its default
    store.del_cell("t", "r", "b")
    assert store.get_row("t", "r") == {"a": 1}
    store.set_cell("t", "r", "b", "y").del_cell("t", "r", "a", force_del=True)
    assert not store.has_row("t", "r")  # force-deleting a defaulted cell drops the row


def test_schema_is_applied_to_existing_data() -> None:
    store = create_store()
    store.set_tables({"t": {"r": {"a": 1, "b": "x"}, "s": {"a": "y"}}, "u": {"r": {"a": 1}}})
    store.set_values({"a": 1, "b": "x"})
    store.set_tables_schema(
        {"t": {"a": {"type": "number"}, "c": {"type": "string", "default": "d"}}}
    )
    assert store.get_tables() == {"t": {"r": {"a": 1, "c": "d"}, "s": {"c": "d"}}}
    store.set_values_schema({"a": {"type": "string", "default": "q"}, "c": {"type": "number"}})
    assert store.get_values() == {"a": "q"}


def test_values_schema_defaults_required_and_deletes() -> None:
    store = create_store()
    invalid = invalid_values(store)
    store.set_values_schema(
        {"d": {"type": "number", "default": 0}, "r": {"type": "string", "required": True}}
    )
    # Re-applying the (empty) values fails: r is required. So nothing is defaulted yet.
    assert store.get_values() == {}
    store.set_values({"d": 5})
    assert store.get_values() == {}
    store.set_values({"d": 5, "r": "x"})
    assert store.get_values() == {"d": 5, "r": "x"}
    store.del_value("d")
    assert store.get_values() == {"d": 0, "r": "x"}
    store.del_values()
    assert store.get_values() == {"d": 0}
    store.set_value("nope", 1).set_value("r", None)
    assert store.get_values() == {"d": 0}
    assert invalid == [
        ("r", [DELETED]),  # set_values_schema re-applies the (empty) values
        ("r", [DELETED]),
        ("nope", [1]),
        ("r", [None]),
    ]


def test_set_values_schema_on_empty_values_reports_missing_values() -> None:
    store = create_store()
    invalid = invalid_values(store)
    store.set_values_schema({"v": {"type": "number"}})
    # The missing value, then the empty values object itself (no Id: None).
    assert invalid == [("v", [DELETED]), (None, [DELETED])]
    assert store.get_values() == {}
