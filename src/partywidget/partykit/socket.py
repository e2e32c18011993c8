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
- Everything else is :class:`~partywidget.partykit.options.SocketOptions` (backoff,
  queue, keepalive, limits), given as ``options=`` and/or as keyword arguments.
  ``retry_count`` is n for attempt n (the first connection being 0); a connection that
  stays open ``min_uptime`` resets it; ``reconnect()`` resets it and connects at once.
- ``send()`` while not open queues (up to ``max_enqueued_messages``, further messages
  are dropped) and the queue is flushed in order when the next connection opens, before
  the ``open`` event. It returns True if the message went to an open connection.
- Events ``open``, ``message``, ``close``, ``error`` (:mod:`partywidget.partykit.events`).
  Every failed attempt dispatches ``error`` then ``close`` (code 1006, reason
  ``"timeout"`` for ``connection_timeout``); every drop of an open connection
  dispatches ``close`` with the server's code; ``close()``/``reconnect()`` dispatch
  ``close`` with their own code right away (as partysocket 1.3.0 does) if a connection
  or attempt was in progress. A server refusing the handshake with an HTTP status (403,
  500) gives an ``error`` event carrying that status and the server's reason, also kept
  as ``last_error`` until the next open.

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
import dataclasses
import inspect
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any, ClassVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from . import _wsinternals
from ._iterator import END, MessageIterator
from ._loopbinding import LoopBinding
from ._outbox import Outbox
from .events import (
    CLOSED,
    CLOSING,
    CONNECTING,
    OPEN,
    CloseEvent,
    Data,
    ErrorEvent,
    EventTarget,
    EventType,
    Listener,
    MessageEvent,
    OpenEvent,
    SocketEvent,
    close_event,
    error_event,
)
from .options import (
    DEFAULT_MAX_MESSAGE_SIZE,
    SocketOptions,
    check_name,
    connect_arguments,
    socket_options,
)
from .url import (
    Query,
    QueryMapping,
    party_url,
    query_string,
    room_base_url,
    strip_host,
    wire_url,
)

__all__ = [
    "CLOSED",
    "CLOSING",
    "CONNECTING",
    "DEFAULT_MAX_MESSAGE_SIZE",
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
    "SocketOptions",
    "party_url",
]

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- socket


def _validate_close_code(code: int) -> None:
    # The WebSocket API only lets applications send 1000 or 3000-4999.
    if code != 1000 and not 3000 <= code <= 4999:
        raise ValueError(f"close code must be 1000 or in 3000-4999, not {code}")


