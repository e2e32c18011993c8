"""JavaScript value semantics, written once for every layer that must reproduce them.

Why this module exists: TinyBase runs on JavaScript values, and partywidget must agree
with it wherever the difference is observable -- in bytes on the wire, in the order ids
are applied and listed, in whether a write counts as a change, and in the results of
conditions TinyBase evaluates. Python differs from JavaScript in exactly these places:

* number text (``4.0`` vs ``4``, ``1e-07`` vs ``1e-7``, ``1e+21``), see :func:`js_number`;
* object key order (canonical array indices come first, ascending), see
  :func:`js_key_order`;
* integers beyond 2**53 (JavaScript holds the nearest double), see :func:`js_int`;
* equality (``true !== 1`` but ``4 === 4.0``; TinyBase compares object and array cells
  by their JSON text), see :func:`strict_equal` and :func:`cells_equal`;
* truthiness (``[]``, ``{}`` truthy; ``NaN`` falsy), see :func:`js_truthy`;
* ``String(x)``, ``Number(text)`` and ``<``, which TinyBase's default sorter and the
  reference server's checks rely on.

It also names TinyBase's two reserved string markers. ``JSON.stringify`` itself lives in
the codec (:func:`partywidget.codec.js_dumps`), because it shares the wire encoder's
C-accelerated machinery and error type; it is built from the rules here.

Only :mod:`partywidget.model` is imported, so the codec, the Store, the server and the
front-end helpers can all depend on this module.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable
from typing import Any, Final

from .model import DELETED, Deleted

__all__ = [
    "DELETED_MARKER",
    "JSON_MARKER",
    "MAX_ARRAY_INDEX",
    "MAX_SAFE_INT",
    "cells_equal",
    "is_array_index",
    "js_int",
    "js_key_order",
    "js_less",
    "js_number",
    "js_number_str",
    "js_string",
    "js_to_number",
    "js_truthy",
    "strict_equal",
]

#: TinyBase's ``UNDEFINED`` string: ``undefined`` (a deletion) on the wire and in storage.
DELETED_MARKER: Final = "\ufffc"
#: TinyBase's ``JSON_PREFIX``: an object/array cell is this followed by its JSON text.
JSON_MARKER: Final = "\ufffd"

#: Largest integer a double holds exactly; beyond it JavaScript has approximations only.
MAX_SAFE_INT: Final = 2**53
#: Largest canonical array index; JavaScript objects list such keys first, numerically.
MAX_ARRAY_INDEX: Final = 2**32 - 2

_DIGITS: Final = frozenset("0123456789")


# --------------------------------------------------------------------------- key order


def is_array_index(key: str) -> bool:
    """Is ``key`` a canonical array index (``"0"``, ``"7"``, not ``"07"`` or ``"-1"``)?"""
    if not key or key[0] not in _DIGITS or not (key.isascii() and key.isdigit()):
        return False
    if len(key) > 1 and key[0] == "0":
        return False
    return len(key) <= 10 and int(key) <= MAX_ARRAY_INDEX


def js_key_order(keys: Iterable[str]) -> list[str]:
    """``keys`` (or a mapping's keys) in JavaScript object order: indices ascending, then
    the rest in insertion order.

    Every engine enumerates own keys this way (``Object.keys``, ``for..in``,
    ``JSON.stringify``), so TinyBase applies and lists ids in this order.
    """
    keys_list: list[str] = list(keys)
    index_keys = [k for k in keys_list if k[:1] in _DIGITS and is_array_index(k)]
    if not index_keys:
        return keys_list
    index_keys.sort(key=int)
    chosen = set(index_keys)
    return index_keys + [k for k in keys_list if k not in chosen]


# --------------------------------------------------------------------------- numbers


def js_int(text: str) -> int | float:
    """A JSON integer as ``JSON.parse`` reads it: beyond 2**53, the nearest double
    (``inf`` when it overflows; callers that refuse it check)."""
    value = int(text)
    if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        return value
    return float(text)


def js_number_str(x: int | float) -> str:
    """``String(x)`` for a number: ``Number.prototype.toString()``, ``NaN`` and
    ``Infinity`` included. Ints beyond 2**53 are written as the double JavaScript holds.

    Python's ``repr`` and JavaScript both print the shortest digits that round-trip;
    they differ only in when and how exponents are used and in ``4.0`` vs ``4``.
    """
    if x.__class__ is int and -MAX_SAFE_INT <= x <= MAX_SAFE_INT:
        return int.__repr__(x)
    x = float(x)  # OverflowError for ints beyond the double range
    if x != x:
        return "NaN"
    if x in (math.inf, -math.inf):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"  # also -0.0, as JavaScript
    if -MAX_SAFE_INT <= x <= MAX_SAFE_INT and x.is_integer():
        return int.__repr__(int(x))
    r = float.__repr__(x)
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    mantissa, _, exp_text = r.partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    if frac_part == "0":
        frac_part = ""
    digits = int_part + frac_part
    # value = 0.<digits> * 10**n
    n = len(int_part) + (int(exp_text) if exp_text else 0)
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        e_text = ("+" if e >= 0 else "-") + str(abs(e))
        body = (digits if k == 1 else digits[0] + "." + digits[1:]) + "e" + e_text
    return sign + body


def js_number(x: int | float) -> str:
    """The JSON text of a number, as ``JSON.stringify`` writes it.

    Raises ``TypeError`` for bools and non-numbers and ``ValueError`` for non-finite
    numbers (ints beyond the double range included): JSON has no text for them.
    """
    if x.__class__ is int and -MAX_SAFE_INT <= x <= MAX_SAFE_INT:
        return int.__repr__(x)
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{type(x).__name__} is not a number")
    try:
        value = float(x)
    except OverflowError:
        raise ValueError("integer too large for a JavaScript number") from None
    if value - value != 0.0:
        raise ValueError(f"non-finite number {x!r} is not JSON")
    return js_number_str(value)


# --------------------------------------------------------------------------- equality


def strict_equal(a: Any, b: Any) -> bool:
    """JavaScript's ``===`` on stored scalars: ``True`` is not ``1``, ``4`` is ``4.0``,
    ``NaN`` is not ``NaN``. (Object cells are stored as JSON text, i.e. strings.)"""
    return a == b and (a.__class__ is bool) is (b.__class__ is bool)


def cells_equal(a: Any, b: Any) -> bool:
    """Would TinyBase 10 see cells (or values) ``a`` and ``b`` as the same?

    TinyBase keeps an object or array cell as ``"\\uFFFD"`` + its ``JSON.stringify``
    text and decides a change with ``!==``, so this is ``encodeIfJson(a) ===
    encodeIfJson(b)`` on decoded Python cells:

    * scalars by ``===``: ``4 == 4.0``, ``0 == -0.0``, ``True != 1``, ``"1" != 1``,
      ``None`` only equals ``None``, ``NaN`` equals nothing; ints beyond 2**53 compare
      as the doubles JavaScript holds;
    * objects and arrays by their JSON text: the same keys in the same JavaScript key
      order (``{"a":1,"b":2}`` differs from ``{"b":2,"a":1}``, but index keys are
      ordered numerically, so ``{"1":0,"0":0}`` equals ``{"0":0,"1":0}``), with nested
      numbers compared as JSON text (``4`` equals ``4.0``; ``true`` differs from ``1``);
    * :data:`~partywidget.model.DELETED` (``undefined``) only equals itself.
    """
    if a is b:
        return a.__class__ is not float or a == a  # NaN is not NaN
    ta = a.__class__
    tb = b.__class__
    if ta is tb:
        if ta is dict:
            return _objects_equal(a, b)
        if ta is list:
            return len(a) == len(b) and all(map(cells_equal, a, b))
        if ta is int:
            return a == b or _big_ints_equal(a, b)
        if ta in _SCALARS:
            return bool(a == b)
        return _other_equal(a, b)
    if ta in _BUILTINS and tb in _BUILTINS:
        if (ta is int and tb is float) or (ta is float and tb is int):
            return a == b or _big_ints_equal(a, b)
        return False
    return _other_equal(a, b)


_SCALARS: Final = frozenset({str, float, bool, type(None), Deleted})
_BUILTINS: Final = _SCALARS | {int, dict, list}


def _big_ints_equal(a: int | float, b: int | float) -> bool:
    """Unequal in Python, maybe equal as JavaScript's doubles (beyond 2**53)."""
    if -MAX_SAFE_INT <= a <= MAX_SAFE_INT and -MAX_SAFE_INT <= b <= MAX_SAFE_INT:
        return False
    try:
        return float(a) == float(b)
    except OverflowError:
        return False


def _objects_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if len(a) != len(b):
        return False
    keys = list(a)
    if keys != list(b):
        keys = js_key_order(keys)
        if keys != js_key_order(b):
            return False
    return all(cells_equal(a[key], b[key]) for key in keys)


def _other_equal(a: Any, b: Any) -> bool:
    """Subclasses of JSON types (IntEnum, str subclasses, ...) compare as their base;
    anything else (including DELETED against a cell) is not equal."""
    base_a, base_b = _json_base(a), _json_base(b)
    if base_a is None or base_b is None:
        return False
    if base_a is not base_b and not (base_a in (int, float) and base_b in (int, float)):
        return False
    return cells_equal(base_a(a), base_b(b))


def _json_base(x: Any) -> type | None:
    if isinstance(x, bool):
        return bool
    if isinstance(x, tuple):
        return list
    for base in (str, int, float, dict, list):
        if isinstance(x, base):
            return base
    if isinstance(x, numbers.Integral):
        return int
    if isinstance(x, numbers.Real):
        return float
    return None


# --------------------------------------------------------------------------- conversions


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness of a JSON value: ``[]`` and ``{}`` are truthy, ``NaN``,
    ``0``, ``""``, ``null`` and ``undefined`` (DELETED) are falsy."""
    cls = value.__class__
    if cls is dict or cls is list:
        return True
    if value is DELETED:
        return False
    if isinstance(value, (dict, list, tuple)):
        return True
    if isinstance(value, float):
        return not (value != value or value == 0.0)  # NaN and zeros are falsy
    return bool(value)


def js_string(value: Any) -> str:
    """``String(value)`` for JSON values: arrays join their items with commas (``null``
    and ``undefined`` items as empty text), objects are ``[object Object]``."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if value is DELETED:
        return "undefined"
    if isinstance(value, int | float):
        return js_number_str(value)
    if isinstance(value, list | tuple):
        return ",".join(
            "" if item is None or item is DELETED else js_string(item) for item in value
        )
    return "[object Object]"


_JS_WHITESPACE: Final = (
    " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_DECIMAL: Final = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\Z")
_RADIX: Final = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)\Z")


def js_to_number(value: Any) -> float:
    """JavaScript's ``Number(value)`` for JSON values (strings parsed as JavaScript does:
    surrounding whitespace ignored, ``""`` is 0, ``0x``/``0o``/``0b`` prefixes)."""
    if value is True:
        return 1.0
    if value is False or value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip(_JS_WHITESPACE)
        if not text:
            return 0.0
        if _DECIMAL.match(text):
            return float(text.replace("Infinity", "inf"))
        if _RADIX.match(text):
            return float(int(text, 0))
        return math.nan
    if isinstance(value, list | tuple):
        return js_to_number(js_string(value))
    return math.nan


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def js_less(a: Any, b: Any) -> bool:
    """JavaScript's ``a < b`` for JSON values (objects and arrays become strings first;
    strings compare by UTF-16 code units; otherwise as numbers, NaN never less)."""
    if isinstance(a, dict | list | tuple):
        a = js_string(a)
    if isinstance(b, dict | list | tuple):
        b = js_string(b)
    if isinstance(a, str) and isinstance(b, str):
        if a.isascii() and b.isascii():
            return a < b
        return _utf16(a) < _utf16(b)
    return js_to_number(a) < js_to_number(b)
