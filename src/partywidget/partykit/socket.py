"""``PartySocket``: partysocket 1.3.0's reconnecting WebSocket client, on asyncio.

Why a port and not a plain ``websockets.connect`` loop: TinyBase's PartyKit persister is
written against partysocket's behaviour (the ``_pk`` connection id kept across
reconnects, the URL layout, the message queue while disconnected, the backoff), and a
Python client sharing rooms with JavaScript clients must look the same to the server.

Semantics follow ``node_modules/partysocket/dist/{index,ws}.js``:

- URL ``{ws|wss}://{host}/{prefix or "parties"}/{party}/{room}{/path}?_pk={id}&{query}``
  (or ``/{base_path}`` instead of the ``parties/...`` part); ``ws`` for local/private
  hosts by partysocket's host rule, ``wss`` otherwise, unless ``protocol`` is given.
- ``id`` (``_pk``) is chosen once (a UUID unless given) and kept across reconnects.
- ``query`` is a mapping or a sync/async callable returning one; it is evaluated before
  every connection attempt, so a callable can hand out fresh auth tokens. A sync
  callable runs on the event loop, so it must be quick; fetch tokens over the network
  in an async one. (partysocket freezes a plain object at construction; we re-read the
  mapping, so mutating it also works.) Values are str, int, float or bool (written as
  JavaScript's ``String()`` would); None omits the key.
- Backoff: attempt *n* (``retry_count`` = n, the first connection being 0) waits
  ``min(min_reconnection_delay * grow_factor ** (n - 1), max_reconnection_delay)``,
  0 for n = 0. A connection that stays open ``min_uptime`` seconds resets the count, so
  a later drop waits ``min_reconnection_delay`` again. After ``max_retries`` failed
  retries the socket stays closed. ``reconnect()`` resets the count and connects at once.
- ``send()`` while not open queues (up to ``max_enqueued_messages``, further messages
  are dropped) and the queue is flushed in order when the next connection opens, before
  the ``open`` event. It returns True if the message went to an open connection.
- Events ``open``, ``message``, ``close``, ``error``. Every failed attempt dispatches
  ``error`` then ``close`` (code 1006, reason ``"timeout"`` for ``connection_timeout``);
  every drop of an open connection dispatches ``close`` with the server's code;
  ``close()``/``reconnect()`` dispatch ``close`` with their own code right away (as
  partysocket 1.3.0 does) if a connection or attempt was in progress.

How it starts (Python has no implicit loop): if an event loop is running in the thread
that constructs the socket, the connection task is scheduled on it immediately, like
partysocket connecting in its constructor. Otherwise nothing happens until the socket is
first used from a coroutine: ``await socket.start()``, ``async with socket``,
``await socket.wait_open()`` or ``async for message in socket``.

Threads: everything runs on that one loop. ``send()``, ``close()`` and ``reconnect()``
may be called from another thread (the widget calls ``send`` from the kernel's main
thread while the loop runs on a daemon thread); they hand the work to the loop with
``call_soon_threadsafe``, preserving order between calls made from the same thread.
From another thread ``send()``'s result is the best knowledge at the time of the call
(was the connection open), not a guarantee.

Robustness: no task ever ends with an unhandled exception. Connection failures become
``error`` events; exceptions raised by listeners (sync or async) are logged on the
``partywidget.partykit.socket`` logger and never affect the socket. Keepalive pings
(``ping_interval``/``ping_timeout``) detect dead connections, including the case of a
notebook cell blocking the loop for longer than the server's keepalive: the server drops
the connection, the socket sees the close when the loop resumes, and reconnects.

Improvement over partysocket, same wire: a message accepted by ``send()`` while open but
not yet written to the network when the connection drops stays at the head of the queue
and is sent on the next connection, instead of being lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Final, Literal, TypeAlias

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import Event, State
from websockets.typing import Subprotocol

from partywidget.jsvalue import js_key_order, js_number_str

__all__ = [
    "CLOSED",
    "CLOSING",
    "CONNECTING",
    "OPEN",
    "CloseEvent",
    "Data",
    "ErrorEvent",
    "EventType",
    "MessageEvent",
    "OpenEvent",
    "PartySocket",
    "Query",
    "QueryMapping",
    "SocketEvent",
    "party_url",
]

_log = logging.getLogger(__name__)

# Ready states, the values of the WebSocket API constants.
CONNECTING: Final = 0
OPEN: Final = 1
CLOSING: Final = 2
CLOSED: Final = 3

Data: TypeAlias = str | bytes
QueryValue: TypeAlias = str | int | float | bool | None
QueryMapping: TypeAlias = Mapping[str, QueryValue]
Query: TypeAlias = QueryMapping | Callable[[], QueryMapping] | Callable[[], Awaitable[QueryMapping]]
EventType: TypeAlias = Literal["open", "message", "close", "error"]
_EVENT_TYPES: Final[tuple[str, ...]] = ("open", "message", "close", "error")

# 64 MiB, like the codec's message limit: browsers have no receive limit, and a room's
# broadcast may legitimately be large; websockets' 1 MiB default would close with 1009.
DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024 * 1024


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
    for ``connection_timeout``)."""

    error: BaseException
    type: ClassVar[str] = "error"

    @property
    def message(self) -> str:
        return str(self.error)


