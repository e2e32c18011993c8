"""Where a PartySocket connects: partysocket 1.3.0's host rule and URL layout.

Pure functions, pinned by a table in the unit tests and by running partysocket itself
in Node on the same cases. The query string (``?_pk=...&...``) is encoded with
JavaScript's number text and key order (``partywidget.jsvalue``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Final, TypeAlias

from partywidget.jsvalue import js_key_order, js_number_str

__all__ = [
    "Query",
    "QueryMapping",
    "QueryValue",
    "is_private_host",
    "party_url",
    "query_string",
    "room_base_url",
    "strip_host",
    "wire_url",
]

QueryValue: TypeAlias = str | int | float | bool | None
QueryMapping: TypeAlias = Mapping[str, QueryValue]
Query: TypeAlias = QueryMapping | Callable[[], QueryMapping] | Callable[[], Awaitable[QueryMapping]]


def is_private_host(host: str) -> bool:
    """partysocket's rule for plain ``ws``: local and private-network hosts.

    Mirrors it exactly, quirks included: ``localhost`` needs a port, and the 172.x
    range is compared as strings (``"172.2.0.1"`` counts as private, like in JS).
    """
    if host.startswith(("localhost:", "127.0.0.1:", "192.168.", "10.", "[::ffff:7f00:1]:")):
        return True
    if host.startswith("172."):
        second = host.split(".")[1]
        return "16" <= second <= "31"
    return False


def strip_host(raw_host: str) -> str:
    """The host as partysocket keeps it: without scheme or trailing slash."""
    host = raw_host
    for scheme in ("http://", "https://", "ws://", "wss://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
            break
    if host.endswith("/"):
        host = host[:-1]
    return host


def room_base_url(
    host: str,
    room: str,
    party: str,
    path: str | None,
    prefix: str | None,
    base_path: str | None,
    protocol: str | None,
) -> str:
    """``{protocol}://{host}/{base}{/path}`` without query, as partysocket's ``partyUrl``."""
    if path is not None and path.startswith("/"):
        raise ValueError("path must not start with a slash")
    scheme = protocol or ("ws" if is_private_host(host) else "wss")
    base = base_path or f"{prefix or 'parties'}/{party}/{room}"
    return f"{scheme}://{host}/{base}{'/' + path if path else ''}"


# Characters a WHATWG URL parser percent-encodes in a path; websockets sends the path
# as given, so a room like "my room" must be encoded here as a browser would.
_PATH_ENCODE: Final = frozenset(' "<>`{}')


def wire_url(url: str) -> str:
    """The URL as sent on the wire: path characters a browser would escape, escaped."""
    scheme_end = url.index("://") + 3
    path_start = url.find("/", scheme_end)
    if path_start < 0:
        return url
    query_start = url.find("?", path_start)
    if query_start < 0:
        query_start = len(url)
    path = url[path_start:query_start]
    out: list[str] = []
    for ch in path:
        if ch in _PATH_ENCODE or ord(ch) < 0x21 or ord(ch) >= 0x7F:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            out.append(ch)
    return url[:path_start] + "".join(out) + url[query_start:]


def _query_value_text(value: QueryValue) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return js_number_str(value)
    raise TypeError(f"query values must be str, int, float, bool or None, not {type(value)!r}")


_FORM_SAFE: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789*-._")


def _form_encode(text: str) -> str:
    """application/x-www-form-urlencoded, byte for byte as ``URLSearchParams``."""
    # Lone surrogates become U+FFFD, as JS converts to USVString.
    clean = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    out: list[str] = []
    for byte in clean.encode("utf-8"):
        if byte in _FORM_SAFE:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def query_string(pk: str, query: QueryMapping | None) -> str:
    pairs: list[tuple[str, str]] = [("_pk", pk)]
    if query:
        if not isinstance(query, Mapping):
            raise TypeError(f"query must be a mapping, not {type(query)!r}")
        for key in js_key_order([str(k) for k in query]):
            value = query[key]
            if value is not None:
                pairs.append((key, _query_value_text(value)))
    return "&".join(f"{_form_encode(k)}={_form_encode(v)}" for k, v in pairs)


def party_url(
    host: str,
    room: str,
    *,
    party: str | None = "main",
    id: str,
    query: QueryMapping | None = None,
    protocol: str | None = None,
    path: str | None = None,
    prefix: str | None = None,
    base_path: str | None = None,
) -> str:
    """The WebSocket URL partysocket 1.3.0 builds for these options (query already
    evaluated), e.g. ``ws://127.0.0.1:1999/parties/main/r1?_pk=abc&token=t``."""
    base = room_base_url(
        strip_host(host),
        room,
        "main" if party is None else party,
        path,
        prefix,
        base_path,
        protocol,
    )
    return f"{base}?{query_string(id, query)}"
