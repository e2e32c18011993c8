"""The wire codec: TinyBase 10's PartyKit messages and bodies, byte for byte.

Why this module exists: a JavaScript TinyBase peer, a PartyKit server and partywidget
must agree on every byte, because messages are compared, stored and re-broadcast as
text. Python's :mod:`json` differs from ``JSON.stringify`` in number formatting (``4.0``,
``1e-07``, ``1.2345678901234568e+20``) and in object key order (JavaScript lists
integer-like keys first), so :func:`js_dumps` reproduces JavaScript exactly (by the
rules of :mod:`partywidget.jsvalue`), and
:func:`js_loads` accepts any JSON text but refuses what no TinyBase cell can be (NaN,
infinities, lone surrogates) and what would hurt us (deep nesting, huge texts).

TinyBase 10 wire rules mirrored here (see ``persister-partykit-*`` and ``index.js`` in
``node_modules/tinybase``):

* A deletion (``undefined`` in JavaScript, :data:`~partywidget.model.DELETED` here)
  travels as the string ``"\\uFFFC"``; the JavaScript receiver turns that string into
  ``undefined`` at *any* depth of a received message (``jsonParseWithUndefined``).
* An object or array cell/value travels as ``"\\uFFFD"`` + its JSON text
  (``encodeIfJson``); the receiver parses it back with plain ``JSON.parse``.

Deliberate differences from TinyBase's receiving side, all on input a TinyBase peer never
produces (they only make us stricter, never change valid traffic):

* A ``"\\uFFFD"`` string that is not the JSON of an object or array: TinyBase ignores
  that one cell; we reject the whole payload with :class:`CodecError`.
* ``"\\uFFFC"`` where a deletion is meaningless (anywhere in Content, inside raw
  object/array cells, as a whole payload): TinyBase drops or nulls it depending on the
  transport; we reject.
* Raw (unencoded) object/array cells are accepted like TinyBase does, but nesting
  beyond ``max_depth`` is refused.
* Empty rows and tables in Content or Changes are dropped on decoding (TinyBase's
  ``setContent`` ignores them and ``applyChanges`` does nothing for them).
* Integers beyond 2**53 are read as the double JavaScript would hold; numbers that
  overflow to infinity (``1e400``) are rejected, since no cell can be infinite.
* A 3-element payload whose last element is not the number 1 is rejected (TinyBase's
  server ignores it too; its client would treat it as Content).

Speed (this is on every message's path): payloads are encoded by building the wire
objects in JavaScript key order, sharing every row that needs no cell encoding, and
handing them to the C encoder of :mod:`json`; the few numbers whose Python text
differs from JavaScript's travel as unguessable placeholders replaced afterwards.
Decoding uses the C parser without per-number hooks and checks numbers, markers and
ids in the one validation walk, reusing the parsed dicts. Roughly 2-3x the cost of
bare ``json.dumps``/``json.loads``.

Why one module of ~900 lines: encoding and decoding share that private fast-path
machinery (the placeholder numbers, the C encoder and parser, the one validation walk)
and one error type; split, each half would need the other's internals.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Callable
from json.encoder import encode_basestring as _c_encode_basestring
from typing import Any, Final

from .jsvalue import DELETED_MARKER, JSON_MARKER, js_key_order
from .jsvalue import MAX_SAFE_INT as _MAX_SAFE
from .jsvalue import is_array_index as _is_index_key
from .jsvalue import js_int as _js_int
from .jsvalue import js_number as _js_number
from .model import DELETED, Changes, Content

__all__ = [
    "CHANGES_TYPE",
    "DELETED_MARKER",
    "JSON_MARKER",
    "MAX_DEPTH",
    "MAX_MESSAGE_CHARS",
    "CodecError",
    "decode_cell",
    "decode_changes",
    "decode_content",
    "decode_message",
    "decode_payload",
    "encode_cell",
    "encode_changes",
    "encode_content",
    "encode_message",
    "is_cell",
    "js_dumps",
    "js_key_order",
    "js_loads",
    "js_number",
    "validate_changes",
    "validate_content",
]

CHANGES_TYPE: Final = "s"
MAX_DEPTH: Final = 100
MAX_MESSAGE_CHARS: Final = 64 * 1024 * 1024

# First characters of array-index keys: a cheap filter before ``_is_index_key``.
_DIGITS: Final = frozenset("0123456789")

_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
# An escaped surrogate in JSON text (maybe part of a valid pair): needs a closer look.
_ESCAPED_SURROGATE_RE: Final = re.compile(r"\\u[dD][89a-fA-F]")

_encode_str: Callable[[str], str] = _c_encode_basestring


class CodecError(ValueError):
    """Raised for anything that cannot be encoded or decoded; the only error decoding raises.

    A ``ValueError`` so that callers who already guard JSON parsing keep working, and a
    single type so that transports can drop a bad message without catching too much.
    """


class _NeedsSlowPath(Exception):
    """Internal: the C encoder would not match JavaScript for this object."""


# --------------------------------------------------------------------------- numbers


def js_number(x: int | float) -> str:
    """The JSON text of a finite number, as JavaScript writes it (see
    :func:`partywidget.jsvalue.js_number`); :class:`CodecError` for anything else."""
    if x.__class__ is int and -_MAX_SAFE <= x <= _MAX_SAFE:
        return int.__repr__(x)  # the common case, without the error wrapping
    try:
        return _js_number(x)
    except (TypeError, ValueError) as e:
        raise CodecError(f"{type(e).__name__}: {e}") from None


def _c_safe_float(x: float) -> bool:
    """True when Python's ``repr`` of ``x`` is already JavaScript's text for it."""
    a = abs(x)
    return 1e-4 <= a < 1e16 and not x.is_integer()


# --------------------------------------------------------------------------- key order


def _needs_reorder(d: dict[Any, Any]) -> bool:
    for k in d:
        if type(k) is not str:
            if not isinstance(k, str):
                raise CodecError(f"TypeError: object keys must be str, not {type(k).__name__}")
        elif k[:1] in _DIGITS and _is_index_key(k):
            return True
    return False


# --------------------------------------------------------------------------- dumps


_C_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=True
)


def _check_c_safe(obj: Any) -> None:
    """Raise :class:`_NeedsSlowPath` unless the C encoder's output equals JavaScript's."""
    t = type(obj)
    if t is str or t is bool or obj is None:
        return
    if t is int:
        if not -_MAX_SAFE <= obj <= _MAX_SAFE:
            raise _NeedsSlowPath
        return
    if t is float:
        if not _c_safe_float(obj):
            raise _NeedsSlowPath
        return
    if t is dict:
        for k, v in obj.items():
            if type(k) is not str or (k[:1] in _DIGITS and _is_index_key(k)):
                raise _NeedsSlowPath
            # Scalars inline: a big store is millions of them, a call each is the cost.
            tv = type(v)
            if tv is str or tv is bool or v is None:
                continue
            if tv is int and -_MAX_SAFE <= v <= _MAX_SAFE:
                continue
            _check_c_safe(v)
        return
    if t is list or t is tuple:
        for v in obj:
            tv = type(v)
            if tv is str or tv is bool or v is None:
                continue
            _check_c_safe(v)
        return
    raise _NeedsSlowPath


def _encode_slow(obj: Any, parts: list[str]) -> None:
    """The exact (pure Python) encoder, for what the C encoder gets wrong."""
    if obj is None:
        parts.append("null")
    elif obj is True:
        parts.append("true")
    elif obj is False:
        parts.append("false")
    elif isinstance(obj, str):
        parts.append(_encode_str(obj))
    elif isinstance(obj, int | float):
        parts.append(js_number(obj))
    elif isinstance(obj, dict):
        if not obj:
            parts.append("{}")
            return
        keys = js_key_order(obj) if _needs_reorder(obj) else list(obj)
        sep = "{"
        for k in keys:
            parts.append(sep)
            parts.append(_encode_str(k))
            parts.append(":")
            _encode_slow(obj[k], parts)
            sep = ","
        parts.append("}")
    elif isinstance(obj, list | tuple):
        if not obj:
            parts.append("[]")
            return
        sep = "["
        for v in obj:
            parts.append(sep)
            _encode_slow(v, parts)
            sep = ","
        parts.append("]")
    else:
        raise CodecError(f"TypeError: Object of type {type(obj).__name__} is not JSON serializable")


def _escape_surrogate(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def _dumps_raw(obj: Any) -> str:
    """JSON text as JavaScript writes it, but lone surrogates left raw (callers decide)."""
    try:
        try:
            _check_c_safe(obj)
        except _NeedsSlowPath:
            parts: list[str] = []
            _encode_slow(obj, parts)
            return "".join(parts)
        return _C_ENCODER.encode(obj)
    except RecursionError:
        raise CodecError("structure too deep or circular") from None
    except CodecError:
        raise
    except (ValueError, TypeError, OverflowError) as e:
        raise CodecError(f"{type(e).__name__}: {e}") from None


def js_dumps(obj: Any) -> str:
    """Serialise JSON data exactly as JavaScript's ``JSON.stringify`` would.

    Compact, non-ASCII as is, JavaScript number text and key order, lone surrogates as
    ``\\udXXX`` (well-formed ``JSON.stringify``). Anything that is not dict / list /
    tuple / str / int / float / bool / None, non-str keys, or non-finite numbers raise
    :class:`CodecError`.
    """
    text = _dumps_raw(obj)
    if _has_lone_surrogate(text):
        text = _SURROGATE_RE.sub(_escape_surrogate, text)
    return text


# --------------------------------------------------------------------------- loads


def _reject_constant(name: str) -> Any:
    raise CodecError(f"{name} is not JSON")


def _parse_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise CodecError(f"number {text[:40]} overflows")
    return x


def _parse_int(text: str) -> int | float:
    n = _js_int(text)
    if n.__class__ is float and not math.isfinite(n):
        raise CodecError(f"number {text[:40]} overflows")
    return n


_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)
_DECODER_CHECKED: Final = json.JSONDecoder(
    parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float
)


def _depth_exceeds(obj: Any, max_depth: int) -> bool:
    """Does ``obj`` nest containers deeper than ``max_depth``? (``[1]`` has depth 1.)"""
    if type(obj) is not dict and type(obj) is not list:
        return False
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > max_depth:
            return True
        for c in o.values() if type(o) is dict else o:
            if type(c) is dict or type(c) is list:
                stack.append((c, d + 1))
    return False


def _has_surrogate(obj: Any) -> bool:
    stack = [obj]
    while stack:
        o = stack.pop()
        t = type(o)
        if t is str:
            if _SURROGATE_RE.search(o):
                return True
        elif t is dict:
            for k, v in o.items():
                if _SURROGATE_RE.search(k):
                    return True
                stack.append(v)
        elif t is list:
            stack.extend(o)
    return False


def _loads(text: Any, max_depth: int, max_chars: int, checked: bool) -> Any:
    """Parse JSON text. ``checked=False`` is for payloads whose numbers and depth the
    caller validates itself while walking them (cheaper than parse hooks on every
    number); the C parser still raises RecursionError before the stack is at risk."""
    if not isinstance(text, str):
        raise CodecError(f"TypeError: JSON text must be str, not {type(text).__name__}")
    if len(text) > max_chars:
        raise CodecError(f"JSON text of {len(text)} chars exceeds the limit of {max_chars}")
    if _has_lone_surrogate(text):
        raise CodecError("JSON text contains a lone surrogate (invalid Unicode)")
    try:
        obj = (_DECODER_CHECKED if checked else _DECODER).decode(text)
    except CodecError:
        raise
    except RecursionError:
        raise CodecError("JSON nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as e:
        raise CodecError(f"invalid JSON: {e}") from None
    if checked and text.count("[") + text.count("{") > max_depth and _depth_exceeds(obj, max_depth):
        raise CodecError(f"JSON nested deeper than {max_depth}")
    if _ESCAPED_SURROGATE_RE.search(text) and _has_surrogate(obj):
        raise CodecError("JSON text contains an escaped lone surrogate")
    return obj


def js_loads(text: Any, *, max_depth: int = MAX_DEPTH, max_chars: int = MAX_MESSAGE_CHARS) -> Any:
    """Parse any valid JSON text, refusing what JavaScript peers must never send us.

    Rejects ``NaN``/``Infinity`` literals, numbers overflowing to infinity, lone
    surrogates (escaped or raw, e.g. from ``surrogateescape``), nesting deeper than
    ``max_depth``, texts longer than ``max_chars`` and non-str input, always with
    :class:`CodecError`. Duplicate keys: the last wins, as in JavaScript. Integers
    beyond 2**53 become the float JavaScript would hold.
    """
    return _loads(text, max_depth, max_chars, True)


# --------------------------------------------------------------------------- cells


def is_cell(x: Any) -> bool:
    """Is ``x`` a legal TinyBase cell or value (and so safe to encode)?

    str (but not the reserved ``"\\uFFFC"`` or a string starting with ``"\\uFFFD"``,
    and without lone surrogates), bool, None, finite int/float (ints within double
    range), or a dict (str keys) / list of JSON values, nested at most
    :data:`MAX_DEPTH` deep. A Python bool is a boolean, never a number.
    """
    t = type(x)
    if t is str:
        return not (x[:1] == JSON_MARKER or x == DELETED_MARKER or _SURROGATE_RE.search(x))
    if t is bool or x is None:
        return True
    if t is float:
        return math.isfinite(x)
    if t is int:
        return -_MAX_SAFE <= x <= _MAX_SAFE or _int_fits_double(x)
    if isinstance(x, dict | list):
        return _is_json(x, MAX_DEPTH)
    if isinstance(x, str):
        return is_cell(str(x))
    if isinstance(x, bool):
        return True
    if isinstance(x, int | float):
        return is_cell(int(x) if isinstance(x, int) else float(x))
    return False


def _int_fits_double(n: int) -> bool:
    try:
        return math.isfinite(float(n))
    except OverflowError:
        return False


def _is_json(x: Any, depth: int) -> bool:
    """Is ``x`` JSON data (finite numbers, str keys, no lone surrogates) within ``depth``?"""
    if isinstance(x, str):
        return not _SURROGATE_RE.search(x)
    if x is None or isinstance(x, bool):
        return True
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, int):
        return -_MAX_SAFE <= x <= _MAX_SAFE or _int_fits_double(x)
    if depth <= 0:
        return False
    if isinstance(x, dict):
        return all(
            isinstance(k, str) and not _SURROGATE_RE.search(k) and _is_json(v, depth - 1)
            for k, v in x.items()
        )
    if isinstance(x, list):
        return all(_is_json(v, depth - 1) for v in x)
    return False


def _bad_cell(cell: Any) -> CodecError:
    if isinstance(cell, str):
        return CodecError(f"{cell[:20]!r}... is a reserved or invalid string, not a cell")
    return CodecError(f"{type(cell).__name__} {cell!r:.60} is not a legal cell")


def _scan_json(x: Any, depth: int) -> bool:
    """One walk that both validates a JSON cell (as :func:`_is_json`, raising
    CodecError) and tells whether the C encoder would write it as JavaScript does."""
    t = type(x)
    if t is str:
        return True
    if t is int:
        if -_MAX_SAFE <= x <= _MAX_SAFE:
            return True
        if not _int_fits_double(x):
            raise _bad_cell(x)
        return False
    if t is float:
        if _c_safe_float(x):
            return True
        if not math.isfinite(x):
            raise _bad_cell(x)
        return False
    if t is bool or x is None:
        return True
    if depth <= 0:
        raise CodecError("cell nested too deeply")
    if t is dict:
        safe = True
        for k, v in x.items():
            if type(k) is not str:
                raise CodecError(f"TypeError: object keys must be str, not {type(k).__name__}")
            if k[:1] in _DIGITS and _is_index_key(k):
                safe = False
            if not _scan_json(v, depth - 1):
                safe = False
        return safe
    if t is list:
        safe = True
        for v in x:
            if not _scan_json(v, depth - 1):
                safe = False
        return safe
    if _is_json(x, depth):
        return False  # subclasses of JSON types: the exact encoder handles them
    raise _bad_cell(x)


def _encode_json_cell(cell: Any) -> str:
    try:
        c_safe = _scan_json(cell, MAX_DEPTH)
    except RecursionError:
        raise CodecError("structure too deep or circular") from None
    if c_safe:
        return JSON_MARKER + _C_ENCODER.encode(cell)
    parts = [JSON_MARKER]
    _encode_slow(cell, parts)
    return "".join(parts)


def _wire_cell(cell: Any, allow_deleted: bool) -> Any:
    """The JSON value a cell travels as; the C encoder renders it as JavaScript would.

    Floats the C encoder would write differently are returned as floats anyway; the
    caller notices them through :func:`_check_c_safe` only when needed (rare).
    """
    t = type(cell)
    if t is str:
        if cell[:1] == JSON_MARKER or cell == DELETED_MARKER:
            raise _bad_cell(cell)
        return cell
    if t is int:
        return cell
    if t is float:
        if -_MAX_SAFE <= cell <= _MAX_SAFE and cell.is_integer():
            return int(cell)  # 4.0 -> 4, -0.0 -> 0: what JavaScript writes
        if not math.isfinite(cell):
            raise _bad_cell(cell)
        return cell
    if t is bool or cell is None:
        return cell
    if cell is DELETED:
        if allow_deleted:
            return DELETED_MARKER
        raise CodecError("DELETED is only allowed in Changes")
    if t is dict or t is list:
        return _encode_json_cell(cell)
    if isinstance(cell, str | bool | int | float):
        base = str if isinstance(cell, str) else bool if isinstance(cell, bool) else None
        if base is not None:
            return _wire_cell(base(cell), allow_deleted)
        return _wire_cell(int(cell) if isinstance(cell, int) else float(cell), allow_deleted)
    if isinstance(cell, dict | list):
        return _encode_json_cell(cell)
    raise _bad_cell(cell)


def encode_cell(cell: Any) -> Any:
    """Return the wire form of a cell or value: JSON cells as ``"\\uFFFD"`` + JSON text,
    :data:`DELETED` as ``"\\uFFFC"``, numbers as JavaScript would hold them; others as is.
    """
    wire = _wire_cell(cell, True)
    if type(wire) is str and _SURROGATE_RE.search(wire):
        raise _bad_cell(cell)
    return wire


def _check_raw_json_cell(cell: Any, depth_left: int) -> Any:
    """Accept an unencoded object/array cell like TinyBase, minus ambiguous markers.

    Its numbers become what JavaScript holds (the payload parser did not check them).
    """
    if depth_left <= 0:
        raise CodecError("cell nested too deeply")
    if type(cell) is dict:
        return {k: _check_raw_json_value(v, depth_left - 1) for k, v in cell.items()}
    return [_check_raw_json_value(v, depth_left - 1) for v in cell]


def _check_raw_json_value(v: Any, depth_left: int) -> Any:
    t = type(v)
    if t is str:
        if v == DELETED_MARKER:
            raise CodecError('"\\ufffc" inside an object or array cell')
        return v
    if t is int or t is float:
        return _js_number_cell(v, "cell")
    if t is dict or t is list:
        return _check_raw_json_cell(v, depth_left)
    return v


def _decode_wire_cell(wire: Any, depth_left: int) -> Any:
    t = type(wire)
    if t is str:
        if wire[:1] == JSON_MARKER:
            inner = _loads(wire[1:], MAX_DEPTH, MAX_MESSAGE_CHARS, True)
            if type(inner) is not dict and type(inner) is not list:
                raise CodecError('"\\ufffd" string is not the JSON of an object or array')
            return inner
        if wire == DELETED_MARKER:
            return DELETED
        return wire
    if t is bool or wire is None:
        return wire
    if t is int or t is float:
        return _js_number_cell(wire, "cell")
    if t is dict or t is list:
        return _check_raw_json_cell(wire, depth_left)
    raise CodecError(f"{t.__name__} is not a wire cell")


def decode_cell(wire: Any) -> Any:
    """Inverse of :func:`encode_cell` for one parsed wire value; may return DELETED."""
    return _decode_wire_cell(wire, MAX_DEPTH)


# --------------------------------------------------------------------------- payloads


def _unpack(obj: Any, size: int, what: str) -> tuple[Any, Any]:
    if not isinstance(obj, list | tuple) or len(obj) != size:
        raise CodecError(f"{what} must be a {size}-element array")
    if size == 3:
        flag = obj[2]
        if type(flag) is bool or not isinstance(flag, int | float) or flag != 1:
            raise CodecError("Changes must end with 1")
    return obj[0], obj[1]


def _js_order(d: Any, what: str) -> list[str] | None:
    """Check ``d`` is a dict with str keys; return its keys in JavaScript order, or None
    when its own order already is JavaScript's (the common case, even for ``addRow``'s
    ascending numeric ids), so callers can skip reordering."""
    if type(d) is not dict and not isinstance(d, dict):
        raise CodecError(f"{what} must be an object, not {type(d).__name__}")
    seen_other = False
    last = -1
    for k in d:
        if type(k) is not str:
            if not isinstance(k, str):
                raise CodecError(f"{what}: ids must be str, not {type(k).__name__}")
            seen_other = True
        elif k[:1] in _DIGITS and _is_index_key(k):
            n = int(k)
            if seen_other or n < last:
                return js_key_order(d)
            last = n
        else:
            seen_other = True
    return None


def _ordered(d: dict[str, Any], order: list[str] | None) -> dict[str, Any]:
    return d if order is None else {k: d[k] for k in order}


# Numbers whose JavaScript text differs from Python's repr (1e-7, 1e+21, ints beyond
# 2**53) travel through the C encoder as placeholder strings, replaced afterwards by
# their exact text. The placeholder starts with a Unicode noncharacter and a per-process
# random nonce, so no datum can collide with it by accident or by design.
_PLACEHOLDER: Final = "\ufdd0" + secrets.token_hex(8) + "#"
_PLACEHOLDER_RE: Final = re.compile('"' + re.escape(_PLACEHOLDER) + '([0-9]+)"')


def _wire_number(n: int | float, numbers: list[str]) -> Any:
    """Wire value for a plain int/float: itself if the C encoder writes it as JavaScript
    does, an int for integral floats, else a placeholder for its exact text."""
    if type(n) is float:
        if n.is_integer() and -_MAX_SAFE <= n <= _MAX_SAFE:
            return int(n)  # 4.0 -> 4 and -0.0 -> 0, as JavaScript writes them
        if _c_safe_float(n):
            return n
    elif -_MAX_SAFE <= n <= _MAX_SAFE:
        return n
    numbers.append(js_number(n))  # raises CodecError if not finite
    return f"{_PLACEHOLDER}{len(numbers) - 1}"


def _wire_row(row: Any, changes: bool, where: str, numbers: list[str]) -> Any:
    """The wire form of one row (or the values): the same dict when nothing in it needs
    encoding, else a copy with encoded cells."""
    order = _js_order(row, where)
    out: dict[str, Any] | None = None if order is None else {}
    for cid, cell in row.items() if order is None else ((k, row[k]) for k in order):
        t = type(cell)
        if t is str:
            if cell and cell[0] in "\ufffc\ufffd" and (cell[0] == JSON_MARKER or len(cell) == 1):
                raise CodecError(f"{where}/{cid!r}: {_bad_cell(cell)}")
        elif t is int or t is float:
            wire = _wire_number(cell, numbers)
            if wire is not cell:
                cell = wire
                if out is None:
                    out = dict(row)
        elif t is not bool and cell is not None:
            try:
                cell = _wire_cell(cell, changes)
                if type(cell) is not str:
                    cell = _wire_number(cell, numbers)  # from an int/float subclass
            except CodecError as e:
                raise CodecError(f"{where}/{cid!r}: {e}") from None
            if out is None:
                out = dict(row)
        if out is not None:
            out[cid] = cell
    return row if out is None else out


def _encode_payload(tables: Any, values: Any, changes: bool) -> str:
    """Build the wire objects (sharing unchanged rows, ids in JavaScript order) and let
    the C encoder write them; only unusual numbers are patched in afterwards."""
    numbers: list[str] = []
    wire_tables: dict[str, Any] = {}
    tables_order = _js_order(tables, "tables")
    for tid, table in _ordered(tables, tables_order).items():
        if table is DELETED and changes:
            wire_tables[tid] = DELETED_MARKER
            continue
        wire_table: dict[str, Any] = {}
        table_order = _js_order(table, f"table {tid!r}")
        for rid, row in _ordered(table, table_order).items():
            if row is DELETED and changes:
                wire_table[rid] = DELETED_MARKER
            else:
                wire_table[rid] = _wire_row(row, changes, f"cell {tid!r}/{rid!r}", numbers)
        wire_tables[tid] = wire_table
    wire_values = _wire_row(values, changes, "value", numbers)
    payload: list[Any] = [wire_tables, wire_values, 1] if changes else [wire_tables, wire_values]
    try:
        text = _C_ENCODER.encode(payload)
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        raise CodecError(f"{type(e).__name__}: {e}") from None
    if _has_lone_surrogate(text):
        raise CodecError("ids and cells must not contain lone surrogates")
    if numbers:
        text = _PLACEHOLDER_RE.sub(lambda m: numbers[int(m.group(1))], text)
    return text


def _has_lone_surrogate(text: str) -> bool:
    """Faster than a regex scan: UTF-8 encoding fails exactly on surrogate code points."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def encode_content(content: Any) -> str:
    """Encode Content as the ``[tables,values]`` JSON text of HTTP bodies and storage."""
    tables, values = _unpack(content, 2, "Content")
    return _encode_payload(tables, values, False)


