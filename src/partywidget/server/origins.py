"""Which web pages may use the room server: Origin and Host checks, and CORS.

Why: a browser lets any web page send requests and open WebSockets to
``127.0.0.1``, so without these checks every page the user visits could read and write
every room of a local server, and DNS rebinding (a hostile name resolving to
127.0.0.1) would make such a page "same-origin". So, as Jupyter's server does:

- a request that carries an ``Origin`` (every cross-origin browser request, and every
  browser WebSocket) is refused with 403 unless the origin is allowed: loopback pages
  (``http(s)://localhost``, ``127.0.0.1``, ``[::1]``, any port) by default, plus the
  ``allow_origins`` given (``*`` allows every origin);
- when the server is reached on a loopback address, the ``Host`` header must name a
  loopback host (or the host of an allowed origin), which defeats DNS rebinding;
- requests without ``Origin`` (Python, Node and other non-browser clients) pass.

CORS answers follow the same rule: an allowed origin is echoed in
``Access-Control-Allow-Origin`` and every response varies by ``Origin``.
:class:`OriginPolicy` decides from plain strings; :class:`OriginGuard` is the thin ASGI
wrapper.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from partywidget.server.room import printable

__all__ = ["OriginGuard", "OriginPolicy"]

log = logging.getLogger("partywidget.server")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _is_loopback_name(hostname: str) -> bool:
    if hostname in LOOPBACK_NAMES or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _split(url: str) -> tuple[str, str, int | None] | None:
    """``(scheme, hostname, port)`` of an origin, or ``None`` if it is not one."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or parts.path not in ("", "/"):
        return None
    return parts.scheme, parts.hostname, port


def _host_name(host: str) -> str | None:
    """The host name of a ``Host`` header (``[::1]:1999`` -> ``::1``)."""
    try:
        parts = urlsplit("//" + host.strip().lower())
        parts.port  # noqa: B018 -- raises on a malformed port
    except ValueError:
        return None
    return parts.hostname


@dataclass(frozen=True)
class _Pattern:
    scheme: str
    hostname: str
    port: int | None  # None: the default port only
    any_port: bool

    @classmethod
    def parse(cls, text: str) -> _Pattern:
        any_port = text.rstrip("/").endswith(":*")
        split = _split(text.rstrip("/")[:-2] if any_port else text)
        if split is None:
            raise ValueError(f"not an origin (scheme://host[:port|:*]): {text!r}")
        return cls(*split, any_port)

    def matches(self, scheme: str, hostname: str, port: int | None) -> bool:
        return (scheme, hostname) == (self.scheme, self.hostname) and (
            self.any_port or port == self.port
        )


class OriginPolicy:
    """The allowed origins: loopback pages always, plus ``allow_origins``."""

    def __init__(self, allow_origins: Iterable[str] = ()) -> None:
        extra = [o.strip() for o in allow_origins]
        self.allow_any = "*" in extra
        self.patterns = tuple(_Pattern.parse(o) for o in extra if o != "*")
        self.hosts = frozenset(p.hostname for p in self.patterns)

    def origin_allowed(self, origin: str) -> bool:
        if self.allow_any:
            return True
        split = _split(origin)
        if split is None:  # "null" (file://, sandboxed frames) and garbage
            return False
        scheme, hostname, port = split
        if scheme in ("http", "https") and _is_loopback_name(hostname):
            return True
        return any(p.matches(scheme, hostname, port) for p in self.patterns)

    def host_allowed(self, host: str | None, server_host: str | None) -> bool:
        """Whether a request naming ``host`` may reach a server on ``server_host``."""
        if host is None or server_host is None or not _is_loopback_name(server_host):
            return True
        name = _host_name(host)
        return name is not None and (_is_loopback_name(name) or name in self.hosts)

    def refusal(self, origin: str | None, host: str | None, server_host: str | None) -> str:
        """Why a request is refused, or ``""`` if it may pass."""
        if not self.host_allowed(host, server_host):
            return f"Host {printable(host or '', 80)!r} is not a loopback name"
        if origin is not None and not self.origin_allowed(origin):
            return f"Origin {printable(origin, 80)!r} is not allowed"
        return ""


class OriginGuard:
    """ASGI middleware applying an :class:`OriginPolicy` to HTTP and WebSocket scopes."""

    def __init__(self, app: ASGIApp, policy: OriginPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        server = scope.get("server")
        reason = self.policy.refusal(origin, headers.get("host"), server[0] if server else None)
        if reason:
            log.warning("refused %s %s: %s", scope["type"], printable(scope["path"], 80), reason)
            response = PlainTextResponse(f"Forbidden: {reason}", status_code=403)
            if scope["type"] == "http":
                await response(scope, receive, send)
            else:
                websocket = WebSocket(scope, receive, send)
                if "websocket.http.response" in scope.get("extensions", {}):
                    await websocket.send_denial_response(response)
                else:
                    await websocket.close(1008)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        allowed = "*" if self.policy.allow_any else origin

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                if allowed is not None and "access-control-allow-origin" in response_headers:
                    response_headers["access-control-allow-origin"] = allowed
                response_headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)
