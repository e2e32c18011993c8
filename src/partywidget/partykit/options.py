"""``SocketOptions``: how a PartySocket connects, apart from which room it joins.

Identity -- ``host``, ``room``, ``party``, ``id``, ``query``, ``protocol`` -- is given to
the :class:`~partywidget.partykit.socket.PartySocket` itself, because it differs from
socket to socket. Everything here can be shared by every socket of a deployment: the
URL layout (``path``, ``prefix``, ``base_path``), handshake extras, partysocket's
backoff and queue, keepalive and limits. So one ``SocketOptions`` (or a mapping of its
fields, snake_case or partysocket's camelCase, see
:func:`partywidget._options.options_from`) configures many sockets.

Durations are in **seconds** whatever the spelling (partysocket uses milliseconds):
``{"minReconnectionDelay": 1}`` means one second. :meth:`SocketOptions.from_partysocket`
converts a JavaScript partysocket options object, milliseconds and all.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from websockets.typing import Subprotocol

from partywidget._options import camel_case, options_from

from . import _wsinternals

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "SocketOptions",
    "check_name",
    "connect_arguments",
    "reconnection_delay",
    "socket_options",
]

# 64 MiB, like the codec's message limit: browsers have no receive limit, and a room's
# broadcast may legitimately be large; websockets' 1 MiB default would close with 1009.
DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024 * 1024

#: partysocket's options measured in milliseconds (ours are in seconds).
_MILLISECOND_OPTIONS: Final = frozenset(
    {"min_reconnection_delay", "max_reconnection_delay", "min_uptime", "connection_timeout"}
)


@dataclass(frozen=True)
class SocketOptions:
    """Tuning of a PartySocket; defaults are partysocket 1.3.0's (in seconds).

    ``path``/``prefix``/``base_path`` shape the URL as partysocket's options of the same
    names do. ``protocols`` are WebSocket subprotocols and ``headers`` extra HTTP headers
    for the handshake. Backoff: attempt *n* waits ``min_reconnection_delay *
    reconnection_delay_grow_factor ** (n - 1)``, at most ``max_reconnection_delay``; a
    connection up ``min_uptime`` resets *n*; ``connection_timeout`` bounds one attempt;
    after ``max_retries`` failed retries the socket gives up. ``max_enqueued_messages``
    caps the queue while disconnected; ``start_closed`` waits for ``reconnect()``.
    Keepalive (``ping_interval``/``ping_timeout``), ``close_timeout`` and
    ``max_message_size`` (bytes received; None: no limit) go to websockets, as do
    ``connect_kwargs`` (``ssl=``, ``proxy=None``, ...). ``debug`` logs the socket's
    decisions at INFO instead of DEBUG.
    """

    path: str | None = None
    prefix: str | None = None
    base_path: str | None = None
    protocols: Sequence[str] | None = None
    headers: Mapping[str, str] | None = None
    min_reconnection_delay: float = 3.0
    max_reconnection_delay: float = 10.0
    reconnection_delay_grow_factor: float = 1.3
    min_uptime: float = 5.0
    connection_timeout: float = 4.0
    max_retries: float = math.inf
    max_enqueued_messages: float = math.inf
    start_closed: bool = False
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float | None = 10.0
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    connect_kwargs: Mapping[str, Any] | None = None
    debug: bool = False

    def __post_init__(self) -> None:
        _check_path(self.path)
        for name in ("min_reconnection_delay", "max_reconnection_delay", "min_uptime"):
            _check_non_negative(name, getattr(self, name))
        _check_non_negative("connection_timeout", self.connection_timeout)
        _check_positive("reconnection_delay_grow_factor", self.reconnection_delay_grow_factor)
        for name in ("max_retries", "max_enqueued_messages"):
            _check_non_negative(name, getattr(self, name))
        for name in ("ping_interval", "ping_timeout", "close_timeout", "max_message_size"):
            value = getattr(self, name)
            if value is not None:
                _check_non_negative(name, value)
        if isinstance(self.protocols, str):
            raise TypeError("protocols must be a sequence of strings, not one string")

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(field.name for field in dataclasses.fields(cls))

    @classmethod
    def from_partysocket(cls, options: Mapping[str, Any]) -> SocketOptions:
        """From a JavaScript partysocket options object: camelCase keys, durations in
        milliseconds (converted to seconds). Identity keys (``host``, ``room``, ...)
        belong to the PartySocket and are refused here."""
        fields = options_from(cls, options)
        seconds = {
            name: getattr(fields, name) / 1000
            for name in _MILLISECOND_OPTIONS
            if _given(options, name)
        }
        return dataclasses.replace(fields, **seconds)

    def reconnection_delay(self, retry_count: int) -> float:
        """The backoff before attempt number ``retry_count`` (0 for the first)."""
        return reconnection_delay(
            retry_count,
            self.min_reconnection_delay,
            self.max_reconnection_delay,
            self.reconnection_delay_grow_factor,
        )


def _given(options: Mapping[str, Any], name: str) -> bool:
    return name in options or camel_case(name) in options


def reconnection_delay(retry_count: int, min_delay: float, max_delay: float, grow: float) -> float:
    """partysocket's backoff: 0 for the first attempt, then ``min_delay * grow ** (n-1)``
    capped at ``max_delay``."""
    if retry_count <= 0:
        return 0.0
    try:
        delay = min_delay * grow ** (retry_count - 1)
    except OverflowError:  # hours of failures: JavaScript would say Infinity
        return max_delay
    return min(delay, max_delay)


def check_name(kind: str, text: str | None) -> None:
    """A URL part (party, room, path) must not start a query or fragment."""
    if text is not None and ("?" in text or "#" in text):
        raise ValueError(f"{kind} must not contain '?' or '#': {text!r}")


def _check_path(path: str | None) -> None:
    check_name("path", path)
    if path is not None and path.startswith("/"):
        raise ValueError("path must not start with a slash")


def _check_non_negative(name: str, value: float) -> None:
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{name} must be >= 0, not {value!r}")


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, not {value!r}")


def socket_options(
    options: SocketOptions | Mapping[str, Any] | None, fields: Mapping[str, Any]
) -> SocketOptions:
    """``options`` with ``fields`` (a constructor's keywords) applied; a keyword that is
    no option is a TypeError, as for any Python call."""
    unknown = sorted(set(fields) - SocketOptions.field_names())
    if unknown:
        raise TypeError(f"PartySocket() got unexpected keyword arguments: {unknown}")
    return options_from(SocketOptions, options, **fields)


def connect_arguments(options: SocketOptions) -> dict[str, Any]:
    """Keyword arguments for ``websockets.asyncio.client.connect``."""
    protocols = options.protocols
    kwargs: dict[str, Any] = {
        "subprotocols": [Subprotocol(p) for p in protocols] if protocols else None,
        "additional_headers": dict(options.headers) if options.headers else None,
        "open_timeout": options.connection_timeout,
        "ping_interval": options.ping_interval,
        "ping_timeout": options.ping_timeout,
        "close_timeout": options.close_timeout,
        "max_size": options.max_message_size,
        **(options.connect_kwargs or {}),
    }
    kwargs.setdefault("create_connection", _wsinternals.connection_class())
    return kwargs
