"""Rooms, connections and broadcast: PartyKit's runtime model, in one Python process.

On PartyKit each room is one Durable Object: a single-threaded instance of the party's
server class, holding that room's connections and storage. Here a :class:`Room` plays
that role: created lazily per ``(party, room)``, it owns one instance of the party's
:class:`PartyServer` subclass (``server.party`` is the room, as ``this.party`` is in
PartyKit), its :class:`Connection` objects and a view of the shared storage.

Sending never blocks a room: each connection has its own outgoing queue drained by its
own task, so :meth:`Room.broadcast` only enqueues and one slow client cannot stall the
others (a client whose backlog exceeds the limit is disconnected, see :class:`Limits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketState

from partywidget.server.storage import RoomStorage

if TYPE_CHECKING:
    from partywidget.server.storage import Storage

__all__ = [
    "Connection",
    "Limits",
    "Lobby",
    "PartyServer",
    "Room",
    "maybe_await",
    "printable",
]

log = logging.getLogger("partywidget.server")

MIB = 1024 * 1024


def printable(text: str, limit: int = 120) -> str:
    """``text`` safe for one log line: control characters (newlines that would forge
    lines, ANSI escapes that would repaint a terminal) and backslashes escaped, cut at
    ``limit`` characters. For client-supplied text (``_pk``, names)."""
    if text.isprintable() and "\\" not in text and len(text) <= limit:
        return text
    out = "".join(
        c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii")
        for c in text[:limit]
    )
    return out + ("..." if len(text) > limit else "")


@dataclass(frozen=True)
class Limits:
    """Input limits, each enforced with a clear error (and one log line).

    - ``max_message_size``: UTF-8 bytes of one WebSocket message; larger closes the
      socket with 1009 (PartyKit/Cloudflare closes at 1 MiB; we allow more by default
      because a notebook legitimately sends big DataFrames, and say so in the log).
    - ``max_body_size``: bytes of one HTTP request body; larger gets 413.
    - ``max_bodies_in_flight``: bytes of request bodies buffered at once across all
      requests; past it a request gets 503 with ``Retry-After``.
    - ``body_timeout``: seconds to receive a whole request body; later, 408.
    - ``max_json_depth``: nesting of JSON in messages and bodies; deeper is rejected.
    - ``max_id_length``: characters of a table/row/cell/value id (PartyKit storage keys
      are limited to 2 KiB); longer rejects the whole message (400 for a PUT).
    - ``max_room_name_length`` / ``max_connection_id_length``: path and ``_pk`` sanity.
    - ``fragment_timeout``: seconds a message sent in fragments may take to finish
      once started; later, the socket is closed with 1008 (reassembly is capped by
      ``max_message_size`` too).
    - ``send_timeout``: seconds a WebSocket client may go without reading anything
      while data waits for it; then its TCP connection is dropped (a close frame could
      not reach it either).
    - ``max_send_backlog``: bytes queued for one slow client before it is disconnected
      (close 1013) rather than let memory grow without bound.

    There is no message rate limit: connections take turns, one message each (see
    ``_WebSocketEndpoint.serve``), so a lone burst runs at full speed and a flooder
    only ever delays a bystander by one message per connection ahead of it.
    """

    max_message_size: int = 16 * MIB
    max_body_size: int = 64 * MIB
    max_bodies_in_flight: int = 256 * MIB
    body_timeout: float = 60.0
    max_json_depth: int = 100
    max_id_length: int = 1024
    max_room_name_length: int = 256
    max_connection_id_length: int = 256
    max_send_backlog: int = 64 * MIB
    fragment_timeout: float = 60.0
    send_timeout: float = 30.0


async def maybe_await(value: Any) -> Any:
    """Hooks may be plain functions or coroutines (TinyBase's are async; ours need not be)."""
    if inspect.isawaitable(value):
        return await value
    return value


@dataclass(frozen=True)
class Lobby:
    """What ``on_before_connect``/``on_before_request`` know before a room is touched
    (PartyKit's ``Party.Lobby``): the room id and the party name."""

    id: str
    name: str


@dataclass(frozen=True)
class _Close:
    """Queued after pending messages, so a close never overtakes them."""

    code: int
    reason: str


class Connection:
    """One WebSocket client in a room (PartyKit's ``Party.Connection``).

    ``id`` comes from the ``_pk`` query parameter partysocket sends (kept across
    reconnects). ``request`` is the upgrade request (headers, ``query_params``) so hooks
    can authorise per connection. ``state`` is free for the server class to use.
    """

    def __init__(self, websocket: WebSocket, id: str, room: Room) -> None:
        self.id = id
        self.request: HTTPConnection = websocket
        self.room = room
        self.state: Any = None
        self._websocket = websocket
        self._queue: deque[object] = deque()
        self._backlog = 0
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.close_code: int | None = None

    @property
    def active(self) -> bool:
        """Still the room's connection for this id, and not closing: only then may
        what it sends be applied (a replaced socket's backlog is stale)."""
        return not self._closing and self.room.connections.get(self.id) is self

    @property
    def uri(self) -> str:
        return str(self._websocket.url)

    @property
    def query_params(self) -> Any:
        return self._websocket.query_params

    def start_writer(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(
            self._write_loop(), name=f"partywidget-send-{self.id}"
        )

    def send(self, message: str) -> None:
        """Queue a text message; returns at once (PartyKit's ``send`` is synchronous too)."""
        if self._closing:
            return
        self._backlog += len(message)
        if self._backlog > self.room.limits.max_send_backlog:
            log.warning(
                "%s id=%s: client too slow (%d bytes queued), disconnecting",
                self.room.label,
                printable(self.id),
                self._backlog,
            )
            self._abort(1013, "client too slow")
            return
        self._queue.append(message)
        self._wakeup.set()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after the messages already queued have been sent."""
        if self._closing:
            return
        self._closing = True
        self.close_code = code
        self._queue.append(_Close(code, reason))
        self._wakeup.set()

    def _abort(self, code: int, reason: str) -> None:
        """Drop everything queued and close now: the queue will never drain, so a
        queued close would never be sent; the memory is released at once."""
        self._closing = True
        self.close_code = code
        self._queue.clear()
        self._backlog = 0
        if self._writer is not None:
            self._writer.cancel()
        self._writer = asyncio.get_running_loop().create_task(self._close_now(code, reason))

    async def _close_now(self, code: int, reason: str) -> None:
        # Waits until the transport is writable again, or until uvicorn's keepalive
        # ping times out and drops a client that stopped reading altogether.
        with contextlib.suppress(Exception):
            if self._websocket.application_state == WebSocketState.CONNECTED:
                await self._websocket.close(code, reason)

    async def _write_loop(self) -> None:
        ws = self._websocket
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._queue:
                    item = self._queue.popleft()
                    if isinstance(item, str):
                        self._backlog -= len(item)
                        await ws.send_text(item)
                    else:
                        assert isinstance(item, _Close)
                        if ws.application_state == WebSocketState.CONNECTED:
                            await ws.close(item.code, item.reason)
                        return
        except (OSError, RuntimeError, asyncio.CancelledError):
            # The client went away (or the server is shutting down): nothing to deliver.
            return
        except Exception:  # never let a send error escape the task
            log.debug("send to %s failed", self.id, exc_info=True)

    async def stop_writer(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(BaseException):
                await self._writer

    def __repr__(self) -> str:
        return f"<Connection {self.id} in {self.room.label}>"


class PartyServer:
    """Base class of a party's server (PartyKit's ``Party.Server``), one instance per room.

    Override the ``on_*`` coroutines. ``on_before_connect`` / ``on_before_request`` may be
    static (run before the room is created: preferred for auth) or instance methods;
    they receive ``(request, lobby)`` and refuse by returning a
    :class:`~starlette.responses.Response` (sent as is), ``False`` (403) or by raising
    :class:`starlette.exceptions.HTTPException`; anything else lets the request through.
    """

    def __init__(self, party: Room) -> None:
        self.party = party

    async def on_start(self) -> None:
        """Called once, before the room handles anything (load state here)."""

    async def on_connect(self, connection: Connection, request: HTTPConnection) -> None:
        """A client connected (after any connection with the same id was replaced)."""

    async def on_message(self, message: str, connection: Connection) -> None:
        """A text message arrived; messages of one connection are handled in order."""

    async def on_close(self, connection: Connection) -> None:
        """A client disconnected (or was replaced)."""

    async def on_request(self, request: Request) -> Response:
        """An HTTP request for this room (any sub-path)."""
        return Response(status_code=404)


class Room:
    """One live room: a server instance, its connections and its storage view."""

    def __init__(
        self,
        party: str,
        room_id: str,
        server_class: type[PartyServer],
        storage: Storage,
        limits: Limits,
    ) -> None:
        self.name = party
        self.id = room_id
        self.label = f"{party}/{room_id}"
        self.storage: RoomStorage = storage.room(party, room_id)
        self.limits = limits
        self.connections: dict[str, Connection] = {}
        self.server = server_class(self)
        self._started: asyncio.Future[None] | None = None
        self.users = 0  # requests in flight + open sockets (see RoomRegistry.acquire)
        self.released_at = 0.0

    async def start(self) -> None:
        """Run ``on_start`` once; concurrent first callers all wait for the same run."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                await self.server.on_start()
            except BaseException as error:
                self._started.set_exception(error)
                self._started.exception()  # mark retrieved
                self._started = None
                raise
            self._started.set_result(None)
            return
        await asyncio.shield(self._started)

    def broadcast(self, message: str, without: Iterable[str] = ()) -> None:
        """Queue ``message`` for every connection except the ids in ``without``."""
        skip = set(without)
        for connection in list(self.connections.values()):
            if connection.id not in skip:
                connection.send(message)

    def get_connection(self, id: str) -> Connection | None:
        return self.connections.get(id)

    def get_connections(self) -> Iterator[Connection]:
        return iter(list(self.connections.values()))

    def add(self, connection: Connection) -> Connection | None:
        """Register a connection; returns the one it replaces (same id), if any."""
        previous = self.connections.get(connection.id)
        self.connections[connection.id] = connection
        return previous

    def remove(self, connection: Connection) -> bool:
        """Unregister unless it was already replaced by a newer one with the same id."""
        if self.connections.get(connection.id) is connection:
            del self.connections[connection.id]
            return True
        return False


Hook = Callable[..., Awaitable[Any] | Any]