def encode_changes(changes: Any) -> str:
    """Encode Changes as ``[tables,values,1]`` exactly as TinyBase's client sends them."""
    tables, values = _unpack(changes, 3, "Changes")
    return _encode_payload(tables, values, True)


def _js_number_cell(n: Any, where: str) -> Any:
    """A parsed number as JavaScript holds it: big ints become doubles, infinity fails."""
    if type(n) is int:
        if -_MAX_SAFE <= n <= _MAX_SAFE:
            return n
        try:
            n = float(n)
        except OverflowError:
            raise CodecError(f"{where}: number overflows") from None
    if not math.isfinite(n):
        raise CodecError(f"{where}: number overflows")
    return n


def _row_where(ids: tuple[str, str] | None) -> str:
    return "values" if ids is None else f"row {ids[0]!r}/{ids[1]!r}"


def _decode_row(
    row_w: Any,
    changes: bool,
    owned: bool,
    ids: tuple[str, str] | None,
    known: set[str] | None = None,
) -> dict[str, Any]:
    """Decode one wire row (``ids`` = (table, row)) or the values (``ids`` None), in place
    when we own it. ``known`` collects ids already seen to be plain (str, not array
    indices) in this table: rows made only of those need no key-order check, which is
    most of a 10-cell row's cost when a whole room is decoded."""
    if type(row_w) is not dict:
        raise CodecError(f"{_row_where(ids)} must be an object")
    if known is not None and known.issuperset(row_w):
        order = None
    else:
        order = _js_order(row_w, _row_where(ids))
        if order is None and known is not None:
            known.update(row_w)
    row = row_w if owned and order is None else {k: row_w[k] for k in (order or row_w)}
    for cid, cell in row.items():
        t = type(cell)
        if t is str:
            if cell and cell[0] in "\ufffc\ufffd":
                if cell == DELETED_MARKER:
                    if not changes:
                        where = _row_where(ids)  # built only for the error message
                        raise CodecError(f"deletion in Content at {where}/{cid!r}")
                    row[cid] = DELETED
                elif cell[0] == JSON_MARKER:
                    row[cid] = _decode_wire_cell(cell, MAX_DEPTH)
        elif t is int:
            if not -_MAX_SAFE <= cell <= _MAX_SAFE:
                row[cid] = _js_number_cell(cell, f"{_row_where(ids)}/{cid!r}")
        elif t is float:
            if cell - cell != 0.0:  # NaN or infinite
                row[cid] = _js_number_cell(cell, f"{_row_where(ids)}/{cid!r}")
        elif t is not bool and cell is not None:
            row[cid] = _decode_wire_cell(cell, MAX_DEPTH - 4)
    return row


