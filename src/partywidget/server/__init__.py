"""partywidget's room server: TinyBase's PartyKit server, in Python.

A drop-in for ``TinyBasePartyKitServer`` on PartyKit (same URLs, HTTP statuses, messages
and storage layout), served by Starlette + uvicorn, durable in SQLite. Use
:func:`create_app` for an ASGI app, :func:`run_in_thread` for a background server, or
``partywidget serve`` from a shell.
"""

from __future__ import annotations

from partywidget.server.app import RoomRegistry, create_app, make_storage
from partywidget.server.room import Connection, Limits, Lobby, PartyServer, Room
from partywidget.server.storage import (
    MISSING,
    MemoryStorage,
    RoomStorage,
    SQLiteStorage,
    Storage,
    StorageTransaction,
)
from partywidget.server.thread import ServerThread, run_in_thread
from partywidget.server.tinybase import (
    CORS_HEADERS,
    TinyBasePartyKitServer,
    TinyBaseServerConfig,
)

__all__ = [
    "CORS_HEADERS",
    "MISSING",
    "Connection",
    "Limits",
    "Lobby",
    "MemoryStorage",
    "PartyServer",
    "Room",
    "RoomRegistry",
    "RoomStorage",
    "SQLiteStorage",
    "ServerThread",
    "Storage",
    "StorageTransaction",
    "TinyBasePartyKitServer",
    "TinyBaseServerConfig",
    "create_app",
    "make_storage",
    "run_in_thread",
]
