"""Our client stack (Store + PartySocket + PartyKit persister) as interop tests run it,
and small helpers to name rooms and read a room's store over HTTP."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from partywidget.codec import decode_content
from partywidget.partykit.persister import PartyKitPersister, create_partykit_persister
from partywidget.partykit.socket import PartySocket
from partywidget.store import Store, create_store


class RoomServer(Protocol):
    """Our server (``ServerThread``) or the reference one (``PartykitDev``)."""

    @property
    def host(self) -> str: ...


# workerd is slow to answer a close frame: do not wait for it at teardown.
FAST_SOCKET: dict[str, Any] = {
    "min_reconnection_delay": 0.05,
    "max_reconnection_delay": 0.3,
    "close_timeout": 0.2,
}
NODE_FAST_SOCKET: dict[str, Any] = {"minReconnectionDelay": 50, "maxReconnectionDelay": 300}


_room_counter = iter(range(1_000_000))


def new_room(name: str) -> str:
    """A fresh room name starting with ``name`` (for one room per test: ``room``)."""
    return f"{name}-{os.getpid()}-{next(_room_counter)}"


# -- our client ---------------------------------------------------------------------------
@dataclass
class PyClient:
    store: Store
    socket: PartySocket
    persister: PartyKitPersister
    errors: list[BaseException] = field(default_factory=list)


@contextlib.asynccontextmanager
async def py_client(
    host: str,
    room: str,
    config: dict[str, Any] | None = None,
    *,
    initial_content: Any = None,
    socket_options: dict[str, Any] | None = None,
    start: bool = True,
) -> AsyncIterator[PyClient]:
    store = create_store()
    errors: list[BaseException] = []
    socket = PartySocket(host, room, **{**FAST_SOCKET, **(socket_options or {})})
    persister = create_partykit_persister(
        store, socket, {"store_protocol": "http", **(config or {})}, errors.append
    )
    client = PyClient(store, socket, persister, errors)
    try:
        if start:
            await persister.start_auto_persisting(initial_content)
        yield client
    finally:
        await persister.destroy()
        await socket.aclose()


async def get_store(url: str) -> tuple[bytes, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    response.raise_for_status()
    body = response.content
    return body, (decode_content(body.decode()) if body else None)


def store_url(server: RoomServer, room: str, path: str = "/store") -> str:
    return f"http://{server.host}/parties/main/{room}{path}"