def _validate(obj: Any, changes: bool, owned: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    tables_w, values_w = _unpack(obj, 3 if changes else 2, "Changes" if changes else "Content")
    tables: dict[str, Any] = {}
    tables_order = _js_order(tables_w, "tables")
    for tid, table_w in _ordered(tables_w, tables_order).items():
        if changes and table_w == DELETED_MARKER:
            tables[tid] = DELETED
            continue
        table: dict[str, Any] = {}
        table_order = _js_order(table_w, f"table {tid!r}")
        known: set[str] = set()
        for rid, row_w in _ordered(table_w, table_order).items():
            if changes and row_w == DELETED_MARKER:
                table[rid] = DELETED
                continue
            row = _decode_row(row_w, changes, owned, (tid, rid), known)
            if row:
                table[rid] = row
        if table:
            tables[tid] = table
    values = _decode_row(values_w, changes, owned, None)
    return tables, values


def validate_content(obj: Any) -> Content:
    """Validate parsed wire JSON (cells still encoded) as Content; return it decoded.

    Ids come back in JavaScript order (the order a JavaScript peer applies them in);
    empty rows and tables are dropped, as TinyBase's ``setContent`` does. ``obj`` is not
    modified.
    """
    return _validate(obj, False, False)


def validate_changes(obj: Any) -> Changes:
    """Validate parsed wire JSON (cells still encoded) as Changes; return it decoded."""
    tables, values = _validate(obj, True, False)
    return tables, values, 1


def _loads_payload(text: Any) -> Any:
    # Numbers and depth are checked per cell by _validate (cheaper than parse hooks on
    # every number); the C parser raises RecursionError long before the stack is at risk.
    return _loads(text, MAX_DEPTH, MAX_MESSAGE_CHARS, False)


def decode_content(text: Any) -> Content:
    """Parse and validate a ``[tables,values]`` text (HTTP body, 2-element message)."""
    return _validate(_loads_payload(text), False, True)


def decode_changes(text: Any) -> Changes:
    """Parse and validate a ``[tables,values,1]`` text (a ``s`` message payload)."""
    tables, values = _validate(_loads_payload(text), True, True)
    return tables, values, 1


def decode_payload(text: Any) -> Content | Changes:
    """Parse a message payload: 3 elements are Changes, 2 replace the whole Content.

    Mirrors the client's ``setContentOrChanges`` (which checks ``[2] === 1``).
    """
    obj = _loads_payload(text)
    if isinstance(obj, list) and len(obj) == 3:
        tables, values = _validate(obj, True, True)
        return tables, values, 1
    return _validate(obj, False, True)


# --------------------------------------------------------------------------- messages


def encode_message(prefix: str, type_: str, payload: str) -> str:
    """Frame a payload as ``prefix + type + payload`` (TinyBase's ``construct``)."""
    if not isinstance(prefix, str) or not isinstance(type_, str) or len(type_) != 1:
        raise CodecError("prefix must be str and type_ one character")
    if not isinstance(payload, str):
        raise CodecError("payload must be str (encode it first)")
    return prefix + type_ + payload


def decode_message(message: Any, prefix: str) -> tuple[str, str]:
    """Split a message into ``(type, payload)``; CodecError if it is not ours.

    Like TinyBase's ``deconstruct``: the message must be a str longer than the prefix
    and start with it; the type is the one character after the prefix.
    """
    if not isinstance(message, str):
        raise CodecError(f"message must be str, not {type(message).__name__}")
    n = len(prefix)
    if len(message) <= n or not message.startswith(prefix):
        raise CodecError("message does not carry the expected prefix and a type")
    return message[n], message[n + 1 :]
