"""partywidget's room server: TinyBase's PartyKit server, in Python.

A drop-in for ``TinyBasePartyKitServer`` on PartyKit (same URLs, HTTP statuses, messages
and storage layout), served by Starlette + uvicorn, durable in SQLite. Use
:func:`create_app` for an ASGI app, :func:`run_in_thread` for a background server, or
``partywidget serve`` from a shell.

Only what a user writes against is exported here: the server classes to subclass, the
types their hooks receive, ``create_app`` and its options, the storages, and the thread
runner. The machinery (room registry, per-room storage views, the lobby record) lives
in the submodules and may change.
"""

from __future__ import annotations

from partywidget.server.app import create_app
from partywidget.server.room import Connection, Limits, PartyServer
from partywidget.server.storage import MemoryStorage, SQLiteStorage, Storage
from partywidget.server.thread import ServerThread, run_in_thread
from partywidget.server.tinybase import TinyBasePartyKitServer, TinyBaseServerConfig

__all__ = [
    "Connection",
    "Limits",
    "MemoryStorage",
    "PartyServer",
    "SQLiteStorage",
    "ServerThread",
    "Storage",
    "TinyBasePartyKitServer",
    "TinyBaseServerConfig",
    "create_app",
    "run_in_thread",
]
