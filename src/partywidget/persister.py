"""The generic persister: TinyBase's ``createCustomPersister`` lifecycle on asyncio.

A persister connects a Store to somewhere else (a PartyKit room, a file, ...). The
lifecycle -- load, save, auto-load, auto-save, status, stats, a serial schedule, destroy
-- is the same for every destination, so, as in TinyBase, it lives here once and a
transport only supplies four callbacks (their contracts, and every type a transport
sees, are in :mod:`partywidget.persister_contract`).

A transport that needs more than these four -- to take part in what happens to local
edits, as the PartyKit persister's sync engine does -- passes a :class:`PersisterHooks`
(every hook optional) and uses the public methods meant for transports:
:meth:`Persister.apply_loaded`, :meth:`Persister.loading`, :meth:`Persister.spawn`,
:meth:`Persister.report_error`, :meth:`Persister.get_pending_changes` and
:meth:`Persister.is_destroyed`.

Where this differs from TinyBase 10 (on purpose, invisible on the wire):

- Echo suppression is explicit: while the persister applies loaded or remote data to the
  Store, its own auto-save listener ignores the resulting transaction. (TinyBase relies
  on ``save`` being skipped while the status is *loading*, which also drops genuine
  local edits made during a load.)
- Local transactions are coalesced: every transaction's Changes are merged into a
  pending batch that is handed to ``set_persisted`` once per event-loop turn, so a Python
  loop of ``set_cell`` calls becomes one message instead of thousands.
- The initial save of :meth:`Persister.start_auto_save` does not lose edits made while it
  is in flight: the Store listener is installed *before* the full save, edits are held
  and sent after it (TinyBase installs it afterwards, so those edits are never sent).
- Remote data is applied with pending (not yet sent) local edits re-applied on top, in
  the same Store transaction: those edits reach the server after the remote ones, so the
  server will end up with them, and so must we.

Threads: the Store may be mutated from a thread other than the persister's event loop
(the widget's background-loop mode). The auto-save listener then runs on that thread;
it only reads the transaction's Changes and hands them to the loop with
``loop.call_soon_threadsafe``. Loaded and remote data are always applied to the Store on
the loop thread, so a caller that mutates the Store from another thread must marshal its
Store calls onto the loop (the Store itself is not thread-safe); the widget does.

Every error swallowed here (and by transports built on it) goes to ``on_ignored_error``
and to this module's logger; background tasks never end with an unretrieved exception.

One class of ~750 lines on purpose: load, save, auto-load and auto-save share one
schedule, one status and one set of generation counters, and their interleavings are
the hard part; apart, each half would reach into the other's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any

from partywidget.changes import changes_is_empty, copy_changes, merge_changes_into
from partywidget.model import Changes, Content
from partywidget.persister_contract import (
    Action as Action,
)
from partywidget.persister_contract import (
    AddPersisterListener,
    DelPersisterListener,
    GetPersisted,
    IgnoredErrorHandler,
    OldValues,
    PersisterHooks,
    PersisterListener,
    SetPersisted,
    Status,
    StatusListener,
)
from partywidget.persister_contract import ContentOrChanges as ContentOrChanges
from partywidget.persister_contract import GetContent as GetContent
from partywidget.persister_contract import InitialContent as InitialContent
from partywidget.persister_contract import PersistableStore as PersistableStore

__all__ = [
    "AddPersisterListener",
    "DelPersisterListener",
    "GetPersisted",
    "IgnoredErrorHandler",
    "OldValues",
    "Persister",
    "PersisterHooks",
    "PersisterListener",
    "SetPersisted",
    "Status",
    "StatusListener",
    "create_custom_persister",
]

logger = logging.getLogger(__name__)


_NO_HANDLE: Any = object()


class Persister:
    """A Store's persister; all lifecycle methods are coroutines returning ``self``.

    Build one with :func:`create_custom_persister` or a transport such as
    :func:`partywidget.create_partykit_persister`. Methods mirror TinyBase's
    ``Persister`` (``start_auto_load`` = ``startAutoLoad``, ...).
    """

    def __init__(
        self,
        store: PersistableStore,
        get_persisted: GetPersisted,
        set_persisted: SetPersisted,
        add_persister_listener: AddPersisterListener,
        del_persister_listener: DelPersisterListener,
        on_ignored_error: IgnoredErrorHandler | None = None,
        *,
        coalesce: bool = True,
        on_destroy: Callable[[], Any] | None = None,
        hooks: PersisterHooks | None = None,
    ) -> None:
        self._store = store
        self._get_persisted = get_persisted
        self._set_persisted = set_persisted
        self._add_persister_listener = add_persister_listener
        self._del_persister_listener = del_persister_listener
        self._on_ignored_error = on_ignored_error
        self._coalesce = coalesce
        self._on_destroy = on_destroy

        self._status = Status.IDLE
        self._loads = 0
        self._saves = 0
        self._status_listeners: dict[str, StatusListener] = {}
        self._next_listener_id = 0

        self._auto_load_handle: Any = _NO_HANDLE
        self._auto_load_task: asyncio.Future[Any] | None = None
        self._auto_load_generation = 0
        self._initial_load_pending = False
        self._pending_auto_loads = 0
        self._pending_scheduled_auto_loads = 0
        self._auto_load_after_save_generation = 0

        self._auto_save_listener_id: str | None = None
        self._auto_save_generation = 0
        self._holding_local = False
        self._pending_local: list[Changes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        hooks = hooks if hooks is not None else PersisterHooks()
        self._hooks = hooks
        self._hand_over_sync = hooks.hand_over
        self._wants_old_values = hooks.wants_old_values
        self._on_local_changes = hooks.on_local_changes
        self._transport_unsent = hooks.unsent_changes

        self._applying = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

        self._schedule_lock = asyncio.Lock()
        self._active_action: asyncio.Future[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._destroyed = False
        self._destroying: asyncio.Task[None] | None = None
        self._closed = False

    # -- small helpers ----------------------------------------------------------------
    def _report(self, error: BaseException) -> None:
        """Hand a swallowed error to ``on_ignored_error`` (never raising from here)."""
        logger.debug("persister ignored error: %r", error, exc_info=error)
        if self._on_ignored_error is not None:
            try:
                result = self._on_ignored_error(error)
                if inspect.isawaitable(result):
                    self._spawn(_await(result))
            except Exception:
                logger.exception("on_ignored_error raised")

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        """Remember the running loop: cross-thread Store edits are handed to it."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._loop_thread = threading.get_ident()
        return loop

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task we own: strong reference, errors reported, not raised."""
        loop = self._loop or asyncio.get_running_loop()
        task: asyncio.Task[Any] = loop.create_task(_await(coro))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._report(error)

    def _set_status(self, status: Status) -> None:
        if status != self._status:
            self._status = status
            for listener in list(self._status_listeners.values()):
                try:
                    listener(self, status)
                except Exception as error:
                    self._report(error)

    @contextlib.contextmanager
    def _applying_to_store(self) -> Iterator[None]:
        """Mark Store writes made by the persister itself so auto-save does not echo them."""
        self._applying += 1
        try:
            yield
        finally:
            self._applying -= 1

    def _apply(self, content: Any = None, changes_list: Any = ()) -> None:
        """Apply loaded/remote data in one Store transaction, without echo.

        ``content`` (if not ``None``) replaces the Store; each item of ``changes_list``
        (Changes, or Content replacing everything) is then applied in order; local edits
        not yet delivered are re-applied last because they will reach the server after
        this data. The Store's listeners see only the net result of it all.
        """
        with self._applying_to_store(), self._store.transaction():
            if content is not None:
                self._store.set_content(content)
            for item in changes_list:
                if _is_changes(item):
                    self._store.apply_changes(item)
                else:
                    self._store.set_content(item)
            for changes in self._pending_local:
                self._store.apply_changes(changes)
            if self._transport_unsent is not None:
                for changes in self._transport_unsent():
                    self._store.apply_changes(changes)

    # -- for transports -------------------------------------------------------------------
    def apply_loaded(
        self,
        content: Content | None = None,
        changes: Iterable[Any] = (),
        *,
        count_load: bool = False,
    ) -> None:
        """Apply loaded or remote data to the Store in one transaction, without echo.

        ``content`` (if not ``None``) replaces the Store, then each item of ``changes``
        (Changes, or Content replacing everything) is applied in order, then the local
        edits not delivered yet (ours and the transport's ``unsent_changes``), because
        they reach the other side after this data. ``count_load`` counts it in
        ``get_stats()["loads"]``. Call on the persister's loop thread.
        """
        if count_load:
            self._loads += 1
        self._apply(content, changes)

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """The status is LOADING within (a transport's own reload), IDLE after."""
        self._set_status(Status.LOADING)
        try:
            yield
        finally:
            self._set_status(Status.IDLE)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a background task owned by the persister: cancelled by
        :meth:`destroy`, its errors reported to ``on_ignored_error``, never raised."""
        return self._spawn(coro)

    def report_error(self, error: BaseException) -> None:
        """Hand a swallowed error to ``on_ignored_error`` and the logger."""
        self._report(error)

    def get_pending_changes(self) -> Sequence[Changes]:
        """Local edits waiting to be handed to the transport, oldest first (read-only)."""
        return self._pending_local

    def is_destroyed(self) -> bool:
        """Whether :meth:`destroy` was called."""
        return self._destroyed

    def _apply_content_or_changes(self, data: Any) -> None:
        if _is_changes(data):
            self._apply(None, [data])
        else:
            self._apply(data)

    def _set_default_content(self, initial_content: InitialContent) -> None:
        content = initial_content() if callable(initial_content) else initial_content
        if content is not None:
            self._apply(content)

    # -- load ---------------------------------------------------------------------------
    async def load(self, initial_content: InitialContent = None) -> Persister:
        """Replace the Store with the persisted content (or ``initial_content`` if none).

        Errors are reported to ``on_ignored_error``, never raised; with an error or
        nothing persisted, ``initial_content`` (Content or a function returning it) is
        used. Skipped while saving, like TinyBase.
        """
        self._bind_loop()
        if self._status != Status.SAVING:
            self._set_status(Status.LOADING)
            self._loads += 1
            try:
                await self.schedule(lambda: self._load_action(initial_content))
            finally:
                self._set_status(Status.IDLE)
        return self

    async def _load_action(self, initial_content: InitialContent) -> None:
        try:
            data = await self._get_persisted()
        except Exception as error:
            self._report(error)
            self._set_default_content(initial_content)
            return
        if data is None:
            self._set_default_content(initial_content)
        elif isinstance(data, (tuple, list)) and len(data) in (2, 3):
            self._apply_content_or_changes(data)
        else:
            self._report(ValueError(f"persisted data is not Content: {data!r:.100}"))

    # -- auto-load ------------------------------------------------------------------------
    async def start_auto_load(self, initial_content: InitialContent = None) -> Persister:
        """Listen for remote changes, then load (listening first so nothing is missed)."""
        self._bind_loop()
        generation = self._auto_load_generation = self._auto_load_generation + 1
        await self.stop_auto_load(_keep_generation=True)
        if generation != self._auto_load_generation or self._destroyed:
            return self
        self._initial_load_pending = True
        try:
            listener = self._make_persister_listener(generation)
            try:
                handle = self._add_persister_listener(listener)
                if inspect.isawaitable(handle):
                    handle = await handle
            except Exception as error:
                self._report(error)
            else:
                if generation == self._auto_load_generation and not self._destroyed:
                    self._auto_load_handle = handle
                else:
                    await self._del_handle(handle)
            if generation == self._auto_load_generation and not self._destroyed:
                await self.load(initial_content)
        finally:
            self._initial_load_pending = False
        return self

    def _make_persister_listener(self, generation: int) -> Callable[[Any, Any], Awaitable[None]]:
        def listener(content: Any = None, changes: Any = None) -> Awaitable[None]:
            """Apply what a transport received; returns an awaitable of its completion.

            Applied at once when nothing else is queued (so arrival order is kept without
            a task per message), else queued behind the running load/save.
            """
            loop = self._loop or asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            if generation != self._auto_load_generation or self._destroyed:
                done.set_result(None)
                return done
            data = changes if changes is not None else content
            if data is None:
                if self._status == Status.SAVING:
                    self._auto_load_after_save_generation = generation
                    done.set_result(None)
                else:
                    task = self._spawn(self.load())
                    _chain(task, done)
                return done
            must_queue = (
                self._initial_load_pending
                or self._status == Status.SAVING
                or self._pending_scheduled_auto_loads > 0
                or self._schedule_lock.locked()
            )
            self._loads += 1
            if not must_queue:
                self._set_status(Status.LOADING)
                try:
                    self._apply_content_or_changes(data)
                except Exception as error:
                    self._report(error)
                finally:
                    if not self._pending_auto_loads:
                        self._set_status(Status.IDLE)
                done.set_result(None)
                return done
            self._pending_auto_loads += 1
            self._pending_scheduled_auto_loads += 1
            self._set_status(Status.LOADING)

            async def queued() -> None:
                try:
                    await self.schedule(lambda: self._apply_content_or_changes(data))
                finally:
                    self._pending_scheduled_auto_loads -= 1
                    self._pending_auto_loads -= 1
                    if not self._pending_auto_loads:
                        self._set_status(Status.IDLE)

            _chain(self._spawn(queued()), done)
            return done

        return listener

    async def _del_handle(self, handle: Any) -> None:
        try:
            result = self._del_persister_listener(handle)
            if inspect.isawaitable(result):
                await result
        except Exception as error:
            self._report(error)

    async def stop_auto_load(self, *, _keep_generation: bool = False) -> Persister:
        """Stop listening for remote changes."""
        self._auto_load_after_save_generation = 0
        if not _keep_generation:
            self._auto_load_generation += 1
        handle, self._auto_load_handle = self._auto_load_handle, _NO_HANDLE
        if handle is not _NO_HANDLE:
            await self._del_handle(handle)
        return self

    def is_auto_loading(self) -> bool:
        return self._auto_load_handle is not _NO_HANDLE

    # -- save -----------------------------------------------------------------------------
    async def save(self) -> Persister:
        """Persist the whole Store content (skipped while loading, like TinyBase)."""
        self._bind_loop()
        if self._status != Status.LOADING:
            await self._save(None)
        return self

    async def _save(self, changes: Changes | None) -> None:
        self._set_status(Status.SAVING)
        self._saves += 1
        try:
            await self.schedule(lambda: self._set_persisted(self._store.get_content, changes))
        finally:
            self._set_status(Status.IDLE)
            await self._run_auto_load_after_save()

    async def _run_auto_load_after_save(self) -> None:
        generation = self._auto_load_after_save_generation
        self._auto_load_after_save_generation = 0
        if generation and generation == self._auto_load_generation and not self._destroyed:
            if self._status == Status.SAVING:
                self._auto_load_after_save_generation = generation
            else:
                await self.load()

    # -- auto-save ------------------------------------------------------------------------
    async def start_auto_save(self) -> Persister:
        """Save the whole Store once, then send the Changes of each local transaction.

        The Store listener is installed before that first save; edits made while it is
        in flight are held and sent right after it.
        """
        loop = self._bind_loop()
        generation = self._auto_save_generation = self._auto_save_generation + 1
        await self.stop_auto_save(_keep_generation=True)
        if generation != self._auto_save_generation or self._destroyed:
            return self
        self._holding_local = True
        self._auto_save_listener_id = self._store.add_did_finish_transaction_listener(
            self._make_store_listener(generation, loop)
        )
        try:
            await self._save(None)
        finally:
            self._holding_local = False
            if self._pending_local and self.is_auto_saving():
                self._schedule_flush()
        return self

    def _make_store_listener(
        self, generation: int, loop: asyncio.AbstractEventLoop
    ) -> Callable[..., None]:
        loop_thread = threading.get_ident()

        def on_did_finish_transaction(*_args: Any) -> None:
            """Take the transaction's Changes to the loop (never blocking the writer)."""
            if generation != self._auto_save_generation or self._destroyed:
                return
            on_loop = threading.get_ident() == loop_thread
            if on_loop and self._applying:
                return
            changes = self._store.get_transaction_changes()
            if changes_is_empty(changes):
                return
            old: OldValues | None = None
            wants_old_values = self._wants_old_values
            if wants_old_values is not None and wants_old_values(changes):
                log = self._store.get_transaction_log()
                old = (log[2], log[4])
            if on_loop:
                self._take_local_changes(changes, generation, old)
            else:
                try:
                    loop.call_soon_threadsafe(self._take_local_changes, changes, generation, old)
                except RuntimeError as error:  # the loop is closed
                    self._report(error)

        return on_did_finish_transaction

    def _take_local_changes(
        self, changes: Changes, generation: int, old: OldValues | None = None
    ) -> None:
        if generation != self._auto_save_generation or self._destroyed:
            return
        on_local_changes = self._on_local_changes
        if on_local_changes is not None:
            on_local_changes(changes, old)
        if not (
            self._coalesce
            and self._pending_local
            and merge_changes_into(self._pending_local[-1], changes)
        ):
            # A private copy: the Store may reuse its structures after the transaction.
            self._pending_local.append(copy_changes(changes))
        if not self._holding_local:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        """Flush at the end of this loop turn: all edits of the turn become one batch."""
        if self._flush_handle is None and self._loop is not None:
            self._flush_handle = self._loop.call_soon(self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        if self._flush_task is None and self._pending_local and not self._holding_local:
            if self._hand_over_now():
                return
            self._flush_task = self._spawn(self._flush())

    def _hand_over_now(self) -> bool:
        """Hand pending local Changes over right here, if the transport allows it.

        Why: a flush task costs event-loop turns (task start, then the transport's own
        hops) on every edit's way out, and latency is counted in those turns. A
        transport whose hand-over is synchronous (``PersisterHooks.hand_over``, e.g. PartyKit's
        queue-a-socket-message) skips the task when nothing else is scheduled or
        running; the effect is what :meth:`_flush` would do -- same order, same status
        changes, same stats, errors reported -- one turn earlier. Coalescing is
        unchanged: this runs at the end of the turn in which the edits were made.
        """
        hand_over = self._hand_over_sync
        if (
            hand_over is None
            or self._schedule_lock.locked()
            or self._active_action is not None
            or self._closed
        ):
            return False
        while self._pending_local and not self._closed:
            changes = self._pending_local.pop(0)
            self._set_status(Status.SAVING)
            try:
                hand_over(changes)
            except Exception as error:
                self._report(error)
            finally:
                self._set_status(Status.IDLE)
            self._saves += 1
        return True

    async def _flush(self) -> None:
        """Hand pending local Changes to the transport, oldest first, one save each."""
        try:
            while self._pending_local and not self._closed:
                # Kept pending (re-applied over remote data) until handed over.
                await self.schedule(self._hand_over)
                self._saves += 1
        finally:
            self._flush_task = None

    async def _hand_over(self) -> None:
        if not self._pending_local:
            return
        # Taken only now (not when queued): edits made meanwhile were merged into it.
        changes = self._pending_local.pop(0)
        self._set_status(Status.SAVING)
        try:
            await self._set_persisted(self._store.get_content, changes)
        finally:
            self._set_status(Status.IDLE)

    def has_pending_changes(self) -> bool:
        """Whether local edits are waiting to be handed to the transport."""
        return bool(self._pending_local) or self._flush_task is not None

    async def stop_auto_save(self, *, _keep_generation: bool = False) -> Persister:
        """Stop sending local changes (those already made are still sent)."""
        if not _keep_generation:
            self._auto_save_generation += 1
        listener_id, self._auto_save_listener_id = self._auto_save_listener_id, None
        if listener_id is not None:
            self._store.del_listener(listener_id)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._pending_local and not self._destroyed:
            self._holding_local = False
            if self._flush_task is None:
                self._flush_task = self._spawn(self._flush())
        if self._flush_task is not None:
            await asyncio.shield(self._flush_task)
        return self

    def is_auto_saving(self) -> bool:
        return self._auto_save_listener_id is not None

    # -- both -----------------------------------------------------------------------------
    async def start_auto_persisting(
        self, initial_content: InitialContent = None, start_save_first: bool = False
    ) -> Persister:
        """Start auto-load then auto-save (or the reverse); on failure stop both."""
        first: Callable[[], Awaitable[Persister]]
        second: Callable[[], Awaitable[Persister]]
        if start_save_first:
            first, second = self.start_auto_save, lambda: self.start_auto_load(initial_content)
        else:
            first, second = lambda: self.start_auto_load(initial_content), self.start_auto_save
        await first()
        try:
            await second()
        except BaseException:
            await self.stop_auto_persisting(start_save_first)
            raise
        return self

    async def stop_auto_persisting(self, stop_save_first: bool = False) -> Persister:
        if stop_save_first:
            try:
                await self.stop_auto_save()
            finally:
                await self.stop_auto_load()
        else:
            try:
                await self.stop_auto_load()
            finally:
                await self.stop_auto_save()
        return self

    # -- status, listeners, stats ---------------------------------------------------------
    def get_status(self) -> Status:
        return self._status

    def add_status_listener(self, listener: StatusListener) -> str:
        """Call ``listener(persister, status)`` on every status change; returns its id."""
        listener_id = str(self._next_listener_id)
        self._next_listener_id += 1
        self._status_listeners[listener_id] = listener
        return listener_id

    def del_listener(self, listener_id: str) -> Persister:
        self._status_listeners.pop(listener_id, None)
        return self

    def get_store(self) -> Any:
        return self._store

    def get_stats(self) -> dict[str, int]:
        """``{"loads": n, "saves": n}``: loads include applied remote messages."""
        return {"loads": self._loads, "saves": self._saves}

    # -- schedule -------------------------------------------------------------------------
    async def schedule(self, *actions: Action) -> Persister:
        """Run actions one after another, after everything scheduled before them.

        Loads and saves go through this queue so they never interleave. Each action is
        a function returning an awaitable (or a plain value); its errors are reported to
        ``on_ignored_error``, not raised.
        """
        if not actions:
            return self
        async with self._schedule_lock:
            for action in actions:
                if self._closed:
                    break
                loop = asyncio.get_running_loop()
                self._active_action = loop.create_future()
                try:
                    result = action()
                    if inspect.isawaitable(result):
                        await result
                except Exception as error:
                    self._report(error)
                finally:
                    self._active_action.set_result(None)
                    self._active_action = None
        return self

    # -- destroy --------------------------------------------------------------------------
    async def destroy(self) -> Persister:
        """Stop everything, cancel background work and release the transport."""
        if self._destroying is None:
            self._destroyed = True
            self._destroying = asyncio.ensure_future(self._destroy())
        await asyncio.shield(self._destroying)
        return self

    async def _destroy(self) -> None:
        active = self._active_action
        try:
            try:
                await self.stop_auto_persisting()
            finally:
                for task in list(self._tasks):
                    task.cancel()
                if self._tasks:
                    await asyncio.gather(*self._tasks, return_exceptions=True)
                if active is not None:
                    await asyncio.shield(active)
        finally:
            self._closed = True
            if self._on_destroy is not None:
                try:
                    result = self._on_destroy()
                    if inspect.isawaitable(result):
                        await result
                except Exception as error:
                    self._report(error)


def _is_changes(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 3 and data[2] == 1


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _chain(task: asyncio.Future[Any], done: asyncio.Future[None]) -> None:
    """Complete ``done`` when ``task`` does (errors are already reported by ``_spawn``)."""

    def finish(_: asyncio.Future[Any]) -> None:
        if not done.done():
            done.set_result(None)

    task.add_done_callback(finish)


def create_custom_persister(
    store: PersistableStore,
    get_persisted: GetPersisted,
    set_persisted: SetPersisted,
    add_persister_listener: AddPersisterListener,
    del_persister_listener: DelPersisterListener,
    on_ignored_error: IgnoredErrorHandler | None = None,
    *,
    coalesce: bool = True,
    on_destroy: Callable[[], Any] | None = None,
    hooks: PersisterHooks | None = None,
) -> Persister:
    """Build a :class:`Persister` from four transport callbacks (TinyBase's
    ``createCustomPersister``); see the module docstring for their contracts.

    ``coalesce=False`` hands every local transaction to ``set_persisted`` separately;
    ``on_destroy`` (sync or async) runs last in :meth:`Persister.destroy`; ``hooks``
    (:class:`PersisterHooks`) let the transport take part in local edits' way out.
    """
    return Persister(
        store,
        get_persisted,
        set_persisted,
        add_persister_listener,
        del_persister_listener,
        on_ignored_error,
        coalesce=coalesce,
        on_destroy=on_destroy,
        hooks=hooks,
    )
