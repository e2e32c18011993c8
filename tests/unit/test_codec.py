"""The wire codec against the reference: captured TinyBase messages and real V8 output."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partywidget.changes import apply_changes_to_content, cells_equal, diff_content
from partywidget.codec import (
    DELETED_MARKER,
    MAX_DEPTH,
    MAX_MESSAGE_CHARS,
    CodecError,
    decode_cell,
    decode_changes,
    decode_content,
    decode_message,
    decode_payload,
    encode_cell,
    encode_changes,
    encode_content,
    encode_message,
    is_cell,
    js_dumps,
    js_key_order,
    js_loads,
    js_number,
    validate_changes,
    validate_content,
)
from partywidget.model import DELETED

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "wire-vectors.json").read_text(encoding="utf-8"))


def as_content(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    tables, values = obj
    return tables, values


# --------------------------------------------------------------------------- vectors


def test_initial_put_body_is_byte_identical() -> None:
    body = VECTORS["initial_put"]["body"]
    content = decode_content(body)
    assert content == ({"pets": {"fido": {"species": "dog", "legs": 4}}}, {"open": True})
    assert encode_content(content) == body


def _case_params() -> Iterator[Any]:
    before = as_content(json.loads(VECTORS["initial_put"]["body"]))
    for case in VECTORS["cases"]:
        after = as_content(case["content_after"])
        yield pytest.param(before, after, case["messages"], id=case["name"])
        before = after


@pytest.mark.parametrize(("before", "after", "messages"), list(_case_params()))
def test_reference_cases_byte_for_byte(
    before: tuple[dict[str, Any], dict[str, Any]],
    after: tuple[dict[str, Any], dict[str, Any]],
    messages: list[str],
) -> None:
    """The Changes implied by each store operation encode to exactly the captured message,
    and the captured message decodes to Changes that produce the captured content."""
    changes = diff_content(before, after)
    if not messages:
        assert changes == ({}, {}, 1)
        return
    (message,) = messages
    assert encode_message("", "s", encode_changes(changes)) == message
    type_, payload = decode_message(message, "")
    assert type_ == "s"
    decoded = decode_changes(payload)
    assert apply_changes_to_content(before, decoded) == after
    assert encode_changes(decoded) == payload


@pytest.mark.parametrize("case", VECTORS["incoming"], ids=lambda c: c["message"][:30])
def test_reference_incoming(case: dict[str, Any]) -> None:
    """What the reference client did with each received message, we do too."""
    content = as_content(case["before"])
    try:
        type_, payload = decode_message(case["message"], "")
        if type_ == "s":
            decoded = decode_payload(payload)
            if len(decoded) == 3:
                content = apply_changes_to_content(content, decoded)
            else:
                content = as_content(decoded)
    except CodecError:
        pass  # ignored, as the reference ignores it
    assert content == as_content(case["content_after"])


# --------------------------------------------------------------------------- numbers


NUMBER_TABLE = [
    (0, "0"),
    (-0.0, "0"),
    (0.0, "0"),
    (4.0, "4"),
    (-4.0, "-4"),
    (3.5, "3.5"),
    (0.1, "0.1"),
    (1e-7, "1e-7"),
    (1.5e-7, "1.5e-7"),
    (1e-6, "0.000001"),
    (-1.234e-6, "-0.000001234"),
    (0.0001, "0.0001"),
    (1e-5, "0.00001"),
    (123456789012345678901, "123456789012345680000"),
    (1e20, "100000000000000000000"),
    (1e21, "1e+21"),
    (1.5e21, "1.5e+21"),
    (1e16, "10000000000000000"),
    (2**53, "9007199254740992"),
    (2**53 + 1, "9007199254740992"),
    (-(2**53) - 1, "-9007199254740992"),
    (2.0**53, "9007199254740992"),
    (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (123.456, "123.456"),
    (1 / 3, "0.3333333333333333"),
    (1.2345e-30, "1.2345e-30"),
    (1e100, "1e+100"),
    (12345678901234567.0, "12345678901234568"),
]


@pytest.mark.parametrize(("number", "text"), NUMBER_TABLE)
def test_js_number_formatting(number: float, text: str) -> None:
    assert js_number(number) == text
    assert js_dumps(number) == text
    assert js_dumps([number]) == f"[{text}]"
    assert js_dumps({"x": [number]}) == f'{{"x":[{text}]}}'


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 10**400, True])
def test_non_numbers_rejected(bad: Any) -> None:
    with pytest.raises(CodecError):
        js_number(bad)
    if bad is not True:
        with pytest.raises(CodecError):
            js_dumps([bad])


def test_cell_numbers_encode_as_javascript() -> None:
    changes = ({"t": {"r": {"a": 4.0, "b": -0.0, "c": 1e-7, "d": 2**60, "e": 1e21}}}, {}, 1)
    assert (
        encode_changes(changes)
        == '[{"t":{"r":{"a":4,"b":0,"c":1e-7,"d":1152921504606847000,"e":1e+21}}},{},1]'
    )


# --------------------------------------------------------------------------- key order


def test_key_order_index_keys_first() -> None:
    obj = {"b": 1, "10": 2, "2": 3, "01": 4, "-1": 5, "1.5": 6, "0": 7, "a": 8}
    expected = '{"0":7,"2":3,"10":2,"b":1,"01":4,"-1":5,"1.5":6,"a":8}'
    assert js_dumps(obj) == expected
    # Only canonical array indices (up to 2**32 - 2) move to the front.
    assert js_key_order(["x", "4294967295", "4294967294", "٣", "00"]) == [
        "4294967294",
        "x",
        "4294967295",
        "٣",
        "00",
    ]


def test_key_order_applies_at_every_level_of_changes() -> None:
    changes = ({"z": {"9": {"b": 1, "1": 2}, "3": DELETED}, "5": DELETED}, {"v": 1, "0": 2}, 1)
    assert (
        encode_changes(changes)
        == '[{"5":"\ufffc","z":{"3":"\ufffc","9":{"1":2,"b":1}}},{"0":2,"v":1},1]'
    )
    decoded = decode_changes('[{"z":{"9":{"b":1,"1":2}}},{"v":1,"0":2},1]')
    assert list(decoded[0]["z"]["9"]) == ["1", "b"]
    assert list(decoded[1]) == ["0", "v"]


def test_strings_escaped_exactly_as_json_stringify() -> None:
    s = 'q"b\\s/\b\f\n\r\t\x00\x1f\x7f é 😀 \u2028 \ud800'
    assert js_dumps(s) == '"q\\"b\\\\s/\\b\\f\\n\\r\\t\\u0000\\u001f\x7f é 😀 \u2028 \\ud800"'


# --------------------------------------------------------------------------- cells


def test_json_cells_and_deleted_round_trip() -> None:
    assert encode_cell({"a": 1, "b": [True, None]}) == '\ufffd{"a":1,"b":[true,null]}'
    assert encode_cell(["x", 2.0]) == '\ufffd["x",2]'
    assert encode_cell(DELETED) == DELETED_MARKER
    assert decode_cell('\ufffd{"a":1}') == {"a": 1}
    assert decode_cell(DELETED_MARKER) is DELETED
    # Inside encoded JSON, the deletion marker is an ordinary string (plain JSON.parse).
    assert decode_cell('\ufffd["\ufffc"]') == ["\ufffc"]
    # Raw (unencoded) object cells are accepted, as TinyBase accepts them.
    assert decode_changes('[{"t":{"r":{"c":{"a":[1]}}}},{},1]')[0] == {
        "t": {"r": {"c": {"a": [1]}}}
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s", True),
        ("", True),
        ("\ufffd", False),
        ("\ufffdx", False),
        ("\ufffc", False),
        ("x\ufffc", True),
        ("\ud800", False),
        (True, True),
        (None, True),
        (0, True),
        (-(10**300), True),
        (10**400, False),
        (1.5, True),
        (math.nan, False),
        (math.inf, False),
        ({"a": [1, {"b": None}], "\ufffd": "\ufffc"}, True),
        ({1: 2}, False),
        ([math.nan], False),
        ([b"x"], False),
        (b"x", False),
        ((1, 2), False),
        ({1, 2}, False),
        (DELETED, False),
        (object(), False),
    ],
)
def test_is_cell(value: Any, expected: bool) -> None:
    assert is_cell(value) is expected


def test_is_cell_depth_limit() -> None:
    ok: Any = 1
    for _ in range(MAX_DEPTH):
        ok = [ok]
    assert is_cell(ok)
    assert not is_cell([ok])


@pytest.mark.parametrize(
    "bad",
    ["\ufffdx", "\ufffc", "\ud800", math.nan, math.inf, b"x", {1, 2}, {1: 2}, [math.nan], object()],
)
def test_illegal_cells_refused_on_encode(bad: Any) -> None:
    with pytest.raises(CodecError):
        encode_changes(({"t": {"r": {"c": bad}}}, {}, 1))
    with pytest.raises(CodecError):
        encode_content(({}, {"v": bad}))


def test_deleted_refused_in_content() -> None:
    with pytest.raises(CodecError):
        encode_content(({"t": {"r": {"c": DELETED}}}, {}))
    with pytest.raises(CodecError):
        encode_content(({"t": DELETED}, {}))
    with pytest.raises(CodecError):
        decode_content('[{"t":{"r":{"c":"\ufffc"}}},{}]')
    with pytest.raises(CodecError):
        decode_content('[{},{"v":"\ufffc"}]')


def test_empty_rows_and_tables_dropped() -> None:
    assert decode_content('[{"t":{},"u":{"r":{}},"w":{"r":{"c":1}}},{}]') == (
        {"w": {"r": {"c": 1}}},
        {},
    )
    assert decode_changes('[{"t":{},"u":{"r":{}}},{},1]') == ({}, {}, 1)


def test_payload_shapes() -> None:
    assert decode_payload('[{"t":{"r":{"c":1}}},{"v":2}]') == ({"t": {"r": {"c": 1}}}, {"v": 2})
    assert decode_payload('[{"t":"\ufffc"},{"v":"\ufffc"},1]') == (
        {"t": DELETED},
        {"v": DELETED},
        1,
    )
    assert decode_changes("[{},{},1.0]") == ({}, {}, 1)
    assert validate_content([{}, {}]) == ({}, {})
    assert validate_changes(({"t": {"r": {"c": '\ufffd{"a":1}'}}}, {}, 1)) == (
        {"t": {"r": {"c": {"a": 1}}}},
        {},
        1,
    )


# --------------------------------------------------------------------------- hostile input


def _deep(n: int) -> str:
    return "[" * n + "]" * n


HOSTILE_PAYLOADS = [
    "",
    " ",
    "[",
    "{not json",
    "NaN",
    "[{},{},NaN]",
    '[{},{"v":Infinity},1]',
    '[{},{"v":-Infinity},1]',
    '[{},{"v":1e400},1]',
    '[{},{"v":-1e400},1]',
    "[{},{},1]x",
    "\ufeff[{},{},1]",
    '[{},{"v":"\\ud800"},1]',
    '[{},{"v":"\\udc00x"},1]',
    '[{},{"\\udfff":1},1]',
    '[{},{"v":"\ud800"},1]',
    b"[{},{},1]".decode() + "\udcff",
    b'[{},{"v":"\xff\xfe"},1]'.decode("utf-8", "surrogateescape"),
    _deep(10_000),
    "[{},{},1," + _deep(10_000) + "]",
    '[{},{"v":' + _deep(MAX_DEPTH) + "},1]",
    '[{"t":{"r":{"c":' + _deep(MAX_DEPTH) + "}}},{},1]",
    '[{},{"v":"\ufffd' + "[" * 5000 + "]" * 5000 + '"},1]',
    "[]",
    "[{}]",
    "[{},{},{},1]",
    "[{},{},2]",
    "[{},{},true]",
    '[{},{},"1"]',
    "[{},{},null]",
    '[{},{},"\ufffc"]',
    '"\ufffc"',
    "[[],{},1]",
    "[{},[],1]",
    "[null,{},1]",
    '[{"t":[]},{},1]',
    '[{"t":1},{},1]',
    '[{"t":{"r":[]}},{},1]',
    '[{"t":{"r":"x"}},{},1]',
    '[{"t":{"r":1}},{},1]',
    '[{"t":{"r":null}},{},1]',
    '[{"t":{"r":{"c":"\ufffdnot json"}}},{},1]',
    '[{"t":{"r":{"c":"\ufffd1"}}},{},1]',
    '[{"t":{"r":{"c":"\ufffd\\"s\\""}}},{},1]',
    '[{"t":{"r":{"c":"\ufffdnull"}}},{},1]',
    '[{"t":{"r":{"c":"\ufffd"}}},{},1]',
    '[{"t":{"r":{"c":{"a":"\ufffc"}}}},{},1]',
    '[{"t":{"r":{"c":["\ufffc"]}}},{},1]',
    '[{},{"v":"\ufffdNaN"},1]',
    '[{},{"v":"\ufffd[1e999]"},1]',
    '[{},{"v":"\ufffd[\\"\\\\ud800\\"]"},1]',
]


@pytest.mark.parametrize("payload", HOSTILE_PAYLOADS, ids=lambda p: repr(p[:40]))
def test_hostile_payloads_raise_codec_error_only(payload: str) -> None:
    with pytest.raises(CodecError):
        decode_changes(payload)
    with pytest.raises(CodecError):
        decode_payload(payload)


@pytest.mark.parametrize(
    "payload",
    [*HOSTILE_PAYLOADS[:23], '[{"t":{"r":{"c":"\ufffc"}}},{}]', '[{"t":"\ufffc"},{}]'],
    ids=lambda p: repr(p[:40]),
)
def test_hostile_content_raises_codec_error_only(payload: str) -> None:
    with pytest.raises(CodecError):
        decode_content(payload)


@pytest.mark.parametrize("value", [None, 1, b"[{},{},1]", bytearray(b"[]"), ["[]"], object()])
def test_non_str_input_raises_codec_error(value: Any) -> None:
    for fn in (js_loads, decode_changes, decode_content, decode_payload):
        with pytest.raises(CodecError):
            fn(value)
    with pytest.raises(CodecError):
        decode_message(value, "")


def test_loads_limits() -> None:
    assert js_loads(_deep(MAX_DEPTH)) == json.loads(_deep(MAX_DEPTH))
    with pytest.raises(CodecError):
        js_loads(_deep(MAX_DEPTH + 1))
    assert js_loads(_deep(5), max_depth=5)
    with pytest.raises(CodecError):
        js_loads(_deep(6), max_depth=5)
    huge = json.dumps("x" * 1000)
    assert js_loads(huge, max_chars=len(huge)) == "x" * 1000
    with pytest.raises(CodecError):
        js_loads(huge, max_chars=len(huge) - 1)
    # Braces inside strings are not nesting.
    assert js_loads(json.dumps("[" * 500)) == "[" * 500


def test_text_over_the_message_limit_is_refused_before_parsing() -> None:
    text = "[{},{},1" + " " * MAX_MESSAGE_CHARS + "]"
    with pytest.raises(CodecError, match="exceeds"):
        decode_changes(text)


VALID_MESSAGE_PAYLOADS = [m[1:] for case in VECTORS["cases"] for m in case["messages"]]


@given(
    st.sampled_from(VALID_MESSAGE_PAYLOADS),
    st.integers(min_value=0, max_value=200),
    st.text(max_size=3),
    st.integers(min_value=0, max_value=3),
)
@settings(max_examples=500)
def test_mangled_payloads_decode_or_raise_codec_error(
    payload: str, at: int, insert: str, drop: int
) -> None:
    """Truncated, spliced or corrupted messages never raise anything but CodecError."""
    at = min(at, len(payload))
    mangled = payload[:at] + insert + payload[at + drop :]
    try:
        decoded = decode_payload(mangled)
    except CodecError:
        return
    assert len(decoded) in (2, 3)


@given(st.text(max_size=40))
@settings(max_examples=300)
def test_arbitrary_text_decodes_or_raises_codec_error(text: str) -> None:
    for fn in (js_loads, decode_payload, decode_content):
        with contextlib.suppress(CodecError):
            fn(text)


def test_loads_javascript_semantics() -> None:
    assert js_loads('{"a":1,"a":2}') == {"a": 2}
    assert js_loads("12345678901234567890") == 12345678901234567890.0
    assert type(js_loads("9007199254740993")) is float
    assert js_loads("9007199254740992") == 2**53
    assert js_loads('"\\ud83d\\ude00"') == "😀"
    assert js_loads(" [1 , 2]\n") == [1, 2]
    assert js_loads("1e-400") == 0.0


def test_js_dumps_rejects_non_json() -> None:
    circular: list[Any] = []
    circular.append(circular)
    for bad in [b"x", {1, 2}, {1: "a"}, {None: 1}, object(), circular, [math.nan], DELETED]:
        with pytest.raises(CodecError):
            js_dumps(bad)
    deep: Any = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(CodecError):
        js_dumps(deep)


def test_messages() -> None:
    assert encode_message("p_", "s", "[{},{},1]") == "p_s[{},{},1]"
    assert decode_message("p_s[{},{},1]", "p_") == ("s", "[{},{},1]")
    assert decode_message("sx", "") == ("s", "x")
    assert decode_message("s", "") == ("s", "")
    for bad, prefix in [("", ""), ("p_", "p_"), ("q_s[]", "p_"), ("p", "p_")]:
        with pytest.raises(CodecError):
            decode_message(bad, prefix)
    with pytest.raises(CodecError):
        encode_message("", "ss", "")
    with pytest.raises(CodecError):
        encode_message("", "s", b"x")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties

# Keys that stress JavaScript's ordering: canonical indices, near misses, other text.
KEYS = st.one_of(
    st.sampled_from(
        ["0", "1", "2", "10", "01", "-1", "1.5", "4294967294", "4294967295", "99999999999", ""]
    ),
    st.integers(min_value=0, max_value=5000).map(str),
    st.text(max_size=6),
)
TRICKY_FLOATS = st.sampled_from(
    [
        0.0,
        -0.0,
        1e21,
        1e20,
        9.999999999999999e20,
        1e-6,
        9.99999e-7,
        1e-7,
        5e-324,
        1.7976931348623157e308,
        2.0**53,
        2.0**53 + 2,
        0.1 + 0.2,
        1e16,
        123456789012345680000.0,
        4.0,
        -1.5e-10,
    ]
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TRICKY_FLOATS,
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=8))
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=20,
)
CELLS = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    st.text(max_size=8).filter(lambda s: is_cell(s)),
    st.lists(JSON_VALUES, max_size=3),
    st.dictionaries(KEYS, JSON_VALUES, max_size=3),
)
CELLS_OR_DELETED = st.one_of(CELLS, st.just(DELETED))
ROWS = st.dictionaries(KEYS, CELLS_OR_DELETED, max_size=4)
TABLES = st.dictionaries(
    KEYS, st.one_of(st.just(DELETED), st.dictionaries(KEYS, st.one_of(st.just(DELETED), ROWS)))
)
CHANGES = st.tuples(TABLES, st.dictionaries(KEYS, CELLS_OR_DELETED, max_size=4), st.just(1))


def _normalise(changes: Any) -> Any:
    """Changes as decoding returns them: empty rows/tables dropped, cells as JS holds them."""
    tables, values, _ = changes
    out: dict[str, Any] = {}
    for tid, table in tables.items():
        if table is DELETED:
            out[tid] = DELETED
            continue
        t: dict[str, Any] = {}
        for rid, row in table.items():
            if row is DELETED:
                t[rid] = DELETED
            elif row:
                t[rid] = {cid: _js_value(c) for cid, c in row.items()}
        if t:
            out[tid] = t
    return out, {vid: _js_value(v) for vid, v in values.items()}, 1


def _js_value(v: Any) -> Any:
    return v if v is DELETED else json.loads(js_dumps(v))


@given(CHANGES)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_changes_round_trip(changes: Any) -> None:
    text = encode_changes(changes)
    decoded = decode_changes(text)
    expected = _normalise(changes)
    assert js_dumps(_mark(decoded)) == js_dumps(_mark(expected))
    assert encode_changes(decoded) == encode_changes(expected)
    # The text is the JSON JavaScript would write for the wire structure.
    assert json.loads(text)[2] == 1


def _mark(changes: Any) -> Any:
    """Replace DELETED so that js_dumps can compare whole Changes structurally."""
    if changes is DELETED:
        return {"$deleted": True}
    if isinstance(changes, dict):
        return {k: _mark(v) for k, v in changes.items()}
    if isinstance(changes, tuple):
        return [_mark(v) for v in changes]
    return changes


CONTENT = st.tuples(
    st.dictionaries(
        KEYS,
        st.dictionaries(
            KEYS, st.dictionaries(KEYS, CELLS, min_size=1, max_size=3), min_size=1, max_size=3
        ),
        max_size=3,
    ),
    st.dictionaries(KEYS, CELLS, max_size=3),
)


@given(CONTENT)
@settings(max_examples=200)
def test_content_round_trip(content: Any) -> None:
    text = encode_content(content)
    decoded = decode_content(text)
    assert encode_content(decoded) == text
    tables, values = content
    assert decoded[0].keys() == tables.keys()
    for tid, table in tables.items():
        for rid, row in table.items():
            for cid, cell in row.items():
                assert cells_equal(decoded[0][tid][rid][cid], _js_value(cell))
    for vid, value in values.items():
        assert cells_equal(decoded[1][vid], _js_value(value))


# --------------------------------------------------------------------------- real V8


@pytest.fixture(scope="module")
def node_stringify() -> Iterator[Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    proc = subprocess.Popen(
        [node, str(ROOT / "tests" / "node" / "js_stringify.mjs")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    assert proc.stdin is not None and proc.stdout is not None

    def stringify(value: Any) -> str:
        assert proc.stdin is not None and proc.stdout is not None
        # Python's own json (ASCII only) carries the value: independent of js_dumps.
        proc.stdin.write(json.dumps(value) + "\n")
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        assert "ok" in answer, answer
        return str(answer["ok"])

    yield stringify
    proc.stdin.close()
    proc.wait(timeout=30)


@pytest.mark.node
@given(JSON_VALUES)
@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_js_dumps_equals_v8_json_stringify(node_stringify: Any, value: Any) -> None:
    assert js_dumps(value) == node_stringify(value)


@pytest.mark.node
@given(st.lists(NUMBERS, min_size=1, max_size=20))
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_number_text_equals_v8(node_stringify: Any, numbers: list[float]) -> None:
    assert js_dumps(numbers) == node_stringify(numbers)


@pytest.mark.node
@given(
    st.text(
        alphabet=st.one_of(
            st.characters(),
            st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
            st.characters(max_codepoint=0x1F),
            st.sampled_from('"\\/\u2028\u2029\x7f\ufffc\ufffd'),
        ),
        max_size=30,
    )
)
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_string_escapes_equal_v8(node_stringify: Any, text: str) -> None:
    """Including lone surrogates, control characters and U+2028/2029."""
    assert js_dumps(text) == node_stringify(text)


@pytest.mark.node
@pytest.mark.parametrize(("number", "text"), NUMBER_TABLE)
def test_number_table_is_what_v8_writes(node_stringify: Any, number: float, text: str) -> None:
    assert node_stringify(number) == text


@pytest.mark.node
def test_reference_messages_are_what_v8_writes(node_stringify: Any) -> None:
    for case in VECTORS["cases"]:
        for message in case["messages"]:
            payload = message[1:]
            assert node_stringify(json.loads(payload)) == payload
