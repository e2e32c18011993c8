"""PartyKit client side: PartySocket and the PartyKit persister."""

from __future__ import annotations

from .persister import PartyKitPersister, create_partykit_persister
from .socket import CloseEvent, ErrorEvent, MessageEvent, OpenEvent, PartySocket

__all__ = [
    "CloseEvent",
    "ErrorEvent",
    "MessageEvent",
    "OpenEvent",
    "PartyKitPersister",
    "PartySocket",
    "create_partykit_persister",
]
