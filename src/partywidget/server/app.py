"""The Starlette application: PartyKit's URL scheme, HTTP and WebSocket, over rooms.

Routing mirrors PartyKit: ``/parties/{party}/{room}`` (any sub-path for HTTP, e.g. the
TinyBase store path ``/store``) and ``/party/{room}`` for party ``main``. Each registered
party has its own server class (PartyKit's ``parties`` config); a :class:`Room` is
created lazily for each ``(party, room)`` and keeps one instance of that class, as a
Durable Object would. Every response the application itself produces (404, 400, 413,
refusals, preflight, 500) carries CORS headers, so browser clients can read them.

The path is split from the *raw* (still percent-encoded) path, so a room id containing
an encoded ``/`` stays one room id.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from partywidget.server.origins import OriginGuard, OriginPolicy
from partywidget.server.room import (
    Connection,
    Limits,
    Lobby,
    PartyServer,
    Room,
    maybe_await,
    printable,
)
from partywidget.server.storage import MemoryStorage, SQLiteStorage, Storage
from partywidget.server.tinybase import CORS_HEADERS, TinyBasePartyKitServer

__all__ = ["RoomRegistry", "create_app", "make_storage"]

log = logging.getLogger("partywidget.server")

REPLACED_CLOSE_CODE = 4000
"""Close code sent to a socket replaced by a newer one with the same ``_pk`` id."""


def make_storage(storage: Storage | str | os.PathLike[str] | None) -> tuple[Storage, bool]:
    """Turn ``storage`` into a :class:`Storage`; the flag says whether we created it
    (and so must close it at shutdown). ``None``/``":memory:"`` means in-memory."""
    if storage is None or storage == ":memory:":
        return MemoryStorage(), True
    if isinstance(storage, Storage):
        return storage, False
    return SQLiteStorage(storage), True


def _cors(response: Response, headers: Mapping[str, str] = CORS_HEADERS) -> Response:
    for name, value in headers.items():
        if name not in response.headers:
            response.headers[name] = value
    return response


def _plain(status: int, text: str = "") -> Response:
    return _cors(Response(text or None, status_code=status, media_type="text/plain"))


class RoomRegistry:
    """Parties, live rooms, storage and limits: the state behind one application."""

    def __init__(
        self,
        parties: Mapping[str, type[PartyServer]],
        storage: Storage,
        limits: Limits,
        room_idle_timeout: float | None = 60.0,
    ) -> None:
        for name in parties:
            if not name or "/" in name:
                raise ValueError(f"invalid party name: {name!r}")
        self.parties = dict(parties)
        self.storage = storage
        self.limits = limits
        self.rooms: dict[tuple[str, str], Room] = {}
        self.room_idle_timeout = room_idle_timeout
        self.body_budget = _BodyBudget(limits.max_bodies_in_flight)

    def parse(self, scope: Scope) -> tuple[str, str] | Response:
        """``(party, room)`` for a room URL, else the 404/400 response to send."""
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = raw.decode("latin-1").split("?", 1)[0]
        parts = path.split("/")
        try:  # strict: "%ff" and "%fe" must not both become room "\ufffd"
            if len(parts) >= 4 and parts[0] == "" and parts[1] == "parties":
                party, room = unquote(parts[2], errors="strict"), unquote(parts[3], errors="strict")
            elif len(parts) >= 3 and parts[0] == "" and parts[1] == "party":
                party, room = "main", unquote(parts[2], errors="strict")
            else:
                return _plain(404, "Not found")
        except UnicodeDecodeError:
            log.warning("refused a room path that is not UTF-8: %r", path[:80])
            return _plain(400, "Invalid room name (not UTF-8)")
        if party not in self.parties:
            return _plain(404, f"No such party: {party}")
        if (
            not room
            or len(room) > self.limits.max_room_name_length
            or any(c < " " or c == "\x7f" for c in room)
        ):
            log.warning("refused invalid room name %r", room[:80])
            return _plain(400, "Invalid room name")
        return party, room

    def acquire(self, party: str, room_id: str) -> Room:
        """The live room, created on first use; pair with :meth:`release`.

        A room stays in memory while it is in use (a request in flight or a socket
        open); once unused for ``room_idle_timeout`` seconds it is dropped, as PartyKit
        evicts idle Durable Objects, and reloaded from storage when next needed. Callers
        still ``await room.start()`` (idempotent) before using it.
        """
        key = (party, room_id)
        room = self.rooms.get(key)
        if room is None:
            room = Room(party, room_id, self.parties[party], self.storage, self.limits)
            self.rooms[key] = room
        room.users += 1
        return room

    def release(self, room: Room) -> None:
        room.users -= 1
        if room.users == 0 and self.room_idle_timeout is not None:
            loop = asyncio.get_running_loop()
            room.released_at = loop.time()
            loop.call_later(self.room_idle_timeout, self._evict, room)

    def _evict(self, room: Room) -> None:
        key = (room.name, room.id)
        idle = asyncio.get_running_loop().time() - room.released_at
        assert self.room_idle_timeout is not None
        if (
            self.rooms.get(key) is room
            and room.users == 0
            and not room.connections
            and idle >= self.room_idle_timeout * 0.999
        ):
            del self.rooms[key]
            log.debug("%s: evicted after %.1f s idle", room.label, idle)

    async def before(
        self, name: str, party: str, room_id: str, request: HTTPConnection
    ) -> Response | None:
        """Run ``on_before_connect``/``on_before_request``; a Response means "refuse".

        Static and class methods run without touching the room (cheap for refused
        requests); instance methods run on the room's server object.
        """
        cls = self.parties[party]
        attr = inspect.getattr_static(cls, name, None)
        if attr is None:
            return None
        fn: Callable[..., Any]
        room: Room | None = None
        try:
            if isinstance(attr, staticmethod | classmethod):
                fn = getattr(cls, name)
            else:
                room = self.acquire(party, room_id)
                await room.start()
                fn = getattr(room.server, name)
            result = await maybe_await(fn(request, Lobby(id=room_id, name=party)))
        except HTTPException as error:
            result = Response(error.detail, status_code=error.status_code, headers=error.headers)
        finally:
            if room is not None:
                self.release(room)
        if isinstance(result, Response):
            log.info("%s/%s: %s refused (%d)", party, room_id, name, result.status_code)
            return _cors(result)
        if result is False:
            log.info("%s/%s: %s refused (403)", party, room_id, name)
            return _plain(403, "Forbidden")
        return None

    async def close_all(self, code: int = 1001, reason: str = "server shutting down") -> None:
        for room in list(self.rooms.values()):
            for connection in room.get_connections():
                connection.close(code, reason)


class _BodyBudget:
    """Bytes of request bodies buffered across all requests in flight, capped.

    Why: each body may be up to ``max_body_size``, and many at once (slow or hostile
    uploads) would multiply that; past the cap a request is refused with 503 and
    ``Retry-After`` instead of buffering more.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.cap:
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        self.used -= size


