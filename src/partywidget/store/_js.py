"""JavaScript semantics the Store needs to reproduce TinyBase exactly.

TinyBase runs on JavaScript values; a faithful Python port must reproduce a few of the
language's rules where they are observable: the iteration order of object keys (array
indices first), strict equality (``true !== 1`` but ``4 === 4.0``), truthiness (``[]`` and
``{}`` are truthy), the ``<`` operator used by TinyBase's default row sorter (with its
``ToPrimitive``/``ToNumber`` conversions), and ``Number.prototype.toString``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

__all__ = [
    "is_array_index",
    "js_keys",
    "js_less",
    "js_number_str",
    "js_truthy",
    "strict_equal",
]

_MAX_ARRAY_INDEX = 2**32 - 2


def is_array_index(key: str) -> bool:
    """Whether JavaScript treats ``key`` as an array index (iterated first, numerically)."""
    if not key.isdigit() or not key.isascii():
        return False
    if len(key) > 1 and key[0] == "0":
        return False
    return int(key) <= _MAX_ARRAY_INDEX


def js_keys(obj: Mapping[str, Any]) -> list[str]:
    """The keys of ``obj`` in the order ``Object.keys`` would list them in JavaScript.

    Integer-like keys come first in ascending numeric order, then the others in insertion
    order. TinyBase iterates input objects this way, so the Store's Maps (and therefore
    every Id list and listener order) follow it.
    """
    keys = list(obj)
    indices = [key for key in keys if key[:1].isdigit() and is_array_index(key)]
    if not indices:
        return keys
    indices.sort(key=int)
    seen = set(indices)
    return indices + [key for key in keys if key not in seen]


def strict_equal(a: Any, b: Any) -> bool:
    """JavaScript's ``===`` on stored scalars: ``True`` is not ``1``, ``4`` is ``4.0``."""
    return a == b and (a.__class__ is bool) is (b.__class__ is bool)


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness of a JSON value (empty arrays and objects are truthy)."""
    if isinstance(value, (dict, list, tuple)):
        return True
    return bool(value)


def js_number_str(number: float) -> str:
    """``Number.prototype.toString()`` for a finite number (shortest round-trip digits)."""
    if isinstance(number, int) and not isinstance(number, bool) and abs(number) < 2**53:
        return str(number)
    value = float(number)
    if value == 0:
        return "0"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest round-trip digits, exactly the digits JavaScript prints.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple))
    stripped = digits.rstrip("0")
    assert isinstance(exponent, int)
    exponent += len(digits) - len(stripped)
    digits = stripped
    point = len(digits) + exponent
    k = len(digits)
    n = point
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    exp = n - 1
    exp_str = ("+" if exp >= 0 else "-") + str(abs(exp))
    if k == 1:
        return sign + digits + "e" + exp_str
    return sign + digits[0] + "." + digits[1:] + "e" + exp_str


def _js_join(items: Iterable[Any]) -> str:
    return ",".join("" if item is None else _to_primitive_str(item) for item in items)


def _to_primitive_str(value: Any) -> str:
    """``String(value)`` for JSON values (what ``ToPrimitive`` then ``ToString`` yields)."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return js_number_str(value)
    if isinstance(value, (list, tuple)):
        return _js_join(value)
    return "[object Object]"


_JS_WHITESPACE = (
    " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\Z")
_RADIX = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)\Z")


def _string_to_number(text: str) -> float:
    text = text.strip(_JS_WHITESPACE)
    if not text:
        return 0.0
    if _DECIMAL.match(text):
        return float(text.replace("Infinity", "inf"))
    if _RADIX.match(text):
        return float(int(text, 0))
    return math.nan


def _to_number(value: Any) -> float:
    if value is True:
        return 1.0
    if value is False or value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return _string_to_number(value)
    return math.nan


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def js_less(a: Any, b: Any) -> bool:
    """JavaScript's ``a < b`` for JSON values (dicts/lists are converted as JS would)."""
    if isinstance(a, (dict, list, tuple)):
        a = _to_primitive_str(a)
    if isinstance(b, (dict, list, tuple)):
        b = _to_primitive_str(b)
    if isinstance(a, str) and isinstance(b, str):
        if a.isascii() and b.isascii():
            return a < b
        return _utf16(a) < _utf16(b)
    na = _to_number(a)
    nb = _to_number(b)
    return na < nb  # NaN compares False, as in JavaScript
