"""Where a PartySocket connects: partysocket 1.3.0's host rule and URL layout.

Pure functions, pinned by a table in the unit tests and by running partysocket itself
in Node on the same cases. The query string (``?_pk=...&...``) is encoded with
JavaScript's number and key-order rules next to the socket.
"""

from __future__ import annotations

from typing import Final

__all__ = ["is_private_host", "room_base_url", "strip_host", "wire_url"]


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
