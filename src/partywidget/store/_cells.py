"""Cells and values: Python input checks, JSON encoding, and TinyBase's type names.

Like TinyBase 10, the Store keeps object and array cells *encoded*: a string made of the
reserved prefix ``"\\uFFFD"`` and the cell's ``JSON.stringify`` text. That gives JSON cells
JavaScript's identity semantics for free (``{"a":1,"b":2}`` differs from ``{"b":2,"a":1}``;
re-setting an equal object is no change), makes them immutable inside the Store (callers
always get fresh copies), and makes ``get_tables_json`` byte-identical to TinyBase's.

Input from Python is checked *before* a setter changes anything: values that JSON cannot
hold raise ``TypeError``/``ValueError`` naming where they were found, instead of being
silently dropped as TinyBase drops un-encodable JavaScript values.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable
from typing import Any, Final

from partywidget.codec import js_dumps
from partywidget.jsvalue import DELETED_MARKER as UNDEFINED_MARKER
from partywidget.jsvalue import JSON_MARKER as JSON_PREFIX
from partywidget.jsvalue import MAX_SAFE_INT
from partywidget.jsvalue import js_int as _parse_int

__all__ = [
    "JSON_PREFIX",
    "MAX_INT",
    "MAX_SAFE_INT",
    "UNDEFINED_MARKER",
    "PlainTable",
    "cell_type",
    "decode_if_json",
    "encode_if_json",
    "is_encoded_json",
    "is_reserved_string",
    "js_dumps",
    "plain_table",
    "py_cell",
    "py_json",
    "where",
]

# ToNumber of an integer beyond the double range is Infinity: not a cell. Below it but
# beyond MAX_SAFE_INT, JavaScript holds the nearest double, not the integer: a Python int
# that large is kept as that double (as float, like the codec decodes it from the wire),
# so that our Store, get_json and every peer see the same number.
MAX_INT: Final = int(1.7976931348623157e308)
_TYPES_MESSAGE: Final = "cells and values must be str, int, float, bool, None, or dict/list of them"


def where(kind: str, *ids: str | None) -> str:
    """Describe a place in the Store for error messages, e.g. ``table 't', row 'r'``."""
    labels = {
        "cell": ("table", "row", "cell"),
        "row": ("table", "row"),
        "table": ("table",),
        "tables": (),
        "value": ("value",),
        "values": (),
    }[kind]
    parts = [f"{label} {id_!r}" for label, id_ in zip(labels, ids, strict=False)]
    return ", ".join(parts) if parts else kind


def _bad(place: Callable[[], str], value: Any, path: str, why: str, error: type[Exception]) -> None:
    inner = f" at {path}" if path else ""
    raise error(f"Invalid {place()}{inner}: {why} ({type(value).__name__}); {_TYPES_MESSAGE}")


def py_json(value: Any, place: Callable[[], str], path: str = "") -> Any:
    """Return a normalized copy of a JSON value, or raise if JSON cannot represent it.

    Normalizes subclasses (``IntEnum``, ``numpy`` integers) to builtins and tuples to
    lists, so that what the Store keeps can be encoded exactly as JavaScript would.
    """
    cls = value.__class__
    if cls is str or cls is bool or value is None:
        return value
    if cls is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return value
        if -MAX_INT <= value <= MAX_INT:
            return float(value)
        _bad(place, value, path, "integer outside the range of a double", ValueError)
    if cls is float:
        if math.isfinite(value):
            return value
        _bad(place, value, path, f"{value!r} is not a finite number", ValueError)
    if isinstance(value, dict):
        copy: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                _bad(place, key, path, f"object key {key!r} is not a str", TypeError)
            copy[str(key)] = py_json(item, place, f"{path}[{key!r}]")
        return copy
    if isinstance(value, (list, tuple)):
        return [py_json(item, place, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return py_json(int(value), place, path)
    if isinstance(value, float) or (
        isinstance(value, numbers.Real) and not isinstance(value, numbers.Rational)
    ):
        return py_json(float(value), place, path)
    _bad(place, value, path, "not a JSON type", TypeError)
    return None  # pragma: no cover - _bad always raises


def py_cell(value: Any, place: Callable[[], str]) -> Any:
    """Check one cell or value from Python (fast path for scalars); see :func:`py_json`."""
    cls = value.__class__
    if cls is str or cls is bool or value is None:
        return value
    if cls is float:
        if value - value == 0.0:  # finite
            return value
    elif cls is int and -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        return value
    return py_json(value, place)


class PlainTable(dict[str, dict[str, Any]]):
    """A table copied by :func:`plain_table`: trusted to need no further checks.

    Why a marker type: bulk input (a whole room loaded over HTTP, a DataFrame put into
    the Store) is overwhelmingly plain scalars. Checking it once, in one tight loop, and
    remembering that it passed lets the Store skip both the per-cell Python input check
    and the per-cell TinyBase validation, which together cost more than the data itself.
    """

    __slots__ = ()


def plain_table(table: Any) -> PlainTable | None:
    """Copy ``table`` if every cell is a plain scalar that TinyBase accepts as is.

    Plain means: ``table`` is a non-empty ``dict`` of non-empty ``dict`` rows, every id
    an exact ``str``, every cell an exact ``str`` (not reserved), ``bool``, ``None``,
    ``int`` within the double-exact range or finite ``float``. Anything else -- JSON
    cells, subclasses, reserved strings, empty rows -- returns ``None`` and the caller
    takes the general path, which normalizes, validates and reports errors exactly as
    before. Rows are copied (``dict``), so the Store owns what it keeps.
    """
    if table.__class__ is not dict or not table:
        return None
    copy = PlainTable()
    low = -MAX_SAFE_INT
    for row_id, row in table.items():
        if row_id.__class__ is not str or row.__class__ is not dict or not row:
            return None
        for cell_id, cell in row.items():
            cls = cell.__class__
            if cls is int:
                if not low <= cell <= MAX_SAFE_INT:
                    return None
            elif cls is str:
                if cell[:1] == JSON_PREFIX or cell == UNDEFINED_MARKER:
                    return None
            elif cls is float:
                if cell - cell != 0.0:  # NaN or infinite
                    return None
            elif cls is not bool and cell is not None:
                return None
            if cell_id.__class__ is not str:
                return None
        copy[row_id] = dict(row)
    return copy


def cell_type(value: Any) -> str | None:
    """TinyBase's ``getCellOrValueType`` for a normalized (checked) Python value."""
    cls = value.__class__
    if cls is str:
        return "string"
    if cls is bool:
        return "boolean"
    if value is None:
        return "null"
    if cls is int:
        return "number" if -MAX_INT <= value <= MAX_INT else None
    if cls is float:
        return "number" if math.isfinite(value) else None
    if cls is dict:
        return "object"
    if cls is list:
        return "array"
    return None


