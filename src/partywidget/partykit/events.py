"""The events a :class:`~partywidget.partykit.socket.PartySocket` dispatches.

They mirror the browser's WebSocket events (``open``, ``message``, ``close``,
``error``) as partysocket dispatches them, as small frozen dataclasses so listeners and
tests can compare them by value.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, TypeAlias

from websockets.exceptions import InvalidStatus
from websockets.frames import Close

__all__ = [
    "CLOSED",
    "CLOSING",
    "CONNECTING",
    "EVENT_TYPES",
    "OPEN",
    "CloseEvent",
    "Data",
    "ErrorEvent",
    "EventTarget",
    "EventType",
    "Listener",
    "MessageEvent",
    "OpenEvent",
    "SocketEvent",
    "close_event",
    "error_event",
]

# Listener failures are the socket's to report.
_log = logging.getLogger("partywidget.partykit.socket")

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


def close_event(rcvd: Close | None, sent: Close | None) -> CloseEvent:
    """A connection's close event from the close frames received and sent.

    The server's frame if one came; else the one we sent when failing the connection
    ourselves (1009 message too big, 1011 keepalive timeout), which says more than the
    browser's bare 1006; else 1006 (connection lost).
    """
    if rcvd is not None:
        code, reason = rcvd.code, rcvd.reason
    elif sent is not None:
        code, reason = sent.code, sent.reason
    else:
        code, reason = 1006, ""
    return CloseEvent(code, reason, rcvd is not None and sent is not None)


SocketEvent: TypeAlias = OpenEvent | MessageEvent | CloseEvent | ErrorEvent


class EventTarget:
    """Listeners by event type, called in the order they were added (the DOM's
    ``EventTarget``, which partysocket's socket is).

    A listener's exception is logged, never raised to the dispatcher: one faulty
    listener must not break the socket or starve the others. A listener returning an
    awaitable (a coroutine function) has it run by ``spawn`` as a task.
    """

    def __init__(self, spawn: Callable[[Coroutine[Any, Any, None]], object]) -> None:
        self._spawn = spawn
        self._listeners: dict[str, list[Listener]] = {t: [] for t in EVENT_TYPES}

    def add(self, type: EventType, listener: Listener) -> None:
        listeners = self._listeners_for(type)
        if listener not in listeners:
            listeners.append(listener)

    def remove(self, type: EventType, listener: Listener) -> None:
        listeners = self._listeners_for(type)
        with contextlib.suppress(ValueError):
            listeners.remove(listener)

    def _listeners_for(self, type: str) -> list[Listener]:
        try:
            return self._listeners[type]
        except KeyError:
            raise ValueError(f"unknown event type {type!r}; use one of {EVENT_TYPES}") from None

    def dispatch(self, event: SocketEvent) -> None:
        for listener in list(self._listeners[event.type]):
            try:
                result = listener(event)
            except Exception:
                _log.exception("PartySocket %s listener %r failed", event.type, listener)
                continue
            if inspect.isawaitable(result):
                self._spawn(_await_listener(result, event.type, listener))


async def _await_listener(result: Awaitable[object], type: str, listener: Listener) -> None:
    try:
        await result
    except Exception:
        _log.exception("PartySocket %s listener %r failed", type, listener)
