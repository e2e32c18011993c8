"""A pure, synchronous Python port of TinyBase 10's Store (``createStore()``).

See :class:`Store` for the semantics, input checking and the meaning of ``DELETED``.
Internals, one concern per module: ``_js`` (JavaScript semantics), ``_cells`` (input
checks and JSON cells), ``_schema`` (schema validation), ``_listeners`` (listener trees),
``_state`` (data and getters), ``_core`` (validation and change-recording mutations),
``_transactions`` (transactions, listener dispatch, Changes), ``_store`` (public API).
"""

from __future__ import annotations

from partywidget.model import DELETED
from partywidget.store._listeners import Listener
from partywidget.store._state import Sorter, default_sorter
from partywidget.store._store import Store, create_store
from partywidget.store._transactions import TransactionContext, TransactionLog

__all__ = [
    "DELETED",
    "Listener",
    "Sorter",
    "Store",
    "TransactionContext",
    "TransactionLog",
    "create_store",
    "default_sorter",
]
