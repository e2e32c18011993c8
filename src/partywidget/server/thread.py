"""Run the room server on real uvicorn in a background thread (or the foreground).

Why a thread with its own event loop: the widget's embedded server and the tests need a
real server (real sockets, real WebSocket framing) while the caller's thread keeps going
- a Jupyter kernel's loop or a synchronous test. Binding the socket ourselves before
uvicorn starts makes ``port=0`` yield the real port immediately, without parsing logs.

uvicorn is configured not to touch global logging (``log_config=None``), which matters
inside a Jupyter kernel, and without per-message deflate: compressing each broadcast
separately for every connection would cost far more CPU than it saves on loopback/LAN.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame

from partywidget.server.app import create_app
from partywidget.server.room import Limits

__all__ = ["ServerThread", "bind_socket", "format_host", "run_in_thread", "uvicorn_config"]

log = logging.getLogger("partywidget.server")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: the OS picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def format_host(host: str, port: int) -> str:
    """``host:port`` as PartySocket's ``host`` option wants it (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _RoomWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, with two deadlines.

    - Fragmented messages: a message sent in fragments that never finishes is
      reassembled in memory for as long as the socket lives (up to the message limit).
      Once its first fragment arrives, a message must finish within
      ``fragment_timeout`` seconds, or the socket is closed with 1008. Unfragmented
      messages (what browsers and partysocket send) and the time between messages are
      unaffected.
    - Writes: a client that stops reading keeps everything sent to it in memory, and
      even a close frame cannot reach it. When the transport's buffer stays full (no
      progress at all) for ``write_timeout`` seconds, the TCP connection is dropped.
      A slow but live client makes progress and resets the clock.
    """

    fragment_timeout: float = 60.0
    write_timeout: float = 30.0
    _fragment_timer: asyncio.TimerHandle | None = None
    _write_timer: asyncio.TimerHandle | None = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.write_timeout, self._write_expired)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_expired(self) -> None:
        self._write_timer = None
        log.warning(
            "dropping a WebSocket client that read nothing for %g s (%s)",
            self.write_timeout,
            self.client[0] if self.client else "?",
        )
        self.transport.abort()

    def handle_text(self, event: Frame) -> None:
        super().handle_text(event)
        self._watch_fragments(event.fin)

    def handle_bytes(self, event: Frame) -> None:
        super().handle_bytes(event)
        self._watch_fragments(event.fin)

    def handle_cont(self, event: Frame) -> None:
        super().handle_cont(event)
        self._watch_fragments(event.fin)

    def _watch_fragments(self, fin: bool) -> None:
        if fin:
            if self._fragment_timer is not None:
                self._fragment_timer.cancel()
                self._fragment_timer = None
        elif self._fragment_timer is None:
            self._fragment_timer = self.loop.call_later(
                self.fragment_timeout, self._fragment_expired
            )

    def _fragment_expired(self) -> None:
        self._fragment_timer = None
        self.frames = []
        if self.conn.close_sent is not None or self.transport.is_closing():
            return
        log.warning(
            "closing a WebSocket whose fragmented message did not finish in %g s (1008)",
            self.fragment_timeout,
        )
        self.conn.fail(1008, "message not completed in time")
        self.handle_parser_exception()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._fragment_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._fragment_timer = self._write_timer = None
        super().connection_lost(exc)


def _protocol_for(limits: Limits) -> type[WebSocketsSansIOProtocol]:
    return type(
        "RoomWebSocketProtocol",
        (_RoomWebSocketProtocol,),
        {"fragment_timeout": limits.fragment_timeout, "write_timeout": limits.send_timeout},
    )


def uvicorn_config(
    app: Starlette, *, log_level: str = "warning", **overrides: Any
) -> uvicorn.Config:
    """The uvicorn settings the room server is meant to run with."""
    limits = getattr(app.state, "limits", None)
    if not isinstance(limits, Limits):
        limits = Limits()
    settings: dict[str, Any] = {
        # The websockets library, sans-I/O (not deprecated), with a fragment deadline.
        "ws": _protocol_for(limits),
        "ws_per_message_deflate": False,
        # The message limit caps reassembly too (a fragmented message counts in full):
        # the library closes with 1009 as soon as a message would exceed it.
        "ws_max_size": limits.max_message_size,
        "lifespan": "on",
        "log_config": None,
        "log_level": log_level,
        "access_log": False,
        "timeout_graceful_shutdown": 5,
    }
    settings.update(overrides)
    return uvicorn.Config(app, **settings)


class ServerThread:
    """uvicorn serving ``app`` on a daemon thread with its own event loop.

    ``host`` is ``"127.0.0.1:PORT"`` (what ``PartyStoreWidget(host=...)`` and
    PartySocket take), ``url`` is ``"http://127.0.0.1:PORT"``; :meth:`stop` shuts down
    gracefully (closing WebSockets, then storage).
    """

    def __init__(
        self,
        app: Starlette,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        startup_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self._sock = bind_socket(host, port)
        self.bind_host = host
        self.port: int = self._sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn_config(app, log_level=log_level))
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"partywidget-server-{self.port}", daemon=True
        )
        self._thread.start()
        self._wait_started(startup_timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self._sock]))
        except BaseException as error:  # reported to the starting thread
            self._error = error
        finally:
            self._sock.close()

    def _wait_started(self, timeout: float) -> None:
        done = threading.Event()
        deadline = timeout
        while not done.wait(0.01):
            deadline -= 0.01
            if self.server.started:
                return
            if not self._thread.is_alive() or deadline <= 0:
                break
        if not self.server.started:
            self.stop()
            raise RuntimeError(f"room server failed to start: {self._error!r}")

    @property
    def host(self) -> str:
        return format_host(self.bind_host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and bool(self.server.started)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit and wait for the thread; forces exit after ``timeout``."""
        self.server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ServerThread {self.url} running={self.running}>"


def run_in_thread(
    app: Starlette | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log_level: str = "warning",
    **create_app_kwargs: Any,
) -> ServerThread:
    """Start a room server in the background; ``app`` defaults to ``create_app(**kw)``."""
    if app is None:
        app = create_app(**create_app_kwargs)
    elif create_app_kwargs:
        raise TypeError("pass either an app or create_app arguments, not both")
    return ServerThread(app, host, port, log_level=log_level)
