"""``PartyStoreWidget``: a TinyBase Store synced with a PartyKit room, shown as a grid.

The widget owns a Store, a :class:`~partywidget.partykit.socket.PartySocket` and a PartyKit
persister (auto-load + auto-save), and exposes the Store's tables as pandas DataFrames.
Its front-end (``js/``) mirrors the Store in a TinyBase JS Store fed by custom messages:

* view -> kernel ``{"kind": "snapshot?", "view": id}`` when a view renders (or detects a
  gap); the kernel answers with the whole content in chunks
  ``{"kind": "snapshot", "to": id, "sid", "seq", "part", "parts", "content"}`` (content
  encoded as on the PartyKit wire);
* kernel -> views ``{"kind": "changes", "seq", "changes"}``: one per Store transaction
  (local or remote), with the transaction's Changes encoded as on the wire, so a one-cell
  change costs ~100 bytes whatever the table size;
* view -> kernel ``{"kind": "changes", "view", "seq", "changes"}``: the view's edits.

Each direction numbers its messages; a receiver seeing anything but last+1 asks for (or
sends) a fresh snapshot, which heals lost, duplicated or early messages. Edits the Store
refuses (schema, read-only) are answered with the Store's actual cells so the view never
drifts from the kernel.

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
``socket_options={"ping_interval": ..., "ping_timeout": ...}`` tunes both. Scripts wait with :meth:`PartyStoreWidget.until` / ``wait_until`` and make
sure the server holds their edits with :meth:`PartyStoreWidget.flush`.

Hosts other than JupyterLab/Notebook 7 (read in their docs and sources, Nov 2026; neither
is installed here, so not run):

* VS Code (Jupyter extension): renders widgets with the ipywidgets 8 HTML manager in the
  notebook's output webview, talking to a regular ipykernel; anywidget loads ``_esm`` /
  ``_css`` from the synced state, so no lab extension is involved. Custom messages are
  ordinary comm messages there, the kernel loop is ipykernel's: same behaviour as Lab.
* marimo: displays an ``AnyWidget`` directly (its anywidget formatter) or through
  ``mo.ui.anywidget(w)``. Custom messages work both ways: Python ``Widget.send`` reaches
  ``msg:custom`` listeners (marimo PR #1776, July 2024) and the front-end's
  ``model.send`` reaches ``on_msg`` handlers (``MarimoComm.handle_msg``; since 0.19.8 as
  ``model-lifecycle`` "custom" messages). So no traitlet fallback is needed for the
  data path. marimo's kernel runs cells inside an ``asyncio.run`` control loop that keeps
  running between cells, so :func:`~partywidget._loop.attachable_loop` attaches the
  widget to it (a current task exists) and ``await w.ready()`` works; it is not an
  IPython kernel, so ``in_kernel()`` is False there. marimo re-runs dependent cells
  when a *synced trait* changes from the front-end; the grid never sets traits (only
  custom messages), so editing it does not trigger re-runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pathlib
import socket as _socket
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

import anywidget
import pandas as pd
import traitlets

from . import frames as _frames
from ._loop import LoopRunner, StallWatch, stall_watch
from .changes import changes_is_empty, diff_content
from .codec import CodecError, decode_changes, decode_content, encode_changes, encode_content
from .jsvalue import cells_equal as _same
from .model import DELETED, Changes, Content

if TYPE_CHECKING:
    from .partykit.persister import PartyKitPersister
    from .server import ServerThread
    from .store import Store

T = TypeVar("T")

__all__ = ["DEFAULT_HOST", "PartyStoreWidget", "resolve_host"]

log = logging.getLogger(__name__)
#: The package logger: the embedded-server notice goes here at INFO, so it is not written
#: to stderr (Python's last-resort handler only prints WARNING and above) unless the
#: user configures logging; the widget shows the same notice as a banner.
package_log = logging.getLogger("partywidget")

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 1999
DEFAULT_HOST = f"{DEFAULT_ADDRESS}:{DEFAULT_PORT}"
#: Cells per snapshot message: ~20k cells is a few hundred kB, small enough for the comm.
SNAPSHOT_CHUNK_CELLS = 20_000
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

_embedded: ServerThread | None = None
_embedded_lock = threading.Lock()
_embedded_logged = False


# --------------------------------------------------------------------------------------
# host resolution
# --------------------------------------------------------------------------------------


def _answers(address: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections there (a room server, we assume)."""
    try:
        with _socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _start_embedded() -> ServerThread:
    """Start (once per process) our room server on a daemon thread with its own loop."""
    global _embedded, _embedded_logged
    from .server import run_in_thread

    with _embedded_lock:
        if _embedded is None:
            try:
                _embedded = run_in_thread(host=DEFAULT_ADDRESS, port=DEFAULT_PORT)
            except (OSError, RuntimeError, SystemExit):
                _embedded = run_in_thread(host=DEFAULT_ADDRESS, port=0)
        if not _embedded_logged:
            _embedded_logged = True
            package_log.info(
                "partywidget: no room server answered at %s; started an embedded one at %s "
                "(rooms live in this process's memory)",
                f"{DEFAULT_ADDRESS}:{DEFAULT_PORT}",
                _embedded.host,
            )
        return _embedded


