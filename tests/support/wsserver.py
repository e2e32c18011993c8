"""A bare ``websockets`` server for socket tests that script the server side by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.server import ServerConnection, serve


@asynccontextmanager
async def ws_server(
    handler: Callable[[ServerConnection], Awaitable[None]], **serve_options: Any
) -> AsyncIterator[str]:
    """Serve ``handler`` on a free loopback port; yields its ``"127.0.0.1:PORT"``."""
    async with serve(handler, "127.0.0.1", 0, **serve_options) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"127.0.0.1:{port}"