def encode_if_json(value: Any) -> Any:
    """TinyBase's ``encodeIfJson``: objects and arrays become prefixed JSON text."""
    if isinstance(value, (dict, list)):
        return JSON_PREFIX + js_dumps(value)
    return value


def is_encoded_json(value: Any) -> bool:
    return value.__class__ is str and value[:1] == JSON_PREFIX


def is_reserved_string(value: Any, accepting_encoded: bool = False) -> bool:
    """Strings a cell may not hold: the ``undefined`` marker, and JSON-prefixed text
    (unless the input is trusted encoded data from ``set_*_json``)."""
    if value.__class__ is not str:
        return False
    return value == UNDEFINED_MARKER or (not accepting_encoded and value[:1] == JSON_PREFIX)


def _parse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_parse(text: str) -> Any:
    """``JSON.parse``: like ``json.loads`` but without NaN/Infinity literals, and with
    unsafe integers rounded to doubles as JavaScript does."""
    return json.loads(text, parse_constant=_parse_constant, parse_int=_parse_int)


def decode_if_json(raw: Any) -> Any:
    """TinyBase's ``decodeIfJson``: a fresh object for encoded JSON, else the value."""
    if raw.__class__ is str and raw[:1] == JSON_PREFIX:
        return json.loads(raw[1:], parse_int=_parse_int)
    return raw
