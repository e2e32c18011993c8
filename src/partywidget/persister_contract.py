"""What a transport sees of the generic persister: its callbacks, hooks and types.

:mod:`partywidget.persister` runs the lifecycle; a transport (PartyKit, a file, ...)
supplies four callbacks to :func:`partywidget.persister.create_custom_persister`:

``get_persisted()``
    awaitable returning the persisted Content ``(tables, values)``, Changes
    ``(tables, values, 1)`` or ``None`` when nothing is persisted yet.
``set_persisted(get_content, changes)``
    awaitable; ``changes`` is ``None`` for a full save (call ``get_content()`` for the
    Content) or the Changes of local transactions to send.
``add_persister_listener(listener)``
    start listening for remote changes; returns a handle (or an awaitable of one). The
    transport calls ``listener(content, changes)`` when something arrives (``listener(None,
    None)`` asks for a full reload); the call returns an awaitable that completes once
    the data is applied.
``del_persister_listener(handle)``
    stop listening (may return an awaitable).

Kept apart from the lifecycle so a transport's author reads one short module; every
name here is also importable from :mod:`partywidget.persister`.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from partywidget.model import Changes, Content

if TYPE_CHECKING:
    from partywidget.persister import Persister

__all__ = [
    "Action",
    "AddPersisterListener",
    "ContentOrChanges",
    "DelPersisterListener",
    "GetContent",
    "GetPersisted",
    "IgnoredErrorHandler",
    "InitialContent",
    "OldValues",
    "PersistableStore",
    "PersisterHooks",
    "PersisterListener",
    "SetPersisted",
    "Status",
    "StatusListener",
]


class Status(enum.IntEnum):
    """What the persister is doing; values equal TinyBase's ``Status`` enum."""

    IDLE = 0
    LOADING = 1
    SAVING = 2


class PersistableStore(Protocol):
    """The part of :class:`partywidget.store.Store` a persister uses."""

    def get_content(self) -> Content: ...

    def set_content(self, content: Any) -> Any: ...

    def apply_changes(self, changes: Any) -> Any: ...

    def transaction(self, actions: Any = None, do_rollback: Any = None) -> Any: ...

    def add_did_finish_transaction_listener(self, listener: Any, *args: Any) -> str: ...

    def get_transaction_changes(self) -> Changes: ...

    def get_transaction_log(self) -> Any: ...

    def del_listener(self, listener_id: str) -> Any: ...


ContentOrChanges: TypeAlias = "Content | Changes"
GetContent: TypeAlias = Callable[[], Content]
GetPersisted: TypeAlias = Callable[[], Awaitable[Any]]
SetPersisted: TypeAlias = Callable[[GetContent, "Changes | None"], Awaitable[Any]]
PersisterListener: TypeAlias = Callable[[Any, Any], Awaitable[None]]
AddPersisterListener: TypeAlias = Callable[[PersisterListener], Any]
DelPersisterListener: TypeAlias = Callable[[Any], Any]
StatusListener: TypeAlias = Callable[["Persister", Status], Any]
IgnoredErrorHandler: TypeAlias = Callable[[BaseException], Any]
InitialContent: TypeAlias = "Content | Callable[[], Content] | None"
Action: TypeAlias = Callable[[], Any]
#: A transaction's old cells ``{table: {row: {cell: [old, new]}}}`` and values
#: ``{value: [old, new]}`` (TinyBase's transaction log layout).
OldValues: TypeAlias = "tuple[dict[str, Any], dict[str, Any]]"


@dataclass(frozen=True)
class PersisterHooks:
    """Optional callbacks through which a transport takes part in local edits' way out.

    All are called on the persister's event-loop thread except ``wants_old_values``.

    ``wants_old_values(changes) -> bool``
        Called on the *writing* thread for every local transaction: should the values
        it replaced be read? Only the transaction's listener can still see them
        (TinyBase's transaction log), and reading them costs about as much again as
        the write, so a transport asks only when it lacks the information. The answer
        reaches ``on_local_changes``.
    ``on_local_changes(changes, old)``
        A local transaction changed something; ``old`` is :data:`OldValues` if
        ``wants_old_values`` asked for them, else ``None``. Called as the Changes join
        the pending batch, before they are handed over.
    ``unsent_changes() -> iterable of Changes``
        Local edits the transport holds and has not delivered yet (e.g. while offline).
        Like the persister's own pending batch, they are re-applied over loaded and
        remote data, because they will reach the other side after that data.
    ``hand_over(changes)``
        Take the pending local Changes synchronously (e.g. queue a socket message).
        When given, the persister skips the ``set_persisted`` flush task whenever no
        load or save is running -- a task costs event-loop turns on every edit's way
        out, and latency is counted in those turns. Same order, status changes and
        stats as ``set_persisted``; errors are reported.
    """

    wants_old_values: Callable[[Changes], bool] | None = None
    on_local_changes: Callable[[Changes, OldValues | None], Any] | None = None
    unsent_changes: Callable[[], Iterable[Changes]] | None = None
    hand_over: Callable[[Changes], Any] | None = None
