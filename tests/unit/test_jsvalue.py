"""JavaScript value semantics, pinned with plain data and checked against real TinyBase."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Callable, Iterator
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partywidget import changes, codec, jsvalue
from partywidget.jsvalue import (
    DELETED_MARKER,
    JSON_MARKER,
    cells_equal,
    is_array_index,
    js_int,
    js_key_order,
    js_less,
    js_number,
    js_number_str,
    js_string,
    js_to_number,
    js_truthy,
    strict_equal,
)
from partywidget.model import DELETED
from partywidget.store import _cells, _js

ROOT = Path(__file__).resolve().parents[2]


def test_markers_are_tinybases_reserved_strings() -> None:
    assert DELETED_MARKER == "\ufffc"  # TinyBase's UNDEFINED
    assert JSON_MARKER == "\ufffd"  # TinyBase's JSON_PREFIX


def test_other_modules_reexport_the_one_implementation() -> None:
    assert codec.DELETED_MARKER is jsvalue.DELETED_MARKER
    assert codec.JSON_MARKER is jsvalue.JSON_MARKER
    assert codec.js_key_order is jsvalue.js_key_order
    assert changes.cells_equal is jsvalue.cells_equal
    assert _cells.JSON_PREFIX is JSON_MARKER and _cells.UNDEFINED_MARKER is DELETED_MARKER
    assert _cells.js_dumps is codec.js_dumps
    assert _js.js_keys is js_key_order and _js.js_truthy is js_truthy


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0, "0"),
        (-0.0, "0"),
        (4.0, "4"),
        (-7, "-7"),
        (0.1, "0.1"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (123456789012345680000.0, "123456789012345680000"),
        (2**53 + 1, "9007199254740992"),
        (5e-324, "5e-324"),
        (-1.5e300, "-1.5e+300"),
    ],
)
def test_number_text(number: float, text: str) -> None:
    assert js_number_str(number) == text
    assert js_number(number) == text


def test_string_of_non_finite_numbers_but_no_json_text() -> None:
    assert js_number_str(math.nan) == "NaN"
    assert js_number_str(math.inf) == "Infinity"
    assert js_number_str(-math.inf) == "-Infinity"
    for bad in (math.nan, math.inf, 10**400):
        with pytest.raises(ValueError):
            js_number(bad)
    with pytest.raises(TypeError):
        js_number(True)


def test_codec_number_errors_stay_codec_errors() -> None:
    with pytest.raises(codec.CodecError):
        codec.js_number(math.nan)


def test_safe_int_parsing() -> None:
    assert js_int("9007199254740992") == 2**53
    assert js_int("-9007199254740992") == -(2**53)
    big = js_int("9007199254740993")
    assert big.__class__ is float and big == 2.0**53
    assert js_int("1" + "0" * 400) == math.inf


# --------------------------------------------------------------------------- key order


def test_key_order_puts_array_indices_first() -> None:
    keys = ["b", "10", "2", "01", "-1", "1.5", "0", "a", "4294967294", "4294967295", "٣"]
    assert js_key_order(keys) == [
        "0",
        "2",
        "10",
        "4294967294",
        "b",
        "01",
        "-1",
        "1.5",
        "a",
        "4294967295",
        "٣",
    ]
    assert js_key_order({"x": 1, "1": 2}) == ["1", "x"]
    assert not is_array_index("")
    assert not is_array_index("00")
    assert is_array_index("0")


# --------------------------------------------------------------------------- truthiness


@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        ([], True),
        ({}, True),
        ("0", True),
        (-1, True),
        (0.5, True),
        (math.inf, True),
        (math.nan, False),
        (0, False),
        (0.0, False),
        (-0.0, False),
        ("", False),
        (None, False),
        (False, False),
        (DELETED, False),
    ],
)
def test_truthiness(value: Any, truthy: bool) -> None:
    assert js_truthy(value) is truthy


# --------------------------------------------------------------------------- equality


def test_strict_equal_on_stored_scalars() -> None:
    assert strict_equal(4, 4.0)
    assert strict_equal(0, -0.0)
    assert not strict_equal(True, 1)
    assert not strict_equal(0, False)
    assert not strict_equal(math.nan, math.nan)
    assert not strict_equal("1", 1)


class _Num(IntEnum):
    FOUR = 4


EQUAL = [
    (4, 4.0),
    (0, -0.0),
    ("x", "x"),
    (None, None),
    (True, True),
    (DELETED, DELETED),
    (2**53 + 1, 2**53),  # the same double in JavaScript
    (2**53 + 1, 2.0**53),
    ({}, {}),
    ([], []),
    ({"a": 1, "b": [1, {"c": None}]}, {"a": 1.0, "b": [1, {"c": None}]}),
    ({"1": 0, "0": 0}, {"0": 0, "1": 0}),  # index keys are ordered numerically
    ({"x": 0, "1": 0}, {"1": 0, "x": 0}),
    ([4, -0.0], [4.0, 0]),
    ((1, 2), [1, 2]),
    (_Num.FOUR, 4),
]

DIFFERENT = [
    (True, 1),
    (False, 0),
    ("1", 1),
    (None, 0),
    (None, DELETED),
    (None, ""),
    (math.nan, math.nan),  # not a cell: TinyBase ignores it
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # different JSON text
    ([True], [1]),
    ({"a": False}, {"a": 0}),
    ([], {}),
    ([1, 2], [2, 1]),
    ({"a": 1}, {"a": 1, "b": 2}),
    ("\ufffd{}", {}),  # a reserved string is not an encoded cell here
    ({"a": [1]}, {"a": [1, 2]}),
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_cells_equal(a: Any, b: Any) -> None:
    assert cells_equal(a, b)
    assert cells_equal(b, a)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_cells_differ(a: Any, b: Any) -> None:
    assert not cells_equal(a, b)
    assert not cells_equal(b, a)


def test_json_cells_equal_iff_their_json_text_is() -> None:
    """TinyBase stores object cells as JSON text and compares that text."""
    pairs = [(a, b) for a, b in EQUAL + DIFFERENT if isinstance(a, dict | list)]
    for a, b in pairs:
        if isinstance(b, dict | list):
            assert cells_equal(a, b) is (codec.js_dumps(a) == codec.js_dumps(b)), (a, b)


# --------------------------------------------------------------------------- conversions


def test_string_and_number_conversions() -> None:
    assert js_string([1, None, "a", [True, DELETED]]) == "1,,a,true,"
    assert js_string({"a": 1}) == "[object Object]"
    assert js_string(None) == "null"
    assert js_string(1e21) == "1e+21"
    assert js_to_number(" 0x1F\n") == 31.0
    assert js_to_number("") == 0.0
    assert js_to_number("-Infinity") == -math.inf
    assert math.isnan(js_to_number("1e"))
    assert js_to_number([" 5 "]) == 5.0
    assert math.isnan(js_to_number({}))
    assert math.isnan(js_to_number(DELETED))


def test_less_than() -> None:
    assert js_less("B", "a")
    assert js_less("\uffff", "\U0001f600") is False  # UTF-16: 0xFFFF > 0xD83D
    assert js_less(2, 10)
    assert js_less("10", 9) is False
    assert js_less([1, 2], "1,3")
    assert js_less(None, 1)
    assert not js_less(math.nan, 1) and not js_less(1, math.nan)


# --------------------------------------------------------------------------- real TinyBase


@pytest.fixture(scope="module")
def tinybase_changed() -> Iterator[Callable[[Any, Any], dict[str, bool]]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    proc = subprocess.Popen(
        [node, str(ROOT / "tests" / "node" / "cell_changed.mjs")],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    assert proc.stdin is not None and proc.stdout is not None

    def changed(a: Any, b: Any) -> dict[str, bool]:
        assert proc.stdin is not None and proc.stdout is not None
        # Python's own json carries the pair: independent of the code under test.
        proc.stdin.write(json.dumps([a, b]) + "\n")
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        assert "ok" in answer, answer
        return dict(answer["ok"])

    yield changed
    proc.stdin.close()
    proc.wait(timeout=30)


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, -0.0, 1.0, 2.5, 2**53, 2**53 + 1, 2.0**53]),
    st.sampled_from(["", "a", "1"]),
)
_KEYS = st.sampled_from(["a", "b", "0", "1", "10", "01"])
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=6,
)


def _variant(value: Any, data: st.DataObject) -> Any:
    """A value that is often, but not always, equal to ``value`` as TinyBase sees it."""
    if isinstance(value, dict):
        items = [(k, _variant(v, data)) for k, v in value.items()]
        return dict(data.draw(st.permutations(items)) if data.draw(st.booleans()) else items)
    if isinstance(value, list):
        return [_variant(v, data) for v in value]
    if value.__class__ is int and data.draw(st.booleans()):
        return float(value)
    if value.__class__ is bool and data.draw(st.booleans()):
        return int(value)
    return value


@pytest.mark.node
@given(_JSON, st.data())
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_cells_equal_matches_tinybase(
    tinybase_changed: Callable[[Any, Any], dict[str, bool]], a: Any, data: st.DataObject
) -> None:
    b = data.draw(st.one_of(st.just(_variant(a, data)), _JSON))
    answer = tinybase_changed(a, b)
    assert answer["stored"]
    assert cells_equal(a, b) is not answer["changed"], (a, b)


def _json_carries(*cells: Any) -> bool:
    """Can these cells travel to Node as plain JSON and be stored there?"""
    for cell in cells:
        if cell is DELETED or (isinstance(cell, float) and math.isnan(cell)):
            return False
        if isinstance(cell, str) and cell[:1] in (DELETED_MARKER, JSON_MARKER):
            return False
    return True


@pytest.mark.node
@pytest.mark.parametrize(("a", "b"), [(a, b) for a, b in EQUAL + DIFFERENT if _json_carries(a, b)])
def test_pinned_pairs_match_tinybase(
    tinybase_changed: Callable[[Any, Any], dict[str, bool]], a: Any, b: Any
) -> None:
    answer = tinybase_changed(a, b)
    assert answer["stored"]
    assert cells_equal(a, b) is not answer["changed"], (a, b)
