"""partywidget: TinyBase's PartyKit sync in Jupyter.

The public API is loaded lazily: ``import partywidget`` stays cheap (the room server and
CLI never pay for pandas/anywidget), and each name is imported from its own layer on
first use. See ARCHITECTURE.md for the layers.

``_LAZY`` is the one list of the public names; ``__all__`` is derived from it. The
``TYPE_CHECKING`` imports repeat it for type checkers and IDEs (they cannot read a
table), and ``tests/unit/test_exported_members.py`` fails if the two ever differ.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from .model import DELETED as DELETED

if _typing.TYPE_CHECKING:
    # One line per public name, the same pairs as _LAZY below.
    from .codec import CodecError as CodecError
    from .partykit.persister import PartyKitPersister as PartyKitPersister
    from .partykit.persister import create_partykit_persister as create_partykit_persister
    from .partykit.socket import CloseEvent as CloseEvent
    from .partykit.socket import ErrorEvent as ErrorEvent
    from .partykit.socket import MessageEvent as MessageEvent
    from .partykit.socket import OpenEvent as OpenEvent
    from .partykit.socket import PartySocket as PartySocket
    from .persister import Persister as Persister
    from .persister import Status as Status
    from .persister import create_custom_persister as create_custom_persister
    from .server import MemoryStorage as MemoryStorage
    from .server import ServerThread as ServerThread
    from .server import SQLiteStorage as SQLiteStorage
    from .server import TinyBasePartyKitServer as TinyBasePartyKitServer
    from .server import create_app as create_app
    from .server import run_in_thread as run_in_thread
    from .store import Store as Store
    from .store import create_store as create_store
    from .widget import PartyStoreWidget as PartyStoreWidget

__version__ = "0.1.0"

# Public name -> the module (relative to this package) that defines it.
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

__all__ = sorted(["DELETED", "__version__", *_LAZY])


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'partywidget' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
