"""partywidget: TinyBase's PartyKit sync in Jupyter.

The public API is loaded lazily: ``import partywidget`` stays cheap (the room server and
CLI never pay for pandas/anywidget), and each name is imported from its own layer on
first use. See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .model import DELETED

if TYPE_CHECKING:
    from .codec import CodecError
    from .partykit.persister import PartyKitPersister, create_partykit_persister
    from .partykit.socket import CloseEvent, ErrorEvent, MessageEvent, OpenEvent, PartySocket
    from .persister import Persister, Status, create_custom_persister
    from .server import (
        MemoryStorage,
        ServerThread,
        SQLiteStorage,
        TinyBasePartyKitServer,
        create_app,
        run_in_thread,
    )
    from .store import Store, create_store
    from .widget import PartyStoreWidget

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "CodecError": ".codec",
    "Store": ".store",
    "create_store": ".store",
    "Persister": ".persister",
    "Status": ".persister",
    "create_custom_persister": ".persister",
    "PartySocket": ".partykit.socket",
    "OpenEvent": ".partykit.socket",
    "MessageEvent": ".partykit.socket",
    "CloseEvent": ".partykit.socket",
    "ErrorEvent": ".partykit.socket",
    "PartyKitPersister": ".partykit.persister",
    "create_partykit_persister": ".partykit.persister",
    "TinyBasePartyKitServer": ".server",
    "MemoryStorage": ".server",
    "SQLiteStorage": ".server",
    "ServerThread": ".server",
    "create_app": ".server",
    "run_in_thread": ".server",
    "PartyStoreWidget": ".widget",
}

__all__ = [
    "DELETED",
    "CloseEvent",
    "CodecError",
    "ErrorEvent",
    "MemoryStorage",
    "MessageEvent",
    "OpenEvent",
    "PartyKitPersister",
    "PartySocket",
    "PartyStoreWidget",
    "Persister",
    "SQLiteStorage",
    "ServerThread",
    "Status",
    "Store",
    "TinyBasePartyKitServer",
    "__version__",
    "create_app",
    "create_custom_persister",
    "create_partykit_persister",
    "create_store",
    "run_in_thread",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'partywidget' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