def resolve_host(host: str | None) -> tuple[str, str]:
    """The host to use and a notice for the widget ("" unless we started a server).

    ``host`` if given; else ``$PARTYWIDGET_HOST``; else ``127.0.0.1:1999`` if something
    answers there; else our embedded server (on 1999, or a free port if 1999 is taken).
    """
    if host:
        return host, ""
    env = os.environ.get("PARTYWIDGET_HOST", "").strip()
    if env:
        return env, ""
    if _embedded is not None:
        return _embedded.host, _embedded_notice(_embedded)
    if _answers(DEFAULT_ADDRESS, DEFAULT_PORT):
        return f"{DEFAULT_ADDRESS}:{DEFAULT_PORT}", ""
    server = _start_embedded()
    return server.host, _embedded_notice(server)


def _embedded_notice(server: ServerThread) -> str:
    return (
        f"No room server at {DEFAULT_ADDRESS}:{DEFAULT_PORT}: using an embedded one at "
        f"{server.host} (rooms live in this kernel's memory)."
    )


# --------------------------------------------------------------------------------------
# the widget
# --------------------------------------------------------------------------------------


class _Tables(MutableMapping[str, pd.DataFrame]):
    """``w.tables``: the Store's tables as DataFrames; assigning a frame diffs it in."""

    def __init__(self, widget: PartyStoreWidget) -> None:
        self._widget = widget

    def __getitem__(self, table_id: str) -> pd.DataFrame:
        if table_id not in self._ids():
            raise KeyError(table_id)
        return self._widget.df(table_id)

    def __setitem__(self, table_id: str, frame: pd.DataFrame) -> None:
        self._widget.set_table(table_id, frame)

    def __delitem__(self, table_id: str) -> None:
        if table_id not in self._ids():
            raise KeyError(table_id)
        self._widget.del_table(table_id)

    def _ids(self) -> list[str]:
        w = self._widget
        ids: list[str] = w._runner.call(w._store.get_table_ids)
        return ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids())

    def __len__(self) -> int:
        return len(self._ids())

    def __repr__(self) -> str:
        return f"<tables {self._ids()!r}>"