async def _read_body(
    receive: Receive, limits: Limits, budget: _BodyBudget, held: list[int]
) -> bytes | Response:
    """The whole request body, or the refusal to send: over the size limit (413), not
    finished within ``body_timeout`` (408), or over the server's budget (503). The
    bytes taken from ``budget`` are added to ``held[0]`` for the caller to give back."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.body_timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limits.max_body_size:
                    return _plain(413, f"Request body exceeds {limits.max_body_size} bytes")
                if not budget.take(len(chunk)):
                    return _plain(503, "Too many request bodies in flight, retry later")
                held[0] += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        return _plain(408, f"Request body not received within {limits.body_timeout:g} s")
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _HTTPEndpoint:
    def __init__(self, registry: RoomRegistry) -> None:
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handle(scope, receive)
        await response(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive) -> Response:
        registry = self.registry
        parsed = registry.parse(scope)
        if isinstance(parsed, Response):
            return parsed
        party, room_id = parsed
        server_class = registry.parties[party]
        headers: Mapping[str, str] = getattr(
            getattr(server_class, "config", None), "response_headers", CORS_HEADERS
        )
        if scope["method"] == "CONNECT":
            # A 2xx answer to CONNECT switches the connection into a tunnel (HTTP/1.1),
            # so the body could not be sent: refuse it like any proxy-less server.
            return _plain(405, "CONNECT is not supported")
        if scope["method"] == "OPTIONS":
            return _cors(
                Response(status_code=204, headers={"Access-Control-Max-Age": "86400"}), headers
            )
        held = [0]
        try:
            return await self._with_body(scope, receive, party, room_id, held)
        finally:
            registry.body_budget.give_back(held[0])

    async def _with_body(
        self, scope: Scope, receive: Receive, party: str, room_id: str, held: list[int]
    ) -> Response:
        registry = self.registry
        limit = registry.limits.max_body_size
        declared = Request(scope).headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            body: bytes | Response = _plain(413, f"Request body exceeds {limit} bytes")
        else:
            body = await _read_body(receive, registry.limits, registry.body_budget, held)
        if isinstance(body, Response):
            reason = (
                f"request body over {limit} bytes refused"
                if body.status_code == 413
                else bytes(body.body).decode()
            )
            log.warning("%s/%s: %s (%d)", party, room_id, reason, body.status_code)
            if body.status_code == 503:
                body.headers["Retry-After"] = "1"
            return body
        request = Request(scope, _replay(body, receive))
        refusal = await registry.before("on_before_request", party, room_id, request)
        if refusal is not None:
            return refusal
        room = registry.acquire(party, room_id)
        try:
            if (unavailable := await _start(room)) is not None:
                return unavailable
            return await room.server.on_request(request)
        except Exception:
            log.exception("%s/%s: error handling %s", party, room_id, scope["method"])
            return _plain(500, "Internal server error")
        finally:
            registry.release(room)


async def _start(room: Room) -> Response | None:
    """Start the room; a storage failure is a 503 and one log line, not a traceback
    (the storage already says what is wrong, e.g. a full disk or a replaced file)."""
    try:
        await room.start()
    except (sqlite3.Error, OSError) as error:
        log.error(
            "%s: room could not load from storage (%s: %s) (503)",
            room.label,
            type(error).__name__,
            error,
        )
        return _plain(503, "Storage unavailable")
    return None


async def _deny(websocket: WebSocket, response: Response) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(1008)


class _WebSocketEndpoint:
    def __init__(self, registry: RoomRegistry) -> None:
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        registry = self.registry
        websocket = WebSocket(scope, receive, send)
        parsed = registry.parse(scope)
        if isinstance(parsed, Response):
            await _deny(websocket, parsed)
            return
        party, room_id = parsed
        connection_id = websocket.query_params.get("_pk") or str(uuid.uuid4())
        if len(connection_id) > registry.limits.max_connection_id_length:
            log.warning("%s/%s: refused over-long connection id", party, room_id)
            await _deny(websocket, _plain(400, "Connection id too long"))
            return
        refusal = await registry.before("on_before_connect", party, room_id, websocket)
        if refusal is not None:
            await _deny(websocket, refusal)
            return
        room = registry.acquire(party, room_id)
        try:
            try:
                unavailable = await _start(room)
            except Exception:
                log.exception("%s/%s: room failed to start", party, room_id)
                unavailable = _plain(500, "Room failed to start")
            if unavailable is not None:
                await _deny(websocket, unavailable)
                return
            await websocket.accept()
            await self.serve(websocket, room, connection_id)
        finally:
            registry.release(room)

    async def serve(self, websocket: WebSocket, room: Room, connection_id: str) -> None:
        connection = Connection(websocket, connection_id, room)
        previous = room.add(connection)
        connection.start_writer()
        label = f"{room.label} id={printable(connection_id)}"
        client = websocket.client
        peer = f"{client.host}:{client.port}" if client else "?"
        if previous is not None:
            log.info("%s: replaced by a new connection with the same id", label)
            previous.close(REPLACED_CLOSE_CODE, "replaced by a connection with the same id")
        log.info("connect %s from %s (%d connected)", label, peer, len(room.connections))
        server = room.server
        code: int | None = None
        discarded = 0
        try:
            await _guard(server.on_connect(connection, websocket), label, "on_connect")
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    code = message.get("code")
                    if code == 1009:  # the protocol layer refused an oversize message
                        log.warning(
                            "%s: message over %d bytes, closing with 1009",
                            label,
                            room.limits.max_message_size,
                        )
                    break
                if not connection.active:
                    # Replaced or closing: applying its backlog now would overwrite what
                    # the newer connection (or the room) has since stored.
                    discarded += 1
                    continue
                await _handle(server, connection, message, label)
                # One message per turn: every connection with input gets a turn before
                # this one takes its next message (round-robin, no fixed rate).
                await asyncio.sleep(0)
        except WebSocketDisconnect as disconnect:
            code = disconnect.code
        finally:
            room.remove(connection)
            await _guard(server.on_close(connection), label, "on_close")
            await connection.stop_writer()
            if discarded:
                log.warning(
                    "%s: discarded %d message(s) received after it was replaced or closed",
                    label,
                    discarded,
                )
            log.info(
                "close %s code=%s (%d connected)",
                label,
                connection.close_code or code,
                len(room.connections),
            )


async def _handle(
    server: PartyServer, connection: Connection, message: Message, label: str
) -> None:
    """Check one received message against the limits, then give it to the server."""
    text = message.get("text")
    if text is None:
        log.info("%s: ignored binary message", label)
        return
    limit = connection.room.limits.max_message_size
    size = len(text)
    if size > limit or (size * 4 > limit and len(text.encode("utf-8")) > limit):
        log.warning("%s: message over %d bytes, closing with 1009", label, limit)
        connection.close(1009, "message too big")
        return
    await _guard(server.on_message(text, connection), label, "on_message")


async def _guard(awaitable: Awaitable[Any], label: str, what: str) -> None:
    """Run a server hook; an exception is logged, never allowed to kill the socket."""
    try:
        await awaitable
    except Exception:
        log.exception("%s: %s failed", label, what)


def create_app(
    parties: Mapping[str, type[PartyServer]] | None = None,
    storage: Storage | str | os.PathLike[str] | None = None,
    *,
    limits: Limits | None = None,
    close_storage: bool | None = None,
    room_idle_timeout: float | None = 60.0,
    allow_origins: Iterable[str] = (),
) -> Starlette:
    """A Starlette app serving PartyKit-style rooms.

    ``parties`` maps party names to server classes (default: ``{"main":
    TinyBasePartyKitServer}``); ``storage`` is a :class:`Storage`, a SQLite file path,
    ``":memory:"`` or ``None`` (in-memory). Storage created here is closed at shutdown;
    a passed-in instance only if ``close_storage`` is true. Rooms unused for
    ``room_idle_timeout`` seconds are dropped from memory (``None``: never).

    Browser pages may connect only from loopback origins (``http://localhost:*``,
    ``http://127.0.0.1:*``, ``http://[::1]:*``) plus ``allow_origins`` (e.g.
    ``"https://app.example.org"``, ``"http://lab.local:*"``; ``"*"``: any page, logged
    as a warning); see :mod:`partywidget.server.origins`.
    """
    policy = OriginPolicy(allow_origins)
    if policy.allow_any:
        log.warning("every web origin may read and write every room (allow_origins='*')")
    parties = dict(parties) if parties is not None else {"main": TinyBasePartyKitServer}
    store, owned = make_storage(storage)
    if close_storage is None:
        close_storage = owned
    registry = RoomRegistry(parties, store, limits or Limits(), room_idle_timeout)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        try:
            yield
        finally:
            await registry.close_all()
            if close_storage:
                await store.close()

    app = Starlette(
        routes=[
            Route("/{path:path}", _HTTPEndpoint(registry)),
            WebSocketRoute("/{path:path}", _WebSocketEndpoint(registry)),
        ],
        lifespan=lifespan,
        middleware=[Middleware(OriginGuard, policy=policy)],
    )
    app.state.registry = registry
    app.state.storage = store
    app.state.limits = registry.limits
    return app
