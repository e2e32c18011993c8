"""A pure, synchronous Python port of TinyBase 10's Store (``createStore()``).

See :class:`Store` for the semantics, input checking and the meaning of ``DELETED``.

The Store is one object in four layers, each a class in its own module that extends the
one below:

- ``_state`` (``StoreState``): every attribute -- data, schemas, the running
  transaction's net-change records, the listener trees -- and the read-only API.
- ``_core`` (``StoreCore``): validation against schemas, and the mutations that apply
  valid input and record its net changes.
- ``_transactions`` (``StoreTransactions``): start, finish and rollback, and the Changes
  and log of the running transaction.
- ``_store`` (``Store``): the public facade; checks Python input, opens a transaction,
  calls the layer below; the ``add_*_listener`` methods.

The helpers they call are plain functions and objects: ``_input`` (checking Python
input), ``_dispatch`` (which change listeners to call when a transaction finishes, in
TinyBase's order), ``_listeners`` (listener trees and Ids, the table of listener kinds),
``_schema`` (schema validation), ``_cells`` and ``_js`` (JSON cells, JavaScript semantics).

Layers of one object rather than separate objects, because the hot paths (``set_cell``,
finishing a transaction) read attributes of every layer, and a hop to another object on
each read would cost several percent of a ``set_cell``.

Where a change goes: a public method, ``_store``; what a mutation does or records,
``_core``; when listeners run, ``_transactions``; which listeners and with what
arguments, ``_dispatch``; a new kind of listener, a ``KINDS`` entry, its tree in
``_state`` and a one-line method in ``_store``.
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
