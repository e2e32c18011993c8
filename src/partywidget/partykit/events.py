"""The events a :class:`~partywidget.partykit.socket.PartySocket` dispatches.

They mirror the browser's WebSocket events (``open``, ``message``, ``close``,
``error``) as partysocket dispatches them, as small frozen dataclasses so listeners and
tests can compare them by value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, TypeAlias

from websockets.exceptions import InvalidStatus

__all__ = [
    "CLOSED",
    "CLOSING",
    "CONNECTING",
    "EVENT_TYPES",
    "OPEN",
    "CloseEvent",
    "Data",
    "ErrorEvent",
    "EventType",
    "Listener",
    "MessageEvent",
    "OpenEvent",
    "SocketEvent",
    "error_event",
]

# Ready states, the values of the WebSocket API constants.
CONNECTING: Final = 0
OPEN: Final = 1
CLOSING: Final = 2
CLOSED: Final = 3

Data: TypeAlias = str | bytes
EventType: TypeAlias = Literal["open", "message", "close", "error"]
EVENT_TYPES: Final[tuple[str, ...]] = ("open", "message", "close", "error")
Listener: TypeAlias = Callable[[Any], object]

#: How much of a refusing server's response body an :class:`ErrorEvent` keeps.
MAX_REASON_CHARS: Final = 1000


@dataclass(frozen=True)
class OpenEvent:
    """The connection to ``url`` is open (queued messages were already handed over)."""

    url: str
    type: ClassVar[str] = "open"


@dataclass(frozen=True)
class MessageEvent:
    """One message from the server: ``str`` for text frames, ``bytes`` for binary."""

    data: Data
    type: ClassVar[str] = "message"


@dataclass(frozen=True)
class CloseEvent:
    """A connection or connection attempt ended (the socket may reconnect after it).

    ``code`` is the server's close code; if none was received, the code this socket
    sent when it failed the connection (1009 message too big, 1011 keepalive timeout),
    else 1006 (connection lost, failed attempt); or the code passed to
    ``close()``/``reconnect()``. ``was_clean`` is False unless the server's close frame
    arrived and ours was sent.
    """

    code: int = 1000
    reason: str = ""
    was_clean: bool = True
    type: ClassVar[str] = "close"


@dataclass(frozen=True)
class ErrorEvent:
    """A connection attempt failed; ``error`` is the exception (``TimeoutError("TIMEOUT")``
    for ``connection_timeout``).

    When the server answered the WebSocket handshake with an HTTP response instead of
    accepting it (403 for a bad token, 500 for a crash), ``status`` is its status code
    and ``reason`` its body text (else its reason phrase): a browser hides both, but a
    client that cannot tell "refused" from "unreachable" retries a refusal forever.
    Otherwise ``status`` is None and ``reason`` the error's text.
    """

    error: BaseException
    status: int | None = None
    reason: str = ""
    type: ClassVar[str] = "error"

    @property
    def message(self) -> str:
        return str(self.error)

    @property
    def refused(self) -> bool:
        """The server refused the connection (it answered with an HTTP status)."""
        return self.status is not None


def error_event(error: BaseException) -> ErrorEvent:
    """The :class:`ErrorEvent` for a failed attempt, with the refusal's status and reason
    when the server answered the handshake with an HTTP error."""
    if isinstance(error, InvalidStatus):
        response = error.response
        body = response.body or b""
        text = body.decode("utf-8", "replace").strip()[:MAX_REASON_CHARS]
        return ErrorEvent(error, response.status_code, text or response.reason_phrase)
    return ErrorEvent(error, None, str(error) or type(error).__name__)


SocketEvent: TypeAlias = OpenEvent | MessageEvent | CloseEvent | ErrorEvent
