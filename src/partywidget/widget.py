"""``PartyStoreWidget``: a TinyBase Store synced with a PartyKit room, shown as a grid.

The widget is traitlets plus a facade. It owns a Store, a
:class:`~partywidget.partykit.socket.PartySocket` and a PartyKit persister (auto-load +
auto-save), exposes the Store's tables as pandas DataFrames, and keeps its front-end
(``js/``) in step through the protocol decided in :mod:`partywidget.view`. Which server
it talks to is :mod:`partywidget.host`'s business; the Store methods it passes through
are declared in :mod:`partywidget._facade`.

Sync and async: every method that waits (``ready``, ``until``, ``flush``,
``server_content``) is a coroutine, awaited in a notebook; each has a blocking
``wait_*`` twin for scripts, which raises ``RuntimeError`` on the widget's own loop
thread (blocking there would freeze the loop that does the work).

Threads: see :mod:`partywidget._loop`. All Store access goes through the loop thread; in a
kernel that is the kernel's own thread, so traitlet changes and comm messages happen
where ipywidgets expects them.

Blocked loops: a cell that blocks the kernel (``time.sleep``, a long computation) stops
the socket's keepalive. The server then drops the connection (our server after uvicorn's
ping interval + timeout, 20 s + 20 s by default), or our own keepalive does when the loop
resumes; either way the socket reconnects and the persister reloads the room and replays
what it held, so the widget ends ``connected`` with the server's content (tested in a
real kernel). One more guard keeps edits made just before or after such a block: they
would otherwise be written into the dead connection before the loop reads that it died
(and be lost: no acks), so when a loop turn with edits follows a block longer than the
keepalive's ``ping_timeout`` (a per-loop heartbeat, ``_loop.StallWatch``), the widget
reconnects first and the persister sends them after its reload.
``socket_options={"ping_interval": ..., "ping_timeout": ...}`` tunes both.

Hosts other than JupyterLab/Notebook 7 (read in their docs and sources; neither is
installed here, so not run):

* VS Code (Jupyter extension): renders widgets with the ipywidgets 8 HTML manager in the
  notebook's output webview, talking to a regular ipykernel; anywidget loads ``_esm`` /
  ``_css`` from the synced state, so no lab extension is involved. Custom messages are
  ordinary comm messages there, the kernel loop is ipykernel's: same behaviour as Lab.
* marimo: displays an ``AnyWidget`` directly or through ``mo.ui.anywidget(w)``. Custom
  messages work both ways (Python ``Widget.send`` reaches ``msg:custom`` listeners, the
  front-end's ``model.send`` reaches ``on_msg`` handlers), so no traitlet fallback is
  needed for the data path. marimo runs cells inside an ``asyncio.run`` control loop,
  so :func:`~partywidget._loop.attachable_loop` attaches the widget to it and
  ``await w.ready()`` works. marimo re-runs dependent cells when a *synced trait*
  changes from the front-end; the grid never sets traits (only custom messages), so
  editing it does not trigger re-runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import pathlib
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import anywidget
import pandas as pd
import traitlets

from . import frames as _frames
from ._facade import StoreFacade, Tables
from ._loop import LoopRunner, StallWatch, stall_watch
from .changes import changes_is_empty, diff_content
from .codec import decode_content
from .host import DEFAULT_HOST, resolve_host
from .model import Changes, Content
from .view import ViewProtocol

if TYPE_CHECKING:
    from .partykit.persister import PartyKitPersister
    from .partykit.socket import PartySocket
    from .store import Store

T = TypeVar("T")

__all__ = ["DEFAULT_HOST", "PartyStoreWidget", "resolve_host"]

log = logging.getLogger(__name__)

#: ``close()``: seconds to let messages already handed to an open socket reach the network,
#: and to wait for the persister to wind down (it finishes in the background after that).
CLOSE_DRAIN_TIMEOUT = 2.0
CLOSE_DESTROY_TIMEOUT = 2.0
#: ``until()`` re-checks its predicate on every transaction and status change, and at
#: least this often (for predicates that look at things outside the widget).
UNTIL_POLL_INTERVAL = 0.1
#: Seconds between ``flush()``'s confirming GETs while the server still differs.
FLUSH_RETRY_INTERVAL = 0.2
#: A blocked loop is suspected of having lost its connection after the keepalive's
#: ``ping_timeout`` (see ``_check_stall``), and never below this: shorter blocks are
#: normal work between heartbeats.
MIN_STALL_LIMIT = 0.5
#: PartySocket options the widget sets itself (from its own arguments).
_RESERVED_SOCKET_OPTIONS = frozenset({"host", "room", "party", "query"})

_STATIC = pathlib.Path(__file__).parent / "static"
_FALLBACK_ESM = """
export default { render({ el }) {
  el.textContent = "partywidget: front-end not built (run `npm run build`).";
} };
"""


class PartyStoreWidget(StoreFacade, anywidget.AnyWidget):
    """A Store shared through a PartyKit room: DataFrames in Python, a grid in the page.

    ``PartyStoreWidget("my_room")`` connects to ``host`` (see
    :func:`~partywidget.host.resolve_host`), loads the room into :attr:`store` and keeps
    both in sync: local writes (Python or grid) are pushed, remote ones applied.
    ``read_only=True`` only listens: nothing is ever sent to the room, the grid is not
    editable and the Python writers raise ``PermissionError``.
    """

    _esm = _STATIC / "widget.js" if (_STATIC / "widget.js").exists() else _FALLBACK_ESM
    _css = _STATIC / "widget.css" if (_STATIC / "widget.css").exists() else ""

    status = traitlets.Unicode("connecting").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    room = traitlets.Unicode("").tag(sync=True)
    host = traitlets.Unicode("").tag(sync=True)
    party = traitlets.Unicode("main").tag(sync=True)
    notice = traitlets.Unicode("").tag(sync=True)
    read_only = traitlets.Bool(False).tag(sync=True)
    #: The Store's tables schema, for the grid: its column order (schema order, like the
    #: DataFrames) and the types it parses typed-in text to. Small, and rarely changes.
    tables_schema = traitlets.Dict().tag(sync=True)
    # Not synced on purpose: it changes on every transaction and the view has its own
    # delta stream; syncing it would double the bytes of every remote change.
    revision = traitlets.Int(0)

    def __init__(
        self,
        room: str,
        host: str | None = None,
        *,
        party: str = "main",
        query: Any = None,
        store: Store | None = None,
        tables_schema: Mapping[str, Any] | None = None,
        values_schema: Mapping[str, Any] | None = None,
        initial_content: Any = None,
        read_only: bool = False,
        config: Any = None,
        socket_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """See the class docstring. ``config`` goes to the PartyKit persister (TinyBase's
        ``store_protocol``/``store_path``/``message_prefix`` and ours, e.g. ``resync``);
        ``socket_options`` go to :class:`~partywidget.partykit.socket.PartySocket`, e.g.
        ``{"ping_interval": 5, "ping_timeout": 5}`` (keepalive, seconds) or
        ``{"min_reconnection_delay": 1}``."""
        socket_kwargs = dict(socket_options or {})
        reserved = _RESERVED_SOCKET_OPTIONS & set(socket_kwargs)
        if reserved:
            raise ValueError(
                f"socket_options {sorted(reserved)} are set by the widget's own arguments"
            )
        resolved, notice = resolve_host(host)
        super().__init__(
            room=room,
            host=resolved,
            party=party,
            notice=notice,
            read_only=read_only,
            **kwargs,
        )
        self._runner = LoopRunner()
        self._view = ViewProtocol()
        self._stall_reconnects = 0
        self._change_callbacks: list[Callable[[Changes], Any]] = []
        self._closed = False
        self._opened = False
        self._loaded = False
        self._state_changed: asyncio.Event | None = None
        self._watch: StallWatch | None = None
        self._stall_limit: float | None = None
        self._stall_check_queued = False
        self.on_msg(self._on_custom_msg)
        try:
            self._runner.call(
                self._setup_on_loop,
                store,
                tables_schema,
                values_schema,
                query,
                config,
                socket_kwargs,
            )
        except BaseException:
            # bad options (e.g. an unknown socket option): no half-made widget left behind
            self._closed = True
            super().close()
            raise
        self._start_task = self._runner.spawn(self._start(initial_content))

    # -- setup (on the loop thread) --------------------------------------------------------

    def _setup_on_loop(
        self,
        store: Store | None,
        tables_schema: Mapping[str, Any] | None,
        values_schema: Mapping[str, Any] | None,
        query: Any,
        config: Any,
        socket_kwargs: dict[str, Any],
    ) -> None:
        from .partykit.persister import create_partykit_persister
        from .partykit.socket import PartySocket
        from .store import create_store

        self._state_changed = asyncio.Event()
        self._store: Store = store if store is not None else create_store()
        if tables_schema is not None:
            self._store.set_tables_schema(dict(tables_schema))
        if values_schema is not None:
            self._store.set_values_schema(dict(values_schema))
        self._sync_schema()
        self._frames = _frames.FrameCache(self._store)
        self._transaction_listener = self._store.add_did_finish_transaction_listener(
            self._on_transaction
        )
        self._socket: PartySocket = PartySocket(
            self.host, self.room, party=self.party, query=query, **socket_kwargs
        )
        for kind in ("open", "close", "error"):
            self._socket.add_event_listener(kind, self._on_socket_event)
        self._watch_stalls()
        if config is None:
            # TinyBase defaults the load URL to https; a local/private host (where the
            # socket uses ws://) is almost always plain http, like our embedded server.
            config = "http" if self._socket.room_url.startswith("ws://") else "https"
        self._persister: PartyKitPersister = create_partykit_persister(
            self._store, self._socket, config, self._on_ignored_error
        )

    def _watch_stalls(self) -> None:
        """Arm the blocked-loop guard (see ``_check_stall``) unless keepalive is off (then
        the user accepts connections of unknown health)."""
        options = self._socket.party_socket_options
        ping_interval, ping_timeout = options["ping_interval"], options["ping_timeout"]
        if ping_interval is not None and ping_timeout is not None:
            # A server with the same keepalive can drop us after a block of just over its
            # ping timeout (its ping went out as the block began), so that is the limit.
            self._stall_limit = max(MIN_STALL_LIMIT, float(ping_timeout))
            self._watch = stall_watch(self._runner.loop)
            self._watch.acquire()

    async def _start(self, initial_content: Any) -> None:
        try:
            await self._persister.start_auto_load(initial_content)
            if not self.read_only:
                await self._persister.start_auto_save()
        except Exception as error:  # reported in the status, never an unhandled task
            log.exception("partywidget: starting the persister failed")
            self._set_status("error", f"{type(error).__name__}: {error}")
        finally:
            self._loaded = True
            self._poke()

    def _poke(self) -> None:
        """Wake waiters so they re-check the state (loop thread only)."""
        if self._state_changed is not None:
            self._state_changed.set()
            self._state_changed = asyncio.Event()

    def _set_status(self, status: str, error: str | None = None) -> None:
        if error is not None:
            self.error = error
        self.status = status

    def _on_socket_event(self, event: Any) -> None:
        kind = getattr(event, "type", "")
        if kind == "open":
            self._opened = True
            self._set_status("connected", "")
        elif kind == "error":
            self._opened = False
            self._set_status("error", getattr(event, "message", str(event)))
        elif kind == "close":
            self._opened = False
            if self.status != "error":
                reason = getattr(event, "reason", "")
                code = getattr(event, "code", 0)
                self._set_status("offline", f"closed ({code}{': ' + reason if reason else ''})")
        self._poke()

    def _on_ignored_error(self, error: BaseException) -> None:
        log.debug("partywidget persister: %r", error)
        self.error = f"{type(error).__name__}: {error}"

    # -- properties ---------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The Store. In background-loop mode, mutate it through the widget's methods (they
        run on the loop thread); direct Store calls from another thread are not safe."""
        return self._store

    @property
    def persister(self) -> PartyKitPersister:
        """The PartyKit persister keeping :attr:`store` in sync with the room."""
        return self._persister

    @property
    def store_url(self) -> str:
        """The room's HTTP store URL (``GET`` it for what the server holds)."""
        return self._persister.store_url

    @property
    def socket(self) -> PartySocket:
        """The :class:`~partywidget.partykit.socket.PartySocket` to the room."""
        return self._socket

    @property
    def tables(self) -> Tables:
        """The tables as DataFrames: ``w.tables["pets"]``, ``w.tables["pets"] = df``."""
        return Tables(self)

    @property
    def values(self) -> dict[str, Any]:
        """A copy of the Store's values."""
        values: dict[str, Any] = self._runner.call(self._store.get_values)
        return values

    @property
    def stats(self) -> dict[str, int]:
        """Message counters (tests, benchmarks, debugging): snapshots, their parts and
        deltas sent to the views, and reconnects after a blocked loop."""
        view = self._view
        return {
            "snapshots": view.snapshots,
            "snapshot_parts": view.snapshot_parts,
            "deltas": view.deltas,
            "stall_reconnects": self._stall_reconnects,
        }

    # -- waiting: coroutines, each with a blocking wait_* twin -----------------------------

    async def _on_loop(
        self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float | None
    ) -> T:
        """Await ``make()`` run on the widget's loop, from that loop or any other one."""
        if self._runner.in_loop_thread():
            return await asyncio.wait_for(make(), timeout)
        future = asyncio.run_coroutine_threadsafe(make(), self._runner.loop)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        finally:
            future.cancel()

    def _blocking(
        self, name: str, make: Callable[[], Coroutine[Any, Any, T]], timeout: float | None
    ) -> T:
        """Wait for ``make()`` from a thread that is not the loop's (scripts)."""
        if self._runner.in_loop_thread():
            raise RuntimeError(
                f"wait_{name}() would block the event loop it waits for; "
                f"use `await widget.{name}(...)` instead"
            )
        return self._runner.run(make(), timeout)

    async def _next_change(self, timeout: float | None) -> None:
        """Return on the next transaction or status change, or after ``timeout``."""
        if self._closed:
            raise RuntimeError("widget is closed")
        event = self._state_changed
        assert event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    async def _ready_on_loop(self) -> PartyStoreWidget:
        while not (self._loaded and self._opened):
            await self._next_change(None)
        return self

    async def ready(self, timeout: float | None = None) -> PartyStoreWidget:
        """Wait until the room is loaded and the socket is connected (``await w.ready()``)."""
        return await self._on_loop(self._ready_on_loop, timeout)

    def wait_ready(self, timeout: float | None = 30.0) -> PartyStoreWidget:
        """Blocking :meth:`ready` for scripts (``RuntimeError`` on the widget's loop)."""
        return self._blocking("ready", self._ready_on_loop, timeout)

    async def _until_on_loop(self, predicate: Callable[[], T]) -> T:
        while True:
            result = predicate()
            if result:
                return result
            await self._next_change(UNTIL_POLL_INTERVAL)

    async def until(self, predicate: Callable[[], T], timeout: float | None = 30.0) -> T:
        """Wait until ``predicate()`` is truthy and return its value (``TimeoutError`` after
        ``timeout`` seconds).

        The predicate runs on the loop thread, after every transaction and status change
        (and every 0.1 s), so it may read the widget freely (``w.get_cell``, ``w.status``,
        ``w.df``) but must be quick and must not block.
        """
        return await self._on_loop(functools.partial(self._until_on_loop, predicate), timeout)

    def wait_until(self, predicate: Callable[[], T], timeout: float | None = 30.0) -> T:
        """Blocking :meth:`until` for scripts (``RuntimeError`` on the widget's loop)."""
        return self._blocking("until", functools.partial(self._until_on_loop, predicate), timeout)

    def _handed_over(self) -> bool:
        """Every local edit so far is written to an open connection (loop thread only)."""
        persister, socket = self._persister, self._socket
        return (
            persister.is_settled()
            and socket.ready_state == socket.OPEN
            and socket.buffered_amount == 0
        )

    async def _get_server_content(self) -> Content:
        import httpx

        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(self.store_url, headers={"cache-control": "no-store"})
        response.raise_for_status()
        text = response.content.decode("utf-8")
        return decode_content(text) if text else ({}, {})

    async def _flush_on_loop(self, confirm: bool) -> PartyStoreWidget:
        while True:
            await self._until_on_loop(self._handed_over)
            if not confirm:
                return self
            try:
                server = await self._get_server_content()
            except Exception as error:  # retried until the caller's timeout
                log.debug("partywidget flush: GET failed: %r", error)
            else:
                if self._handed_over() and changes_is_empty(
                    diff_content(self._store.get_content(), server)
                ):
                    return self
            await self._next_change(FLUSH_RETRY_INTERVAL)

    async def flush(
        self, timeout: float | None = 30.0, *, confirm: bool = True
    ) -> PartyStoreWidget:
        """Wait until every local edit made so far has been handed to an open socket and,
        with ``confirm`` (the default), until a ``GET`` of the room equals the local Store.

        Why the ``GET``: a message written to a connection that dies before the server
        reads it is lost (the protocol has no acknowledgements); the confirmation proves
        the server holds what we hold. It costs one download of the room per try (pass
        ``confirm=False`` for very large rooms). While other clients keep writing the two
        may never be equal: then ``TimeoutError`` after ``timeout`` seconds.
        """
        return await self._on_loop(functools.partial(self._flush_on_loop, confirm), timeout)

    def wait_flush(self, timeout: float | None = 30.0, *, confirm: bool = True) -> PartyStoreWidget:
        """Blocking :meth:`flush` for scripts (``RuntimeError`` on the widget's loop)."""
        return self._blocking("flush", functools.partial(self._flush_on_loop, confirm), timeout)

    async def server_content(self, timeout: float | None = 30.0) -> Content:
        """What the *server* holds now (a ``GET`` of the room) as Content
        ``(tables, values)``."""
        return await self._on_loop(self._get_server_content, timeout)

    def wait_server_content(self, timeout: float | None = 30.0) -> Content:
        """Blocking :meth:`server_content` for scripts (``RuntimeError`` on the loop)."""
        return self._blocking("server_content", self._get_server_content, timeout)

    # -- Store facade ---------------------------------------------------------------------------

    def _store_call(
        self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, write: bool
    ) -> Any:
        """Run ``Store.<name>`` on the loop thread (the facade's one dispatch)."""
        if write:
            self._check_writable()
        return self._runner.call(functools.partial(getattr(self._store, name), *args, **kwargs))

    def _check_writable(self) -> None:
        if self.read_only:
            raise PermissionError("this PartyStoreWidget is read-only")

    def df(self, table_id: str) -> pd.DataFrame:
        """The table as a DataFrame (index ``row_id``); cached until the table changes."""
        frame: pd.DataFrame = self._runner.call(self._frames.frame, table_id)
        return frame

    def set_table(self, table_id: str, table: pd.DataFrame | Mapping[str, Any]) -> PartyStoreWidget:
        """Replace a table: a DataFrame is diffed into the minimal Changes (one transaction);
        a ``{row_id: {cell_id: cell}}`` mapping goes to ``Store.set_table`` as is."""
        self._check_writable()
        if isinstance(table, pd.DataFrame):

            def apply() -> None:
                changes = _frames.table_changes_from_frame(self._store, table_id, table)
                if changes[0]:
                    self._store.apply_changes(changes)

            self._runner.call(apply)
        else:
            self._runner.call(self._store.set_table, table_id, dict(table))
        return self

    def set_tables_schema(self, tables_schema: Mapping[str, Any]) -> PartyStoreWidget:
        """``Store.set_tables_schema`` (local: schemas are not synced) and the grid's columns."""

        def apply() -> None:
            self._store.set_tables_schema(dict(tables_schema))
            self._sync_schema()

        self._runner.call(apply)
        return self

    def set_values_schema(self, values_schema: Mapping[str, Any]) -> PartyStoreWidget:
        """``Store.set_values_schema`` (local: schemas are not synced)."""
        self._runner.call(self._store.set_values_schema, dict(values_schema))
        return self

    def _sync_schema(self) -> None:
        schema = json.loads(self._store.get_tables_schema_json() or "{}")
        if schema != self.tables_schema:
            self.tables_schema = schema

    def on_change(self, callback: Callable[[Changes], Any]) -> Callable[[], None]:
        """Call ``callback(changes)`` after every transaction (local or remote), on the loop
        thread. Returns a function that unsubscribes."""
        self._change_callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._change_callbacks.remove(callback)

        return unsubscribe

    # -- transactions -> revision, callbacks, views -------------------------------------------

    def _on_transaction(self, store: Any, *_args: Any) -> None:
        changes = store.get_transaction_changes()
        if not changes[0] and not changes[1]:
            return
        if self._watch is not None and not self._stall_check_queued:
            # Queued before the persister's hand-over of these changes (its listener was
            # added after ours), so the check runs first: see _check_stall.
            self._stall_check_queued = True
            self._runner.loop.call_soon(self._check_stall)
        self._runner.call_soon(self._after_transaction, changes)

    def _check_stall(self) -> None:
        """Reconnect before sending if the loop was blocked longer than the keepalive.

        Why: after such a block (a long cell) the server has probably dropped the
        connection, but the loop has not read that yet, and the edits of this turn would
        be written into the dead connection and lost (the protocol has no acks). A
        fresh connection instead makes the persister hold them, reload the room and
        send them after (its resync), so they survive. Cheap when nothing stalled: one
        comparison per loop turn with edits.
        """
        self._stall_check_queued = False
        watch, limit, socket = self._watch, self._stall_limit, self._socket
        if watch is None or limit is None or self._closed or socket.ready_state != socket.OPEN:
            return
        stalled = watch.stalled_for()
        if stalled > limit:
            log.info(
                "partywidget: the event loop was blocked for %.1f s (keepalive %.1f s): "
                "reconnecting to %s before sending",
                stalled,
                limit,
                self.room,
            )
            self._stall_reconnects += 1
            socket.reconnect()

    def _after_transaction(self, changes: Changes) -> None:
        if self._closed:
            return
        self.revision += 1
        self._poke()
        self._send_all(self._view.delta(changes))
        for callback in list(self._change_callbacks):
            try:
                callback(changes)
            except Exception:
                log.exception("partywidget on_change callback failed")

    def _send_all(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self.send(message)

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict) or self._closed:
            return
        self._runner.call(self._handle_view_msg, content)

    def _handle_view_msg(self, content: dict[str, Any]) -> None:
        """Carry out what the view protocol decided about a message from a view."""
        received = self._view.receive(content, read_only=self.read_only)
        if received is None:
            return
        if received.problem:
            log.warning("partywidget: the view's changes were not taken: %s", received.problem)
        if received.changes is not None:
            try:
                self._store.apply_changes(received.changes)
            except (TypeError, ValueError) as error:
                log.warning("partywidget: the view's changes were refused: %s", error)
            self._send_all(self._view.corrections(received.changes, self._store))
        if received.resync:
            self._sync_schema()  # the Store's schema may have been set directly
            self._send_all(self._view.snapshot(received.view, self._store.get_content()))

    # -- closing -------------------------------------------------------------------------------

    async def _aclose(self) -> None:
        """Wind down promptly whatever the connection's state.

        A socket that is not open is closed *first*: the persister's initial load may be
        waiting for it to open (up to its ``open_timeout``), and closing fails that wait at
        once, so a widget that never connected closes without delay. An open socket is
        given a moment to write what was already handed to it, so edits made just before
        ``close()`` are not dropped. The persister gets a bounded wait; it finishes on the
        loop in the background if it needs longer (e.g. an HTTP request to a dead host).
        """
        socket = self._socket
        if socket.ready_state != socket.OPEN:
            socket.close()
        destroying = asyncio.ensure_future(self._persister.destroy())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(destroying), CLOSE_DESTROY_TIMEOUT)
        if socket.ready_state == socket.OPEN and socket.buffered_amount:
            deadline = asyncio.get_running_loop().time() + CLOSE_DRAIN_TIMEOUT
            while (
                socket.ready_state == socket.OPEN
                and socket.buffered_amount
                and asyncio.get_running_loop().time() < deadline
            ):
                await asyncio.sleep(0.01)
        with contextlib.suppress(Exception):
            await socket.aclose()

    def _close_on_loop(self) -> None:
        if self._watch is not None:
            self._watch.release()
            self._watch = None
        self._store.del_listener(self._transaction_listener)
        self._frames.close()
        self._view.forget()
        self._poke()

    def close(self) -> None:
        """Stop syncing (persister destroyed, socket closed) and close the widget's comm.

        Prompt in every state: a socket that never connected is dropped at once; edits
        already handed to an open socket get up to ``CLOSE_DRAIN_TIMEOUT`` seconds to be
        written (``await w.flush()`` first to be sure the server has them).
        """
        if getattr(self, "_closed", True):  # closed, or __init__ failed before setup
            super().close()
            return
        self._closed = True
        if self._runner.in_loop_thread():
            self._close_on_loop()
            task = self._runner.spawn(self._aclose())
            if isinstance(task, asyncio.Task):
                task.add_done_callback(lambda _t: self._runner.close())
        else:
            self._runner.call(self._close_on_loop)
            with contextlib.suppress(Exception):
                self._runner.run(self._aclose(), timeout=10)
            self._runner.close()
        self.status = "offline"
        super().close()

    def __repr__(self) -> str:
        return f"PartyStoreWidget(room={self.room!r}, host={self.host!r}, status={self.status!r})"