SocketEvent: TypeAlias = OpenEvent | MessageEvent | CloseEvent | ErrorEvent
Listener: TypeAlias = Callable[[Any], object]


class _End:
    """Sentinel ending async iteration when the socket is closed for good."""


_END: Final = _End()


# --------------------------------------------------------------------------- URLs


def _is_private_host(host: str) -> bool:
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


def _strip_host(raw_host: str) -> str:
    host = raw_host
    for scheme in ("http://", "https://", "ws://", "wss://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
            break
    if host.endswith("/"):
        host = host[:-1]
    return host


def _room_base_url(
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
    scheme = protocol or ("ws" if _is_private_host(host) else "wss")
    base = base_path or f"{prefix or 'parties'}/{party}/{room}"
    return f"{scheme}://{host}/{base}{'/' + path if path else ''}"


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


def _query_string(pk: str, query: QueryMapping | None) -> str:
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
    base = _room_base_url(
        _strip_host(host),
        room,
        "main" if party is None else party,
        path,
        prefix,
        base_path,
        protocol,
    )
    return f"{base}?{_query_string(id, query)}"


# Characters a WHATWG URL parser percent-encodes in a path; websockets sends the path
# as given, so a room like "my room" must be encoded here as a browser would.
_PATH_ENCODE: Final = frozenset(' "<>`{}')


def _wire_url(url: str) -> str:
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


# --------------------------------------------------------------------------- socket


def _validate_close_code(code: int) -> None:
    # The WebSocket API only lets applications send 1000 or 3000-4999.
    if code != 1000 and not 3000 <= code <= 4999:
        raise ValueError(f"close code must be 1000 or in 3000-4999, not {code}")


class PartySocket:
    """A reconnecting PartyKit WebSocket client; see the module docstring.

    ``async with PartySocket("127.0.0.1:1999", "room") as socket:`` starts it and closes
    it on exit; ``async for message in socket`` yields incoming messages until the
    socket is closed for good.
    """

    CONNECTING: ClassVar[int] = CONNECTING
    OPEN: ClassVar[int] = OPEN
    CLOSING: ClassVar[int] = CLOSING
    CLOSED: ClassVar[int] = CLOSED

    def __init__(
        self,
        host: str,
        room: str,
        *,
        party: str | None = "main",
        id: str | None = None,
        query: Query | None = None,
        protocol: str | None = None,
        path: str | None = None,
        prefix: str | None = None,
        base_path: str | None = None,
        protocols: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        min_reconnection_delay: float = 3.0,
        max_reconnection_delay: float = 10.0,
        reconnection_delay_grow_factor: float = 1.3,
        min_uptime: float = 5.0,
        connection_timeout: float = 4.0,
        max_retries: float = math.inf,
        max_enqueued_messages: float = math.inf,
        start_closed: bool = False,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float | None = 10.0,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        connect_kwargs: Mapping[str, Any] | None = None,
        debug: bool = False,
    ) -> None:
        """Create the socket (and start connecting if a loop is running here).

        Delays and timeouts are in seconds (partysocket uses milliseconds). ``headers``
        are extra HTTP headers for the handshake; ``connect_kwargs`` go to
        ``websockets.asyncio.client.connect`` as is (``ssl=``, ``proxy=None``, ...).
        """
        if not room and not base_path:
            raise ValueError("either room or base_path must be provided")
        for name_, text in (("party", party), ("room", room), ("path", path)):
            if text is not None and ("?" in text or "#" in text):
                raise ValueError(f"{name_} must not contain '?' or '#': {text!r}")
            if text is not None and name_ != "path" and "/" in text:
                _log.warning("PartySocket: %s name %r contains '/'", name_, text)
        for name_, value in (
            ("min_reconnection_delay", min_reconnection_delay),
            ("max_reconnection_delay", max_reconnection_delay),
            ("min_uptime", min_uptime),
            ("connection_timeout", connection_timeout),
        ):
            if not value >= 0:
                raise ValueError(f"{name_} must be >= 0, not {value!r}")
        if not callable(query) and query is not None:
            _query_string("", query)  # fail early on bad values

        self.host: str = _strip_host(host)
        self.room: str = room
        self.name: str = "main" if party is None else party
        self.path: str = f"/{path}" if path else ""
        self.base_path: str | None = base_path
        self.id: str = id or str(uuid.uuid4())
        self.room_url: str = _room_base_url(
            self.host, room, self.name, path, prefix, base_path, protocol
        )
        #: The URL of the last connection attempt ("" before the first).
        self.url: str = ""
        self.party_socket_options: dict[str, Any] = {
            "host": host,
            "room": room,
            "party": party,
            "id": id,
            "query": query,
            "protocol": protocol,
            "path": path,
            "prefix": prefix,
            "base_path": base_path,
            "protocols": protocols,
            "headers": headers,
            "min_reconnection_delay": min_reconnection_delay,
            "max_reconnection_delay": max_reconnection_delay,
            "reconnection_delay_grow_factor": reconnection_delay_grow_factor,
            "min_uptime": min_uptime,
            "connection_timeout": connection_timeout,
            "max_retries": max_retries,
            "max_enqueued_messages": max_enqueued_messages,
            "start_closed": start_closed,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "max_message_size": max_message_size,
            "connect_kwargs": connect_kwargs,
            "debug": debug,
        }
        #: The backoff delay computed for the latest attempt (0 for immediate ones).
        self.last_delay: float = 0.0

        self._query = query
        self._protocols = protocols
        self._headers = dict(headers) if headers else None
        self._min_delay = float(min_reconnection_delay)
        self._max_delay = float(max_reconnection_delay)
        self._grow = float(reconnection_delay_grow_factor)
        self._min_uptime = float(min_uptime)
        self._connection_timeout = float(connection_timeout)
        self._max_retries = max_retries
        self._max_enqueued = max_enqueued_messages
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        self._max_size = max_message_size
        self._connect_kwargs = dict(connect_kwargs or {})
        self._debug_enabled = debug

        self._listeners: dict[str, list[Listener]] = {t: [] for t in _EVENT_TYPES}
        self._queue: deque[Data] = deque()
        self._retry_count = -1
        self._should_reconnect = not start_closed
        self._close_called = False
        self._warned_closed_send = False
        self._started = False
        self._done = False  # closed for good (close() or max retries): iterators end
        self._state = CLOSED if start_closed else CONNECTING
        self._attempting = False
        self._gen = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._writer_wake = asyncio.Event()
        # The connection whose writer task is idle (waiting for the wake event): only
        # then may send() write directly (see _write_now) without reordering messages.
        self._writer_idle_ws: ClientConnection | None = None
        self._ws: ClientConnection | None = None
        self._uptime_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._iterators: weakref.WeakSet[_MessageIterator] = weakref.WeakSet()
        self._closing: set[asyncio.Task[Any]] = set()
        self._open_waiters: list[asyncio.Future[None]] = []

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._loop = loop
        if self._should_reconnect:
            self._start_runner()

    # ------------------------------------------------------------------ properties

    @property
    def ready_state(self) -> int:
        """CONNECTING, OPEN, CLOSING or CLOSED, like ``WebSocket.readyState``.

        As in partysocket, CLOSED also covers the wait between reconnection attempts;
        ``should_reconnect`` tells whether the socket will try again.
        """
        if self._close_called:
            return CLOSED
        ws = self._ws
        if ws is not None:
            return int(ws.protocol.state)
        return self._state

    @property
    def retry_count(self) -> int:
        """Attempts since the last connection that stayed up ``min_uptime`` (or since
        start/``reconnect()``); 0 for the first attempt."""
        return max(self._retry_count, 0)

    @property
    def should_reconnect(self) -> bool:
        return self._should_reconnect

    @property
    def buffered_amount(self) -> int:
        """Characters/bytes accepted by ``send()`` and not yet written to a connection."""
        return sum(len(m) for m in self._queue)

    def reconnection_delay(self, retry_count: int) -> float:
        """The backoff before attempt number ``retry_count`` (partysocket's formula)."""
        if retry_count <= 0:
            return 0.0
        try:
            delay = self._min_delay * self._grow ** (retry_count - 1)
        except OverflowError:  # hours of failures: JavaScript would say Infinity
            return self._max_delay
        return min(delay, self._max_delay)

    async def resolve_url(self) -> str:
        """The URL the next attempt would use (evaluates ``query`` if it is callable)."""
        query: Any = self._query
        if callable(query):
            query = query()
            if inspect.isawaitable(query):
                query = await query
        return f"{self.room_url}?{_query_string(self.id, query)}"

    # ------------------------------------------------------------------ listeners

    def add_event_listener(self, type: EventType, listener: Listener) -> None:
        """Call ``listener(event)`` for each ``type`` event; a coroutine function's
        coroutine is run as a task. Adding the same listener twice has no effect."""
        listeners = self._listeners_for(type)
        if listener not in listeners:
            listeners.append(listener)

    def remove_event_listener(self, type: EventType, listener: Listener) -> None:
        listeners = self._listeners_for(type)
        with contextlib.suppress(ValueError):
            listeners.remove(listener)

    def _listeners_for(self, type: str) -> list[Listener]:
        try:
            return self._listeners[type]
        except KeyError:
            raise ValueError(f"unknown event type {type!r}; use one of {_EVENT_TYPES}") from None

    def _dispatch(self, event: SocketEvent) -> None:
        self._trace("event %s %r", event.type, event)
        for listener in list(self._listeners[event.type]):
            try:
                result = listener(event)
            except Exception:
                _log.exception("PartySocket %s listener %r failed", event.type, listener)
                continue
            if inspect.isawaitable(result):
                self._spawn(self._await_listener(result, event.type, listener))

    @staticmethod
    async def _await_listener(result: Awaitable[object], type: str, listener: Listener) -> None:
        try:
            await result
        except Exception:
            _log.exception("PartySocket %s listener %r failed", type, listener)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind to the running loop and connect (unless ``start_closed``); idempotent."""
        self._bind_running_loop()
        if not self._started and self._should_reconnect:
            self._start_runner()

    async def __aenter__(self) -> PartySocket:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def wait_open(self, timeout: float | None = None) -> None:
        """Wait until the socket is open. Raises ``TimeoutError`` after ``timeout``
        seconds and ``ConnectionError`` if it is closed for good meanwhile."""
        await self.start()
        if self.ready_state == OPEN:
            return
        if self._done:
            raise ConnectionError("PartySocket is closed")
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._open_waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        finally:
            with contextlib.suppress(ValueError):
                self._open_waiters.remove(waiter)

    def __aiter__(self) -> AsyncIterator[Data]:
        """Iterate over incoming messages until the socket is closed for good.

        Each iterator gets every message that arrives after ``__aiter__`` (so none is
        missed between creating it and the first ``await``); the socket only holds it
        weakly, so an abandoned iterator stops buffering when it is garbage collected.
        """
        iterator = _MessageIterator(self)
        self._iterators.add(iterator)
        return iterator

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close for good: no more reconnects. Messages sent afterwards are queued and
        only delivered if ``reconnect()`` is called. Safe from any thread."""
        _validate_close_code(code)
        if not self._call_on_loop(self._do_close, code, reason):
            self._do_close(code, reason)

    async def aclose(self, code: int = 1000, reason: str = "", timeout: float | None = 1.0) -> None:
        """``close()``, then wait for the internal tasks to end and, up to ``timeout``
        seconds, for the server to complete the closing handshake.

        Why bounded: PartyKit's dev server (workerd) never answers a client's close
        frame; the connection is then dropped in the background after
        ``close_timeout``, and ``async with`` should not wait for that.
        """
        current = asyncio.current_task()
        # Our own tasks only: async listeners' tasks may run as long as they like.
        internal = [t for t in (self._runner, self._writer) if t is not None and t is not current]
        self.close(code, reason)
        if internal:
            await asyncio.gather(*internal, return_exceptions=True)
        closing = [t for t in self._closing if t is not current]
        if closing:
            await asyncio.wait(closing, timeout=timeout)

    def reconnect(self, code: int | None = None, reason: str | None = None) -> None:
        """Close the current connection (if any, dispatching ``close``) and connect again
        at once with a fresh retry count. Also starts a ``start_closed`` socket or one
        that was closed. Safe from any thread; needs a loop (running here or bound)."""
        if code is not None:
            _validate_close_code(code)
        if self._loop is None:
            self._bind_running_loop()
        if not self._call_on_loop(self._do_reconnect, code, reason):
            self._do_reconnect(code, reason)

    # ------------------------------------------------------------------ sending

    def send(self, data: str | bytes | bytearray | memoryview) -> bool:
        """Send ``data`` now (True) or queue it for the next connection (False; dropped
        if ``max_enqueued_messages`` is reached). Safe from any thread."""
        message: Data
        if isinstance(data, str | bytes):
            message = data
        elif isinstance(data, bytearray | memoryview):
            message = bytes(data)
        else:
            raise TypeError(f"data must be str or bytes, not {type(data)!r}")
        if self._on_loop_thread():
            return self._send_on_loop(message)
        was_open = self.ready_state == OPEN
        if self._call_on_loop(self._send_on_loop, message):
            return was_open
        return self._send_on_loop(message)  # loop gone: just queue

    def _send_on_loop(self, message: Data) -> bool:
        ws = self._ws
        if ws is not None and ws.protocol.state is State.OPEN and not self._close_called:
            if self._writer_idle_ws is ws and not self._queue and _write_now(ws, message):
                return True
            self._queue.append(message)
            self._writer_wake.set()
            return True
        if self._close_called and not self._warned_closed_send:
            self._warned_closed_send = True
            _log.warning(
                "PartySocket.send() after close(): the message is queued and only "
                "delivered if reconnect() is called"
            )
        if len(self._queue) < self._max_enqueued:
            self._queue.append(message)
        return False

    def drain_queued_messages(self) -> list[Data]:
        """Remove and return the messages not yet written to any connection."""
        messages = list(self._queue)
        self._queue.clear()
        return messages

    # ------------------------------------------------------------------ internals

    def _trace(self, msg: str, *args: object) -> None:
        _log.log(
            logging.INFO if self._debug_enabled else logging.DEBUG, "PartySocket " + msg, *args
        )

    def _bind_running_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("PartySocket is bound to another event loop")

    def _on_loop_thread(self) -> bool:
        if self._loop is None:
            return True
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _call_on_loop(self, fn: Callable[..., object], *args: object) -> bool:
        """Run ``fn`` on the loop from another thread; False if the caller should run it
        itself (already on the loop, no loop bound, or the loop is closed)."""
        if self._on_loop_thread():
            return False
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            return False
        return True

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        assert self._loop is not None
        task: asyncio.Task[Any] = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("PartySocket internal task failed", exc_info=task.exception())

    def _start_runner(self) -> None:
        self._started = True
        self._done = False
        self._gen += 1
        self._runner = self._spawn(self._run(self._gen))

    def _stop_current(self, code: int, reason: str) -> bool:
        """End the runner, writer and connection; True if a connection or attempt was
        in progress (then the caller dispatches a close event)."""
        self._gen += 1
        had_connection = self._ws is not None or self._attempting
        self._attempting = False
        for task in (self._runner, self._writer):
            if task is not None:
                task.cancel()
        self._runner = self._writer = None
        self._cancel_uptime()
        ws, self._ws = self._ws, None
        if ws is not None:
            self._closing.add(self._spawn(self._close_ws(ws, code, reason)))
        return had_connection

    async def _close_ws(self, ws: ClientConnection, code: int, reason: str) -> None:
        try:
            await ws.close(code, reason)
        except asyncio.CancelledError:
            ws.transport.abort()  # loop shutting down: do not leave the socket open
            raise
        finally:
            self._closing.discard(asyncio.current_task())

    def _do_close(self, code: int, reason: str) -> None:
        self._trace("close(%s, %r)", code, reason)
        self._close_called = True
        self._should_reconnect = False
        self._started = True
        had_connection = self._stop_current(code, reason)
        self._state = CLOSED
        if had_connection:
            self._dispatch(CloseEvent(code, reason, True))
        self._finish()

    def _do_reconnect(self, code: int | None, reason: str | None) -> None:
        self._trace("reconnect(%s, %r)", code, reason)
        self._should_reconnect = True
        self._close_called = False
        self._warned_closed_send = False
        self._retry_count = -1
        close_code = 1000 if code is None else code
        close_reason = reason or ""
        if self._stop_current(close_code, close_reason):
            self._state = CLOSED
            self._dispatch(CloseEvent(close_code, close_reason, True))
        self._start_runner()

    def _finish(self) -> None:
        """Closed for good: end async iterations and fail ``wait_open`` waiters."""
        self._done = True
        for iterator in list(self._iterators):
            iterator.push(_END)
        for waiter in self._open_waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError("PartySocket is closed"))
        self._open_waiters.clear()

    def _cancel_uptime(self) -> None:
        if self._uptime_handle is not None:
            self._uptime_handle.cancel()
            self._uptime_handle = None

    def _accept_open(self, gen: int) -> None:
        if gen == self._gen:
            self._trace("accept open: retry count reset")
            self._retry_count = 0

    def _next_attempt_delay(self) -> float | None:
        """Count the next attempt and return its delay, or None if retries ran out."""
        if self._retry_count >= self._max_retries:
            self._trace("max retries reached (%s)", self._retry_count)
            return None
        self._retry_count += 1
        self.last_delay = self.reconnection_delay(self._retry_count)
        self._trace("attempt %s after %.3fs", self._retry_count, self.last_delay)
        return self.last_delay

    async def _run(self, gen: int) -> None:
        """The connection supervisor: attempt, serve, back off, repeat.

        ``gen`` identifies this runner; ``close()``/``reconnect()`` bump the generation
        and cancel the task, so a stale runner never touches the socket's state.
        """
        delay = self._next_attempt_delay()
        while delay is not None and gen == self._gen:
            if delay > 0:
                self._state = CLOSED
                await asyncio.sleep(delay)
            self._state = CONNECTING
            self._attempting = True
            try:
                ws = await self._open_connection(gen)
                if isinstance(ws, CloseEvent):
                    closed = ws
                else:
                    closed = await self._serve(ws, gen)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug of ours: report it, keep reconnecting
                _log.exception("PartySocket connection failed unexpectedly")
                self._dispatch(ErrorEvent(exc))
                closed = CloseEvent(1006, str(exc), False)
            if gen != self._gen:
                return
            self._attempting = False
            self._ws = None
            self._cancel_uptime()
            delay = self._next_attempt_delay()
            self._state = CLOSED
            self._dispatch(closed)
            if gen != self._gen:  # a close listener called close()/reconnect()
                return
        if gen == self._gen:
            self._runner = None
            self._state = CLOSED
            self._finish()

    async def _open_connection(self, gen: int) -> ClientConnection | CloseEvent:
        try:
            url = await self.resolve_url()
            self.url = url
            self._trace("connecting to %s", url)
            kwargs = dict(self._connect_kwargs)
            kwargs.setdefault("create_connection", _DirectClientConnection)
            ws = await connect(
                _wire_url(url),
                subprotocols=[Subprotocol(p) for p in self._protocols] if self._protocols else None,
                additional_headers=self._headers,
                open_timeout=self._connection_timeout,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                close_timeout=self._close_timeout,
                max_size=self._max_size,
                **kwargs,
            )
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._dispatch(ErrorEvent(TimeoutError("TIMEOUT")))
            return CloseEvent(1006, "timeout", False)
        except Exception as exc:
            self._dispatch(ErrorEvent(exc))
            return CloseEvent(1006, str(exc) or type(exc).__name__, False)
        return ws

    async def _serve(self, ws: ClientConnection, gen: int) -> CloseEvent:
        """Run one open connection until it closes; return its close event."""
        assert self._loop is not None
        self._ws = ws
        self._attempting = False
        self._uptime_handle = self._loop.call_later(self._min_uptime, self._accept_open, gen)
        self._writer_idle_ws = None
        self._writer = self._spawn(self._write(ws))
        self._writer_wake.set()
        self._dispatch(OpenEvent(self.url))
        for waiter in self._open_waiters:
            if not waiter.done():
                waiter.set_result(None)
        if isinstance(ws, _DirectClientConnection):
            # Messages parsed before now first, then each one as soon as it is parsed.
            early, ws.early = ws.early or [], None
            for message in early:
                self._on_ws_message(gen, message)
            if not ws.queued:
                ws.deliver = partial(self._on_ws_message, gen)
        try:
            async for message in ws:
                self._dispatch(MessageEvent(message))
                for iterator in list(self._iterators):
                    iterator.push(message)
                if gen != self._gen:
                    break
        except ConnectionClosed:
            pass
        finally:
            if self._writer is not None and gen == self._gen:
                self._writer.cancel()
                self._writer = None
        rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
        # The server's close frame if one came; else the one we sent when failing the
        # connection ourselves (1009 message too big, 1011 keepalive timeout), which
        # says more than the browser's bare 1006; else 1006 (connection lost).
        if rcvd is not None:
            code, reason = rcvd.code, rcvd.reason
        elif sent is not None:
            code, reason = sent.code, sent.reason
        else:
            code, reason = 1006, ""
        return CloseEvent(code, reason, rcvd is not None and sent is not None)

    def _on_ws_message(self, gen: int, message: Data) -> None:
        """Deliver one message of connection ``gen`` (what ``_serve``'s loop does for
        queued ones); dropped once a newer connection replaced it, as ``_serve`` stops
        reading then. Never raises: it runs inside the connection's ``data_received``."""
        if gen != self._gen:
            return
        try:
            self._dispatch(MessageEvent(message))
            for iterator in list(self._iterators):
                iterator.push(message)
        except Exception:
            _log.exception("PartySocket failed to deliver a message")

    async def _write(self, ws: ClientConnection) -> None:
        """Write queued messages in order while the connection is open.

        A message leaves the queue only when it is handed to an open connection, so a
        drop leaves the rest for the next connection.
        """
        queue = self._queue
        wake = self._writer_wake
        try:
            while True:
                while queue:
                    if ws.protocol.state is not State.OPEN:
                        return
                    message = queue.popleft()
                    await ws.send(message)
                wake.clear()
                self._writer_idle_ws = ws
                try:
                    await wake.wait()
                finally:
                    if self._writer_idle_ws is ws:
                        self._writer_idle_ws = None
        except ConnectionClosed:
            return

    def __repr__(self) -> str:
        state = ("CONNECTING", "OPEN", "CLOSING", "CLOSED")[self.ready_state]
        return f"<PartySocket {self.room_url} id={self.id} {state}>"


def _write_now(ws: ClientConnection, message: Data) -> bool:
    """Write one whole message to ``ws`` synchronously, as ``await ws.send(message)``
    would when nothing is pending; False (nothing written) when that is not certain.

    Why: handing a message to the writer task costs an event-loop turn per message,
    which is most of a local edit's way out. This does what ``ws.send`` does for a
    single-frame message -- the sans-I/O protocol frames it, the frame goes to the
    transport -- but only when the transport is not paused or closing and no
    fragmented send is in progress; otherwise (or with a ``websockets`` version whose
    connection lacks these attributes) the caller queues the message for the writer
    task as before. Callers only use it when the writer is idle and its queue empty,
    so message order is unchanged.
    """
    send_data = getattr(ws, "send_data", None)
    if (
        send_data is None
        or getattr(ws, "paused", True)
        or getattr(ws, "send_in_progress", None) is not None
        or getattr(ws, "fragmented_send_waiter", None) is not None
        or ws.transport.is_closing()
    ):
        return False
    try:
        if isinstance(message, str):
            ws.protocol.send_text(message.encode())
        else:
            ws.protocol.send_binary(message)
    except Exception:  # e.g. the protocol left OPEN: let the writer path decide
        return False
    try:
        send_data()
    except Exception:
        # The frame has left the protocol: like a failed ``ws.send``, the connection's
        # own error handling closes it (and we reconnect); do not send it twice.
        _log.debug("PartySocket direct write failed", exc_info=True)
    return True


class _DirectClientConnection(ClientConnection):
    """A websockets client connection that hands each whole message to PartySocket as
    soon as it is parsed, inside ``data_received``.

    Why: the stock connection queues messages for a task that ``recv()`` wakes on the
    next event-loop turn, one turn (a ``select`` call and a task switch) on every
    incoming edit's way to the Store; the browser's WebSocket calls ``onmessage`` from
    the network callback, and so does this. Order is kept: messages parsed before
    PartySocket takes the connection over are held in ``early`` and delivered first;
    a fragmented (or undecodable) message switches the connection to the stock queue
    (``queued``) for good, so it and everything after it go through ``recv()`` in order.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Messages parsed before PartySocket took over (None once it has).
        self.early: list[Data] | None = []
        #: Where whole messages go once PartySocket took over (None: the stock queue).
        self.deliver: Callable[[Data], None] | None = None
        self.queued = False

    def process_event(self, event: Event) -> None:
        if isinstance(event, Frame) and not self.queued:
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                message: Data | None = None
                if event.fin:
                    if opcode is Opcode.BINARY:
                        message = bytes(event.data)
                    else:
                        with contextlib.suppress(UnicodeDecodeError):
                            message = bytes(event.data).decode()
                if message is not None:
                    if self.deliver is not None:
                        self.deliver(message)
                        return
                    if self.early is not None:
                        self.early.append(message)
                        return
                self.queued = True
                self.deliver = None
            elif opcode is Opcode.CONT:
                self.queued = True
                self.deliver = None
        super().process_event(event)


class _MessageIterator:
    """One ``async for message in socket`` consumer: its own unbounded buffer."""

    def __init__(self, socket: PartySocket) -> None:
        self._socket = socket
        self._queue: asyncio.Queue[Data | _End] = asyncio.Queue()
        self._started = False
        self._ended = False

    def push(self, item: Data | _End) -> None:
        if not self._ended:
            self._queue.put_nowait(item)

    def __aiter__(self) -> _MessageIterator:
        return self

    async def __anext__(self) -> Data:
        if self._ended:
            raise StopAsyncIteration
        if not self._started:
            self._started = True
            await self._socket.start()
            if self._socket._done and self._queue.empty():
                self._end()
                raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _End):
            self._end()
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self._end()

    def _end(self) -> None:
        self._ended = True
        self._socket._iterators.discard(self)