class PartyStoreWidget(anywidget.AnyWidget):
    """A Store shared through a PartyKit room: DataFrames in Python, a grid in the page.

    ``PartyStoreWidget("my_room")`` connects to ``host`` (see :func:`resolve_host`), loads
    the room into :attr:`store` and keeps both in sync: local writes (Python or grid) are
    pushed, remote ones applied. ``read_only=True`` only listens: nothing is ever sent to
    the room, the grid is not editable and the Python writers raise ``PermissionError``.
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
        self._seq = 0  # kernel -> views stream
        self._view_seq: dict[str, int] = {}  # views -> kernel streams
        self._views: set[str] = set()
        #: Message counters (tests, benchmarks, debugging): snapshots and deltas sent.
        self.stats: dict[str, int] = {
            "snapshots": 0,
            "snapshot_parts": 0,
            "deltas": 0,
            "stall_reconnects": 0,
        }
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
        self._socket = PartySocket(
            self.host, self.room, party=self.party, query=query, **socket_kwargs
        )
        for kind in ("open", "close", "error"):
            self._socket.add_event_listener(kind, self._on_socket_event)
        options = self._socket.party_socket_options
        ping_interval, ping_timeout = options["ping_interval"], options["ping_timeout"]
        if ping_interval is not None and ping_timeout is not None:
            # (keepalive off: the user accepts connections of unknown health.) A server
            # with the same keepalive can drop us after a block of just over its ping
            # timeout (its ping went out as the block began), so that is the limit.
            self._stall_limit = max(MIN_STALL_LIMIT, float(ping_timeout))
            self._watch = stall_watch(self._runner.loop)
            self._watch.acquire()
        if config is None:
            # TinyBase defaults the load URL to https; a local/private host (where the
            # socket uses ws://) is almost always plain http, like our embedded server.
            config = "http" if self._socket.room_url.startswith("ws://") else "https"
        self._persister: PartyKitPersister = create_partykit_persister(
            self._store, self._socket, config, self._on_ignored_error
        )

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
        """Wake ``ready()`` waiters so they re-check the state (loop thread only)."""
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
    def socket(self) -> Any:
        """The :class:`~partywidget.partykit.socket.PartySocket` to the room."""
        return self._socket

    @property
    def tables(self) -> _Tables:
        """The tables as DataFrames: ``w.tables["pets"]``, ``w.tables["pets"] = df``."""
        return _Tables(self)

    @property
    def values(self) -> dict[str, Any]:
        """A copy of the Store's values."""
        values: dict[str, Any] = self._runner.call(self._store.get_values)
        return values

    # -- readiness ------------------------------------------------------------------------------

    async def _wait_ready_on_loop(self) -> PartyStoreWidget:
        while not (self._loaded and self._opened):
            if self._closed:
                raise RuntimeError("widget is closed")
            event = self._state_changed
            assert event is not None
            await event.wait()
        return self

    async def ready(self, timeout: float | None = None) -> PartyStoreWidget:
        """Wait until the room is loaded and the socket is connected (``await w.ready()``)."""
        if self._runner.in_loop_thread():
            return await asyncio.wait_for(self._wait_ready_on_loop(), timeout)
        future = asyncio.run_coroutine_threadsafe(self._wait_ready_on_loop(), self._runner.loop)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        finally:
            future.cancel()

    def wait_ready(self, timeout: float | None = 30.0) -> PartyStoreWidget:
        """Blocking :meth:`ready` for code that is not on the widget's loop (scripts).

        On the loop's own thread (a notebook cell) blocking would freeze the very loop that
        connects, so that raises ``RuntimeError``: use ``await w.ready()`` there.
        """
        if self._runner.in_loop_thread():
            raise RuntimeError(
                "wait_ready() would block the event loop it waits for; "
                "use `await widget.ready()` instead"
            )
        return self._runner.run(self._wait_ready_on_loop(), timeout)

    # -- waiting: until, flush ----------------------------------------------------------------

    def _awaitable_or_wait(
        self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float | None
    ) -> Any:
        """``make()`` as an awaitable on the widget's loop thread, else its result (blocking).

        Why both: in a kernel the cell runs *on* the loop that does the work, so blocking
        would freeze it (the caller must ``await``); a script's thread is not the loop's,
        so it can simply wait. Forgetting ``await`` in a kernel shows Python's "coroutine
        was never awaited" warning rather than a silent no-op.
        """
        if self._runner.in_loop_thread():
            return asyncio.wait_for(make(), timeout)
        return self._runner.run(make(), timeout)

    async def _until_on_loop(self, predicate: Callable[[], T]) -> T:
        while True:
            result = predicate()
            if result:
                return result
            if self._closed:
                raise RuntimeError("widget is closed")
            event = self._state_changed
            assert event is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), UNTIL_POLL_INTERVAL)

    def until(self, predicate: Callable[[], T], timeout: float | None = 30.0) -> Any:
        """Wait until ``predicate()`` is truthy and return its value (``TimeoutError`` after
        ``timeout`` seconds).

        In a kernel (or any code on the widget's loop): ``await w.until(...)``; in a script:
        ``w.until(...)`` blocks. The predicate runs on the loop thread, after every
        transaction and status change (and every 0.1 s), so it may read the widget freely
        (``w.get_cell``, ``w.status``, ``w.df``) but must be quick and must not block.
        """
        return self._awaitable_or_wait(lambda: self._until_on_loop(predicate), timeout)

    def wait_until(self, predicate: Callable[[], T], timeout: float | None = 30.0) -> T:
        """Blocking :meth:`until` for code that is not on the widget's loop (scripts);
        raises ``RuntimeError`` on the loop's own thread (use ``await w.until(...)``)."""
        if self._runner.in_loop_thread():
            raise RuntimeError(
                "wait_until() would block the event loop it waits for; "
                "use `await widget.until(...)` instead"
            )
        return self._runner.run(self._until_on_loop(predicate), timeout)

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
            if self._closed:
                raise RuntimeError("widget is closed")
            event = self._state_changed
            assert event is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), FLUSH_RETRY_INTERVAL)

    def flush(self, timeout: float | None = 30.0, *, confirm: bool = True) -> Any:
        """Wait until every local edit made so far has been handed to an open socket and,
        with ``confirm`` (the default), until a ``GET`` of the room equals the local Store.

        Why the ``GET``: a message written to a connection that dies before the server
        reads it is lost (the protocol has no acknowledgements); the confirmation proves
        the server holds what we hold. It costs one download of the room per try (pass
        ``confirm=False`` for very large rooms). While other clients keep writing the two
        may never be equal: then ``TimeoutError`` after ``timeout`` seconds.

        In a kernel: ``await w.flush()``; in a script ``w.flush()`` blocks. Returns the
        widget.
        """
        return self._awaitable_or_wait(lambda: self._flush_on_loop(confirm), timeout)

    def server_content(self, timeout: float | None = 30.0) -> Any:
        """What the *server* holds now (a ``GET`` of the room) as Content
        ``(tables, values)``; awaitable in a kernel, blocking in a script like :meth:`flush`."""
        return self._awaitable_or_wait(self._get_server_content, timeout)

    def get_content(self) -> Content:
        """The local Store's content ``(tables, values)`` (copies)."""
        content: Content = self._runner.call(self._store.get_content)
        return content

    # -- DataFrames -------------------------------------------------------------------------------

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

    def on_change(self, callback: Callable[[Changes], Any]) -> Callable[[], None]:
        """Call ``callback(changes)`` after every transaction (local or remote), on the loop
        thread. Returns a function that unsubscribes."""
        self._change_callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._change_callbacks.remove(callback)

        return unsubscribe

    # -- Store pass-through (run on the loop thread) -----------------------------------------------

    def _check_writable(self) -> None:
        if self.read_only:
            raise PermissionError("this PartyStoreWidget is read-only")

    def _write(self, name: str, *args: Any) -> PartyStoreWidget:
        self._check_writable()
        self._runner.call(getattr(self._store, name), *args)
        return self

    def set_tables(self, tables: Mapping[str, Any]) -> PartyStoreWidget:
        return self._write("set_tables", tables)

    def set_row(self, table_id: str, row_id: str, row: Mapping[str, Any]) -> PartyStoreWidget:
        return self._write("set_row", table_id, row_id, row)

    def set_partial_row(
        self, table_id: str, row_id: str, row: Mapping[str, Any]
    ) -> PartyStoreWidget:
        return self._write("set_partial_row", table_id, row_id, row)

    def add_row(self, table_id: str, row: Mapping[str, Any]) -> str | None:
        """Add a row with a new id (TinyBase's ``addRow``); returns the id."""
        self._check_writable()
        row_id: str | None = self._runner.call(self._store.add_row, table_id, row)
        return row_id

    def set_cell(self, table_id: str, row_id: str, cell_id: str, cell: Any) -> PartyStoreWidget:
        return self._write("set_cell", table_id, row_id, cell_id, cell)

    def set_values(self, values: Mapping[str, Any]) -> PartyStoreWidget:
        return self._write("set_values", values)

    def set_partial_values(self, values: Mapping[str, Any]) -> PartyStoreWidget:
        return self._write("set_partial_values", values)

    def set_value(self, value_id: str, value: Any) -> PartyStoreWidget:
        return self._write("set_value", value_id, value)

    def set_content(self, content: Any) -> PartyStoreWidget:
        return self._write("set_content", content)

    def apply_changes(self, changes: Any) -> PartyStoreWidget:
        return self._write("apply_changes", changes)

    def del_tables(self) -> PartyStoreWidget:
        return self._write("del_tables")

    def del_table(self, table_id: str) -> PartyStoreWidget:
        return self._write("del_table", table_id)

    def del_row(self, table_id: str, row_id: str) -> PartyStoreWidget:
        return self._write("del_row", table_id, row_id)

    def del_cell(self, table_id: str, row_id: str, cell_id: str) -> PartyStoreWidget:
        return self._write("del_cell", table_id, row_id, cell_id)

    def del_values(self) -> PartyStoreWidget:
        return self._write("del_values")

    def del_value(self, value_id: str) -> PartyStoreWidget:
        return self._write("del_value", value_id)

    def transaction(self, actions: Callable[[], Any]) -> Any:
        """Run ``actions()`` as one Store transaction on the loop thread (one message)."""
        self._check_writable()
        return self._runner.call(self._store.transaction, actions)

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

    def get_table(self, table_id: str) -> dict[str, Any]:
        table: dict[str, Any] = self._runner.call(self._store.get_table, table_id)
        return table

    def get_cell(self, table_id: str, row_id: str, cell_id: str) -> Any:
        return self._runner.call(self._store.get_cell, table_id, row_id, cell_id)

    def get_value(self, value_id: str) -> Any:
        return self._runner.call(self._store.get_value, value_id)

    # -- transactions -> revision, callbacks, views ---------------------------------------------------

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
            self.stats["stall_reconnects"] += 1
            socket.reconnect()

    def _after_transaction(self, changes: Changes) -> None:
        if self._closed:
            return
        self.revision += 1
        self._poke()
        if self._views:
            self._send_delta(changes)
        for callback in list(self._change_callbacks):
            try:
                callback(changes)
            except Exception:
                log.exception("partywidget on_change callback failed")

    def _send_delta(self, changes: Changes) -> None:
        self._seq += 1
        self.stats["deltas"] += 1
        self.send({"kind": "changes", "seq": self._seq, "changes": encode_changes(changes)})

    # -- front-end messages ----------------------------------------------------------------------

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict) or self._closed:
            return
        self._runner.call(self._handle_view_msg, content)

    def _handle_view_msg(self, content: dict[str, Any]) -> None:
        kind = content.get("kind")
        view = str(content.get("view", ""))
        if kind == "snapshot?":
            self._sync_schema()  # the Store's schema may have been set directly
            self._views.add(view)
            self._view_seq[view] = 0
            self._send_snapshot(view)
        elif kind == "changes":
            self._views.add(view)
            seq = content.get("seq")
            expected = self._view_seq.get(view, 0) + 1
            self._view_seq[view] = seq if isinstance(seq, int) else expected
            try:
                changes = decode_changes(str(content.get("changes", "")))
            except CodecError as error:
                log.warning("partywidget: bad changes from the view: %s", error)
                self._send_snapshot(view)
                return
            if self.read_only:
                self._send_snapshot(view)
                return
            try:
                self._store.apply_changes(changes)
            except (TypeError, ValueError) as error:
                log.warning("partywidget: the view's changes were refused: %s", error)
            self._send_corrections(changes)
            if seq != expected:
                self._send_snapshot(view)  # a message from the view was lost: resync it

    def _send_corrections(self, requested: Changes) -> None:
        """Tell the views the Store's actual cells where it refused what a view asked."""
        store = self._store
        tables: dict[str, Any] = {}
        for table_id, table in requested[0].items():
            if table is DELETED:
                if store.has_table(table_id):
                    tables[table_id] = store.get_table(table_id)
                continue
            for row_id, row in table.items():
                if row is DELETED:
                    if store.has_row(table_id, row_id):
                        tables.setdefault(table_id, {})[row_id] = store.get_row(table_id, row_id)
                    continue
                for cell_id, cell in row.items():
                    actual = (
                        store.get_cell(table_id, row_id, cell_id)
                        if store.has_cell(table_id, row_id, cell_id)
                        else DELETED
                    )
                    same = actual is cell if DELETED in (actual, cell) else _same(actual, cell)
                    if not same:
                        tables.setdefault(table_id, {}).setdefault(row_id, {})[cell_id] = actual
        values: dict[str, Any] = {}
        for value_id, value in requested[1].items():
            actual = store.get_value(value_id) if store.has_value(value_id) else DELETED
            same = actual is value if DELETED in (actual, value) else _same(actual, value)
            if not same:
                values[value_id] = actual
        if tables or values:
            self._send_delta((tables, values, 1))

    def _send_snapshot(self, view: str | None) -> None:
        """Send the whole content to ``view`` in chunks of ~SNAPSHOT_CHUNK_CELLS cells."""
        tables, values = self._store.get_content()
        parts: list[dict[str, Any]] = []
        part: dict[str, Any] = {}
        cells = 0
        for table_id, table in tables.items():
            for row_id, row in table.items():
                part.setdefault(table_id, {})[row_id] = row
                cells += len(row)
                if cells >= SNAPSHOT_CHUNK_CELLS:
                    parts.append(part)
                    part, cells = {}, 0
        if part or not parts:
            parts.append(part)
        sid = uuid.uuid4().hex[:8]
        self.stats["snapshots"] += 1
        self.stats["snapshot_parts"] += len(parts)
        for index, chunk in enumerate(parts):
            content = encode_content((chunk, values if index == 0 else {}))
            self.send(
                {
                    "kind": "snapshot",
                    "to": view,
                    "sid": sid,
                    "seq": self._seq,
                    "part": index,
                    "parts": len(parts),
                    "content": content,
                }
            )

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
        self._poke()

    def close(self) -> None:
        """Stop syncing (persister destroyed, socket closed) and close the widget's comm.

        Prompt in every state: a socket that never connected is dropped at once; edits
        already handed to an open socket get up to ``CLOSE_DRAIN_TIMEOUT`` seconds to be
        written (use :meth:`flush` first to be sure the server has them).
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