def _check_identity(
    room: str, party: str | None, query: Query | None, options: SocketOptions
) -> None:
    if not room and not options.base_path:
        raise ValueError("either room or base_path must be provided")
    for kind, text in (("party", party), ("room", room)):
        check_name(kind, text)
        if text is not None and "/" in text:
            _log.warning("PartySocket: %s name %r contains '/'", kind, text)
    if not callable(query) and query is not None:
        query_string("", query)  # fail early on bad values


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
        options: SocketOptions | Mapping[str, Any] | None = None,
        **option_fields: Any,
    ) -> None:
        """Create the socket (and start connecting if a loop is running here).

        ``options`` is a :class:`SocketOptions` or a mapping of its fields (snake_case or
        partysocket's camelCase; durations in seconds); ``option_fields`` override single
        fields, e.g. ``PartySocket(host, room, min_reconnection_delay=0.5)``.
        """
        opts = socket_options(options, option_fields)
        _check_identity(room, party, query, opts)
        #: The options in effect (frozen: make a new socket to change them).
        self.options: SocketOptions = opts
        self.host: str = strip_host(host)
        self.room: str = room
        self.name: str = "main" if party is None else party
        self.path: str = f"/{opts.path}" if opts.path else ""
        self.base_path: str | None = opts.base_path
        self.id: str = id or str(uuid.uuid4())
        self.room_url: str = room_base_url(
            self.host, room, self.name, opts.path, opts.prefix, opts.base_path, protocol
        )
        #: The URL of the last connection attempt ("" before the first).
        self.url: str = ""
        #: The backoff delay computed for the latest attempt (0 for immediate ones).
        self.last_delay: float = 0.0
        #: The latest failed attempt's error event, until a connection opens (None then).
        #: ``last_error.status`` is set when the server refused the handshake.
        self.last_error: ErrorEvent | None = None
        self._identity: dict[str, Any] = {
            "host": host,
            "room": room,
            "party": party,
            "id": id,
            "query": query,
            "protocol": protocol,
        }
        self._query = query

        self._binding = LoopBinding()
        self._events = EventTarget(self._binding.spawn)
        self._outbox = Outbox()
        self._retry_count = -1
        self._should_reconnect = not opts.start_closed
        self._close_called = False
        self._warned_closed_send = False
        self._started = False
        self._done = False  # closed for good (close() or max retries): iterators end
        self._state = CLOSED if opts.start_closed else CONNECTING
        self._attempting = False
        self._gen = 0
        self._runner: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._uptime_handle: asyncio.TimerHandle | None = None
        self._iterators: weakref.WeakSet[MessageIterator] = weakref.WeakSet()
        self._closing: set[asyncio.Task[Any]] = set()
        self._open_waiters: list[asyncio.Future[None]] = []

        if self._binding.bind_if_running() and self._should_reconnect:
            self._start_runner()

    # ------------------------------------------------------------------ properties

    @property
    def party_socket_options(self) -> dict[str, Any]:
        """Every constructor argument as given, options included (a fresh dict)."""
        options = {f.name: getattr(self.options, f.name) for f in dataclasses.fields(SocketOptions)}
        return {**self._identity, **options}

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
            return int(ws.state)
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
        return self._outbox.buffered_amount

    def reconnection_delay(self, retry_count: int) -> float:
        """The backoff before attempt number ``retry_count`` (partysocket's formula)."""
        return self.options.reconnection_delay(retry_count)

    async def resolve_url(self) -> str:
        """The URL the next attempt would use (evaluates ``query`` if it is callable)."""
        query: Any = self._query
        if callable(query):
            query = query()
            if inspect.isawaitable(query):
                query = await query
        return f"{self.room_url}?{query_string(self.id, query)}"

    # ------------------------------------------------------------------ listeners

    def add_event_listener(self, type: EventType, listener: Listener) -> None:
        """Call ``listener(event)`` for each ``type`` event; a coroutine function's
        coroutine is run as a task. Adding the same listener twice has no effect."""
        self._events.add(type, listener)

    def remove_event_listener(self, type: EventType, listener: Listener) -> None:
        self._events.remove(type, listener)

    def _dispatch(self, event: SocketEvent) -> None:
        self._trace("event %s %r", event.type, event)
        self._events.dispatch(event)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind to the running loop and connect (unless ``start_closed``); idempotent."""
        self._binding.bind_running()
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
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
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
        iterator = MessageIterator(self.start, lambda: self._done, self._iterators.discard)
        self._iterators.add(iterator)
        return iterator

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close for good: no more reconnects. Messages sent afterwards are queued and
        only delivered if ``reconnect()`` is called. Safe from any thread."""
        _validate_close_code(code)
        if not self._binding.call(self._do_close, code, reason):
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
        tasks = (self._runner, self._outbox.writer)
        internal = [t for t in tasks if t is not None and t is not current]
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
        if self._binding.loop is None:
            self._binding.bind_running()
        if not self._binding.call(self._do_reconnect, code, reason):
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
        if self._binding.on_loop_thread():
            return self._send_on_loop(message)
        was_open = self.ready_state == OPEN
        if self._binding.call(self._send_on_loop, message):
            return was_open
        return self._send_on_loop(message)  # loop gone: just queue

    def _send_on_loop(self, message: Data) -> bool:
        ws = self._ws
        if ws is not None and ws.state is State.OPEN and not self._close_called:
            self._outbox.send(ws, message)
            return True
        if self._close_called and not self._warned_closed_send:
            self._warned_closed_send = True
            _log.warning(
                "PartySocket.send() after close(): the message is queued and only "
                "delivered if reconnect() is called"
            )
        self._outbox.hold(message, self.options.max_enqueued_messages)
        return False

    def drain_queued_messages(self) -> list[Data]:
        """Remove and return the messages not yet written to any connection."""
        return self._outbox.drain()

    # ------------------------------------------------------------------ internals

    def _trace(self, msg: str, *args: object) -> None:
        _log.log(logging.INFO if self.options.debug else logging.DEBUG, "PartySocket " + msg, *args)

    def _error(self, event: ErrorEvent) -> None:
        self.last_error = event
        self._dispatch(event)

    def _start_runner(self) -> None:
        self._started = True
        self._done = False
        self._gen += 1
        self._runner = self._binding.spawn(self._run(self._gen))

    def _stop_current(self, code: int, reason: str) -> bool:
        """End the runner, writer and connection; True if a connection or attempt was
        in progress (then the caller dispatches a close event)."""
        self._gen += 1
        had_connection = self._ws is not None or self._attempting
        self._attempting = False
        if self._runner is not None:
            self._runner.cancel()
            self._runner = None
        self._outbox.stop()
        self._cancel_uptime()
        ws, self._ws = self._ws, None
        if ws is not None:
            self._closing.add(self._binding.spawn(self._close_ws(ws, code, reason)))
        return had_connection

    async def _close_ws(self, ws: ClientConnection, code: int, reason: str) -> None:
        try:
            await ws.close(code, reason)
        except asyncio.CancelledError:
            _wsinternals.abort(ws)  # loop shutting down: do not leave the socket open
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
            iterator.push(END)
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
        if self._retry_count >= self.options.max_retries:
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
                self._error(error_event(exc))
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
            ws = await connect(wire_url(url), **connect_arguments(self.options))
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._error(error_event(TimeoutError("TIMEOUT")))
            return CloseEvent(1006, "timeout", False)
        except Exception as exc:
            self._error(error_event(exc))
            return CloseEvent(1006, str(exc) or type(exc).__name__, False)
        return ws

    async def _serve(self, ws: ClientConnection, gen: int) -> CloseEvent:
        """Run one open connection until it closes; return its close event."""
        self._ws = ws
        self._attempting = False
        self._uptime_handle = asyncio.get_running_loop().call_later(
            self.options.min_uptime, self._accept_open, gen
        )
        self._outbox.start(ws, self._binding.spawn)
        self.last_error = None
        self._dispatch(OpenEvent(self.url))
        for waiter in self._open_waiters:
            if not waiter.done():
                waiter.set_result(None)
        # Messages parsed before now first, then each one as soon as it is parsed.
        for message in _wsinternals.take_over(ws, partial(self._on_ws_message, gen)):
            self._on_ws_message(gen, message)
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
            if gen == self._gen:
                self._outbox.stop()
        return close_event(*_wsinternals.close_frames(ws))

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

    def __repr__(self) -> str:
        state = ("CONNECTING", "OPEN", "CLOSING", "CLOSED")[self.ready_state]
        return f"<PartySocket {self.room_url} id={self.id} {state}>"
