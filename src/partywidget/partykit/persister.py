"""``create_partykit_persister``: TinyBase's PartyKit client persister, made lossless.

On the wire this is exactly TinyBase 10's ``createPartyKitPersister``: ``GET``/``PUT``
of ``{store_protocol}://{host}/parties/{party}/{room}{store_path}`` for whole content,
and ``{message_prefix}s{changes JSON}`` messages over the room's PartySocket for every
local change (see PROTOCOL.md). The reference client loses data in ways this one does
not (PROTOCOL.md, "Known weaknesses"):

Resync after reconnect
    While the socket is not open (or a resync is running) local Changes are kept here,
    not in the socket's queue. When a connection opens after the store was loaded over
    HTTP (i.e. every reconnect, and a first open that came after the initial ``GET``),
    incoming messages are held, the room is fetched again, and the Store becomes, in
    one transaction: the fetched content, then the held messages in arrival order
    (per-connection broadcast order makes this replay converge), then the offline
    edits, which are then sent. Offline edits are applied *after* the reload because
    the reload may have been answered before the server applied them (the server does
    not echo a sender's changes back), so they must win locally as they will on the
    server.
Verification once quiet
    After a resync, and whenever an incoming change touches a table or value this client
    sent shortly before (two clients' concurrent edits can cross on the wire and leave
    each with the other's value), the persister waits until the room has been quiet for
    ``quiet_period`` seconds, fetches the room once more and, if it differs and nothing
    local is pending, adopts the server's content. So once quiet, every client equals
    the server.
Edits lost in flight
    The protocol has no acknowledgements: an edit written into a connection that has
    silently died (server killed, network cut, loop blocked past the keepalive) is
    neither on the server nor held here, and the resync would then drop it locally
    too. So every Changes written to the socket is also kept (coalesced) until the
    server is known to have it. On the resync after a reconnect each kept cell/value
    is compared with the reloaded room: equal -> confirmed; still at a value the server
    held before our edit or got from one of our earlier messages (its *history*,
    recorded from the Store's transaction log) -> lost: re-applied over the reload and
    sent again, like an offline edit; anything else -> someone else wrote it later (a
    broadcast we missed): theirs stays. A broadcast received after our send drops what
    it touches from the log (the server ordered it after ours), and a row/table
    deletion is re-sent only if everything the server has there could be ours. A quiet
    verification confirms and empties the log (it is requested once ``confirm_after``
    entries are kept); if it shows sent edits missing while the socket looks open, the
    connection is presumed dead and reopened (once; then the server is presumed to
    refuse them and its content is adopted). ``resync={"confirm": False}`` turns this
    off.
Initial save race
    Edits made while the initial ``PUT`` is in flight are sent after it (generic core).
Size limit
    A Changes message longer than ``max_message_bytes`` (UTF-8; default just under
    PartyKit's 1 MiB frame limit, beyond which the socket is closed with 1009) is split
    into several valid ``s`` messages. A single cell that cannot fit alone is reported
    through ``on_ignored_error`` (:class:`~partywidget.changes.ChangesTooLargeError`)
    and not sent.
Coalescing
    Local transactions of one event-loop turn become one message (generic core).

Applying loaded or remote data never echoes back to the room. Every swallowed error
(HTTP status errors, timeouts, refused connections, bad or foreign messages,
``CodecError``) goes to ``on_ignored_error`` and the module logger. One
``httpx.AsyncClient`` (with timeouts) per persister, closed by :meth:`destroy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

import httpx

from partywidget.changes import (
    ChangesTooLargeError,
    cells_equal,
    changes_is_empty,
    copy_changes,
    diff_content,
    merge_changes_into,
    split_changes,
)
from partywidget.codec import (
    CHANGES_TYPE,
    CodecError,
    decode_content,
    decode_message,
    decode_payload,
    encode_changes,
    encode_content,
    encode_message,
)
from partywidget.model import DELETED, Changes, Content
from partywidget.partykit.socket import OPEN, PartySocket
from partywidget.persister import (
    GetContent,
    IgnoredErrorHandler,
    OldValues,
    PersistableStore,
    Persister,
    PersisterListener,
    Status,
)

__all__ = [
    "DEFAULT_HTTP_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ForeignMessageError",
    "PartyKitPersister",
    "ResyncOptions",
    "create_partykit_persister",
]

logger = logging.getLogger(__name__)

#: PartyKit (Cloudflare) closes a socket on a frame over 1 MiB; keep a margin below it.
DEFAULT_MAX_MESSAGE_BYTES: Final = 1024 * 1024 - 4096
DEFAULT_HTTP_TIMEOUT: Final = 10.0
STORE_PATH: Final = "/store"
_CAMEL_CASE_KEYS: Final = {
    "storeProtocol": "store_protocol",
    "storePath": "store_path",
    "messagePrefix": "message_prefix",
}


class ForeignMessageError(ValueError):
    """A room message with our prefix but a type other than ``s`` (ignored, reported)."""


@dataclass(frozen=True)
class ResyncOptions:
    """How the persister recovers from reconnects and crossed edits (config ``resync``).

    Pass ``resync=False`` for the reference behaviour (no reload after reconnect), or a
    mapping of these fields.
    """

    #: Reload and reconcile whenever the socket (re)opens after a load.
    enabled: bool = True
    #: Seconds without traffic before a verifying ``GET``.
    quiet_period: float = 0.5
    #: Verify against the server once quiet after each resync.
    verify: bool = True
    #: Also verify after a remote change touched what we sent within ``conflict_window``.
    verify_on_conflict: bool = True
    conflict_window: float = 5.0
    #: Give up verifying after this many ``GET``s in a row (retried on the next trigger).
    max_verify_rounds: int = 5
    #: At the initial load, wait this long for a connecting socket to open, so that the
    #: ``GET`` comes after joining the room and no resync is needed.
    open_timeout: float = 5.0
    #: Keep sent Changes until a ``GET`` shows the server has them, and re-send the ones
    #: a dead connection swallowed (see "Edits lost in flight").
    confirm: bool = True
    #: Once this many cells/values are kept unconfirmed, verify (once quiet) to drop them.
    confirm_after: int = 10_000
    #: Transactions over this many rows do not record the values they replaced (it costs
    #: about as much as the write); their lost edits are re-sent without that check.
    confirm_max_rows: int = 256


def _resync_options(value: Any) -> ResyncOptions:
    if value is None or value is True:
        return ResyncOptions()
    if value is False:
        return ResyncOptions(enabled=False, verify=False, verify_on_conflict=False)
    if isinstance(value, ResyncOptions):
        return value
    if isinstance(value, Mapping):
        known = {f.name for f in fields(ResyncOptions)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown resync options: {sorted(unknown)}")
        return ResyncOptions(**value)
    raise TypeError(f"resync must be a bool, a mapping or ResyncOptions, not {value!r}")


class PartyKitPersister(Persister):
    """A :class:`~partywidget.persister.Persister` for a TinyBase PartyKit room."""

    def __init__(
        self,
        store: PersistableStore,
        connection: PartySocket,
        config: Mapping[str, Any] | str | None = None,
        on_ignored_error: IgnoredErrorHandler | None = None,
    ) -> None:
        options: dict[str, Any] = (
            {"store_protocol": config} if isinstance(config, str) else dict(config or {})
        )
        for camel, snake in _CAMEL_CASE_KEYS.items():
            # TinyBase's own spelling is accepted too, so configs can be shared with JS.
            if camel in options:
                options.setdefault(snake, options.pop(camel))
        known = {
            "store_protocol",
            "store_path",
            "message_prefix",
            "max_message_bytes",
            "http_timeout",
            "resync",
        }
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown PartyKit persister options: {sorted(unknown)}")
        self._connection = connection
        self._store_protocol: str = options.get("store_protocol") or "https"
        self._store_path: str = options.get("store_path") or STORE_PATH
        self._message_prefix: str = options.get("message_prefix") or ""
        self._max_message_bytes = int(options.get("max_message_bytes") or DEFAULT_MAX_MESSAGE_BYTES)
        self._http_timeout = float(options.get("http_timeout") or DEFAULT_HTTP_TIMEOUT)
        self._resync = _resync_options(options.get("resync"))
        self._store_url = (
            f"{self._store_protocol}://{connection.host}/parties/"
            f"{connection.name}/{connection.room}{self._store_path}"
        )

        self._http: httpx.AsyncClient | None = None
        self._listener: PersisterListener | None = None
        # Local Changes waiting for an open socket (or for a resync to finish).
        self._offline: list[Changes] = []
        # Messages received while resyncing, replayed over the reloaded content.
        self._held: list[Any] = []
        self._resyncing = False
        self._epoch = 0
        self._load_started = False
        self._last_activity = 0.0
        self._activity_count = 0
        # What we sent lately (see _sent_keys), to spot crossed edits.
        self._recent_sent: dict[tuple[str, ...], float] = {}
        self._verify_requested = False
        self._verify_task: asyncio.Task[None] | None = None
        self._messages_sent = 0
        self._resyncs = 0
        self._replayed = 0
        self._verifies = 0
        self._adopted = 0
        # Sent but not known to be on the server (coalesced, oldest first), and for every
        # cell/value they touch the values the server may hold (see _record_bases).
        self._confirming = self._resync.enabled and self._resync.confirm
        self._unconfirmed: list[Changes] = []
        self._unconfirmed_size = 0
        self._history: dict[str, Any] = {}
        self._value_history: dict[str, Any] = {}
        self._lost_reconnects = 0
        self._recovered = 0

        super().__init__(
            store,
            self._get_persisted,
            self._set_persisted,
            self._add_listener,
            self._del_listener,
            on_ignored_error,
            on_destroy=self._close_transport,
        )
        # Sending a change is queueing a socket message: no need for a flush task.
        self._hand_over_sync = self._send_or_hold
        connection.add_event_listener("open", self._on_open)

    # -- public extras ----------------------------------------------------------------
    def get_connection(self) -> PartySocket:
        """The PartySocket this persister sends and listens on (TinyBase's
        ``getConnection``)."""
        return self._connection

    @property
    def store_url(self) -> str:
        """The room's HTTP store URL used for ``GET``/``PUT``."""
        return self._store_url

    def get_stats(self) -> dict[str, int]:
        """TinyBase's ``loads``/``saves``, plus ``resyncs`` (reloads after a connection
        opened), ``replayed`` (messages held during those reloads and applied after),
        ``verifies`` (verifying GETs), ``adopted`` (times the server's content was
        adopted because it differed) and ``recovered`` (sent Changes found missing on
        the server after a reconnect and sent again)."""
        return {
            **super().get_stats(),
            "resyncs": self._resyncs,
            "replayed": self._replayed,
            "verifies": self._verifies,
            "adopted": self._adopted,
            "recovered": self._recovered,
        }

    @property
    def messages_sent(self) -> int:
        """How many change messages were handed to the socket (after splitting)."""
        return self._messages_sent

    # -- HTTP -----------------------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self._http_timeout), follow_redirects=False
            )
        return self._http

    async def _http_get(self) -> Content | None:
        """The room's content, or ``None`` when it has no store yet (raises on errors)."""
        response = await self._client().get(self._store_url, headers={"cache-control": "no-store"})
        response.raise_for_status()
        text = response.content.decode("utf-8")
        if not text:
            return None
        return decode_content(text)

    async def _http_put(self, content: Content) -> None:
        response = await self._client().put(
            self._store_url,
            content=encode_content(content).encode("utf-8"),
            headers={"content-type": "application/json"},
        )
        response.raise_for_status()

    async def _close_transport(self) -> None:
        self._connection.remove_event_listener("open", self._on_open)
        if self._listener is not None:
            self._connection.remove_event_listener("message", self._on_message)
            self._listener = None
        client, self._http = self._http, None
        if client is not None:
            await client.aclose()

    # -- transport callbacks for the core ---------------------------------------------------
    async def _get_persisted(self) -> Content | None:
        if (
            self.is_auto_loading()
            and self._connection.ready_state != OPEN
            and self._resync.open_timeout > 0
        ):
            # Joining the room before the GET means no broadcast can fall between them.
            with contextlib.suppress(TimeoutError, ConnectionError):
                await self._connection.wait_open(self._resync.open_timeout)
        self._load_started = True
        return await self._http_get()

    async def _set_persisted(self, get_content: GetContent, changes: Changes | None) -> None:
        if changes is None:
            await self._http_put(get_content())
        else:
            self._send_or_hold(changes)

    def _add_listener(self, listener: PersisterListener) -> PersisterListener:
        self._listener = listener
        self._connection.add_event_listener("message", self._on_message)
        return listener

    def _del_listener(self, _handle: Any) -> None:
        self._connection.remove_event_listener("message", self._on_message)
        self._listener = None

    def _unsent_changes(self) -> list[Changes]:
        return [*super()._unsent_changes(), *self._offline]

    def _on_local_changes(self, changes: Changes, old: OldValues | None) -> None:
        self._note_activity()
        if self._confirming:
            self._record_bases(changes, old)

    # -- sending --------------------------------------------------------------------------
    def _note_activity(self) -> None:
        self._activity_count += 1
        loop = self._loop
        if loop is not None:
            self._last_activity = loop.time()

    def _send_or_hold(self, changes: Changes) -> None:
        """Send now if the socket is open and no resync runs, else keep for later."""
        if self._resyncing or self._connection.ready_state != OPEN or self._closed:
            self._hold_offline(changes)
        else:
            self._send(changes)

    def _hold_offline(self, changes: Changes) -> None:
        if not (self._offline and merge_changes_into(self._offline[-1], changes)):
            self._offline.append(copy_changes(changes))

    def _encode(self, changes: Changes) -> str:
        return encode_message(self._message_prefix, CHANGES_TYPE, encode_changes(changes))

    def _split(self, changes: Changes) -> list[Changes]:
        """Parts that each fit in a message; entries too large even alone are reported
        (:class:`ChangesTooLargeError`) and left out, so the rest still syncs."""
        try:
            return split_changes(changes, self._max_message_bytes, self._message_prefix)
        except ChangesTooLargeError:
            pass
        limit = self._max_message_bytes
        tables: dict[str, Any] = {}
        for table_id, table in changes[0].items():
            if table is DELETED:
                tables[table_id] = table
                continue
            for row_id, row in table.items():
                if row is DELETED:
                    tables.setdefault(table_id, {})[row_id] = row
                    continue
                for cell_id, cell in row.items():
                    single: Changes = ({table_id: {row_id: {cell_id: cell}}}, {}, 1)
                    if _utf8_len(self._encode(single)) > limit:
                        self._report(
                            ChangesTooLargeError(
                                f"cell {table_id!r}/{row_id!r}/{cell_id!r} does not fit "
                                f"in a {limit}-byte message: not sent"
                            )
                        )
                    else:
                        tables.setdefault(table_id, {}).setdefault(row_id, {})[cell_id] = cell
        values: dict[str, Any] = {}
        for value_id, value in changes[1].items():
            if _utf8_len(self._encode(({}, {value_id: value}, 1))) > limit:
                self._report(
                    ChangesTooLargeError(
                        f"value {value_id!r} does not fit in a {limit}-byte message: not sent"
                    )
                )
            else:
                values[value_id] = value
        if not (tables or values):
            return []
        return split_changes((tables, values, 1), limit, self._message_prefix)

    def _send(self, changes: Changes) -> None:
        try:
            message = self._encode(changes)
            if _utf8_len(message) <= self._max_message_bytes:
                parts = [(changes, message)]
            else:
                parts = [(part, self._encode(part)) for part in self._split(changes)]
        except (CodecError, ChangesTooLargeError) as error:
            self._report(error)
            return
        for part, text in parts:
            self._messages_sent += 1
            if not self._connection.send(text):
                # The socket queued it (it closed under us): it will go out on the next
                # connection, but keep it too so the resync re-applies and re-sends it.
                self._hold_offline(part)
            elif self._confirming:
                self._log_sent(part)  # what was written (not what was too large to send)
        self._note_activity()
        if self._resync.verify_on_conflict and self._loop is not None:
            now = self._loop.time()
            recent = self._recent_sent
            for key in _sent_keys(changes):
                recent[key] = now
            if len(recent) > 10_000:
                horizon = now - self._resync.conflict_window
                for key in [k for k, t in recent.items() if t < horizon]:
                    del recent[key]

    def _flush_offline(self) -> None:
        offline, self._offline = self._offline, []
        for changes in offline:
            self._send_or_hold(changes)

    # -- receiving ------------------------------------------------------------------------
    def _on_message(self, event: Any) -> None:
        data = getattr(event, "data", None)
        try:
            type_, payload = decode_message(data, self._message_prefix)
            if type_ != CHANGES_TYPE:
                raise ForeignMessageError(f"ignored message of type {type_!r}")
            decoded = decode_payload(payload)
        except (CodecError, ForeignMessageError) as error:
            self._report(error)
            return
        self._note_activity()
        if self._confirming:
            self._note_remote(decoded)
        if self._resyncing:
            self._held.append(decoded)
            return
        listener = self._listener
        if listener is None:
            return
        if len(decoded) == 3:
            if self._conflicts(decoded):
                self._request_verify()
            listener(None, decoded)
        else:
            listener(decoded, None)

    def _conflicts(self, changes: Changes) -> bool:
        recent = self._recent_sent
        if not recent or self._loop is None:
            return False
        horizon = self._loop.time() - self._resync.conflict_window
        return any(recent.get(key, horizon - 1) >= horizon for key in _received_keys(changes))

    # -- resync ---------------------------------------------------------------------------
    def _on_open(self, _event: Any) -> None:
        """A connection opened: resync if the Store may have missed broadcasts."""
        if self._closed or self._destroyed:
            return
        self._epoch += 1
        self._held.clear()  # from an older connection; the coming reload supersedes them
        self._note_activity()
        if self._resync.enabled and self.is_auto_loading() and self._load_started:
            self._resyncing = True
            epoch = self._epoch
            self._spawn(self.schedule(lambda: self._resync_now(epoch)))
        else:
            self._flush_offline()

    async def _resync_now(self, epoch: int) -> None:
        if epoch != self._epoch or self._destroyed:
            return  # a newer connection opened; its own resync is queued
        self._set_status(Status.LOADING)
        try:
            failed = False
            try:
                content = await self._http_get()
            except Exception as error:
                self._report(error)
                failed, content = True, None
            if epoch != self._epoch or self._destroyed:
                return
            held, self._held = self._held, []
            offline, self._offline = self._offline, []
            self._resyncing = False
            self._resyncs += 1
            self._replayed += len(held)
            lost: list[Changes] = []
            if content is not None:
                self._loads += 1
                if self._confirming:
                    lost = self._recover(content, [*offline, *self._pending_local], held)
                self._apply(content, [*held, *lost, *offline])
            else:
                self._apply(None, held)
                if not failed and self.is_auto_saving():
                    # The room lost its store (e.g. a server without persistence was
                    # restarted): initialise it again with ours.
                    try:
                        await self._http_put(self._store.get_content())
                    except Exception as error:
                        self._report(error)
                    else:
                        self._forget_unconfirmed()  # all of it is in what we PUT
            # What the dead connection swallowed goes first: it was sent before these.
            for changes in [*lost, *offline]:
                self._send_or_hold(changes)
            self._request_verify(after_resync=True)
        finally:
            self._set_status(Status.IDLE)

    # -- edits lost in flight -------------------------------------------------------------
    def _wants_old_values(self, changes: Changes) -> bool:
        """Read a transaction's old values only when some cell/value it touches has no
        history yet (so a loop editing the same cells pays nothing after its first
        round), and never for transactions over ``confirm_max_rows`` rows."""
        if not self._confirming:
            return False
        limit = self._resync.confirm_max_rows
        history = self._history
        rows = 0
        known = True
        for table_id, table in changes[0].items():
            if table is DELETED:
                rows += 1
                known = False
                continue
            rows += len(table)
            if rows > limit:
                return False
            if not known:
                continue
            table_history = history.get(table_id)
            if table_history is None:
                known = False
            elif table_history is not _UNKNOWN:
                for row_id, row in table.items():
                    row_history = table_history.get(row_id)
                    if row is DELETED or row_history is None:
                        known = False
                        break
                    if row_history is not _UNKNOWN:
                        for cell_id in row:
                            if cell_id not in row_history:
                                known = False
                                break
        if known and changes[1]:
            value_history = self._value_history
            for value_id in changes[1]:
                if value_id not in value_history:
                    return True
        return not known

    def _record_bases(self, changes: Changes, old: OldValues | None) -> None:
        """Start the history of every cell/value a local transaction touched, unless it
        has one: the value it had before our first edit the server has not confirmed
        (the server's value as far as we know). :meth:`_log_sent` appends what we send.

        Why: after a reconnect, a cell whose server value differs from what we sent last
        is either our edit lost in flight (the server still holds an earlier value of
        its history: re-send) or someone else's later edit whose broadcast we missed
        (not in the history: keep theirs). ``old`` is ``None`` for big transactions:
        their cells get an unknown history (re-sent when they differ) unless they have
        one; a table without any history and a row/table they delete are marked unknown
        as a whole (one entry instead of one per cell).
        """
        history = self._history
        if old is not None:
            old_cells, old_values = old
            for table_id, rows in old_cells.items():
                table_history: Any = history.get(table_id)
                if table_history is None:
                    table_history = history[table_id] = {}
                elif table_history is _UNKNOWN:
                    continue
                for row_id, row in rows.items():
                    row_history: Any = table_history.get(row_id)
                    if row_history is None:
                        row_history = table_history[row_id] = {}
                    elif row_history is _UNKNOWN:
                        continue
                    for cell_id, pair in row.items():
                        if cell_id not in row_history:
                            row_history[cell_id] = [pair[0]]
            value_history = self._value_history
            for value_id, pair in old_values.items():
                if value_id not in value_history:
                    value_history[value_id] = [pair[0]]
            return
        for table_id, table in changes[0].items():
            table_history = history.get(table_id)
            if table is DELETED or table_history is None:
                history[table_id] = _UNKNOWN
                continue
            if table_history is _UNKNOWN:
                continue
            for row_id, row in table.items():
                if row is DELETED:
                    table_history[row_id] = _UNKNOWN
                    continue
                row_history = table_history.setdefault(row_id, {})
                if row_history is not _UNKNOWN:
                    for cell_id in row:
                        row_history.setdefault(cell_id, _UNKNOWN)
        for value_id in changes[1]:
            self._value_history.setdefault(value_id, _UNKNOWN)

    def _log_sent(self, changes: Changes) -> None:
        """Keep what was just written to the connection until the server confirms it.

        Coalesced like the offline backlog; the values sent are appended to the cells'
        histories (a TCP stream delivers a prefix of what was written, so the server may
        hold any of them). Past ``confirm_after`` entries a verification is requested
        to confirm and drop it all, which bounds the memory.
        """
        if not (self._unconfirmed and merge_changes_into(self._unconfirmed[-1], changes)):
            self._unconfirmed.append(copy_changes(changes))
        history = self._history
        size = 0
        for table_id, table in changes[0].items():
            table_history = history.get(table_id)
            if table is DELETED:
                size += 1
                if isinstance(table_history, dict):
                    for row_history in table_history.values():
                        _append_deleted(row_history)
                continue
            size += len(table)
            if table_history is _UNKNOWN:
                continue
            if table_history is None:
                table_history = history[table_id] = {}
            for row_id, row in table.items():
                row_history = table_history.get(row_id)
                if row is DELETED:
                    _append_deleted(row_history)
                    continue
                if row_history is _UNKNOWN:
                    continue
                if row_history is None:
                    row_history = table_history[row_id] = {}
                for cell_id, cell in row.items():
                    row_history[cell_id] = _appended(row_history.get(cell_id), cell)
        value_history = self._value_history
        for value_id, value in changes[1].items():
            size += 1
            value_history[value_id] = _appended(value_history.get(value_id), value)
        self._unconfirmed_size += size
        if self._unconfirmed_size >= self._resync.confirm_after:
            self._unconfirmed_size = 0
            self._request_verify(after_resync=True)

    def _note_remote(self, data: Any) -> None:
        """A broadcast arrived: the server ordered it after everything we sent before.

        So what it touches is no longer ours to re-send (re-sending would overwrite a
        newer value), and its values are now the server's: the histories restart there.
        """
        if len(data) != 3:  # whole Content: nothing of ours survives it
            self._forget_unconfirmed()
            return
        tables, values = data[0], data[1]
        for sent in self._unconfirmed:
            _remove_touched(sent, tables, values)
        if self._unconfirmed and any(changes_is_empty(u) for u in self._unconfirmed):
            self._unconfirmed = [u for u in self._unconfirmed if not changes_is_empty(u)]
        history = self._history
        for table_id, table in tables.items():
            table_history = history.get(table_id)
            if table_history is None:
                continue
            if table is DELETED or table_history is _UNKNOWN:
                history[table_id] = {}  # nothing there now; unknown cells are gone too
                continue
            for row_id, row in table.items():
                row_history = table_history.get(row_id)
                if row_history is None:
                    continue
                if row is DELETED or row_history is _UNKNOWN:
                    table_history[row_id] = {}
                    continue
                for cell_id, cell in row.items():
                    row_history[cell_id] = [cell]
        value_history = self._value_history
        for value_id, value in values.items():
            if value_id in value_history:
                value_history[value_id] = [value]

    def _forget_unconfirmed(self) -> None:
        self._unconfirmed = []
        self._unconfirmed_size = 0
        if not (self._offline or self._pending_local):
            self._history = {}
            self._value_history = {}

    def _recover(self, content: Content, unsent: list[Changes], held: list[Any]) -> list[Changes]:
        """Sort what we sent against the reloaded ``content``; return what was lost.

        Per cell/value: equal to what we sent last -> confirmed; an earlier value of its
        history -> our (last) edit never arrived: re-sent, and re-applied over the
        reload like an offline edit; anything else -> someone else's later edit: theirs
        stays. (What a broadcast touched after our send was already dropped by
        :meth:`_note_remote`.) A row or table deletion is re-sent only if every cell
        the server has there is in its history. Afterwards the log is empty (the lost
        part is logged again when re-sent) and the histories restart from ``content``,
        for the edits still to be sent only.
        """
        lost: list[Changes] = []
        for sent in self._unconfirmed:
            part = self._lost_part(sent, content)
            if not changes_is_empty(part):
                lost.append(part)
        self._unconfirmed = []
        self._unconfirmed_size = 0
        self._rebase(content, [*lost, *unsent])
        for data in held:
            self._note_remote(data)
        if lost:
            self._recovered += len(lost)
            logger.info(
                "partywidget: re-sending %d change set(s) lost in flight to %s",
                len(lost),
                self._store_url,
            )
        return lost

    def _cell_history(self, table_id: str, row_id: str, cell_id: str) -> Any:
        table_history = self._history.get(table_id, _MISSING)
        if table_history is _MISSING or table_history is _UNKNOWN:
            return table_history
        row_history = table_history.get(row_id, _MISSING)
        if row_history is _MISSING or row_history is _UNKNOWN:
            return row_history
        return row_history.get(cell_id, _MISSING)

    def _ours(self, table_id: str, row_id: str, row: Mapping[str, Any]) -> bool:
        """Could every cell of a server row be there because of us (so our deletion of
        the row was lost, not overtaken)?"""
        return all(
            _in_history(self._cell_history(table_id, row_id, cell_id), cell, missing=False)
            for cell_id, cell in row.items()
        )

    def _lost_part(self, sent: Changes, content: Content) -> Changes:
        server_tables, server_values = content
        tables: dict[str, Any] = {}
        for table_id, table in sent[0].items():
            server_table = server_tables.get(table_id)
            if table is DELETED:
                if server_table and all(
                    self._ours(table_id, row_id, row) for row_id, row in server_table.items()
                ):
                    tables[table_id] = DELETED
                continue
            for row_id, row in table.items():
                server_row = server_table.get(row_id) if server_table else None
                if row is DELETED:
                    if server_row and self._ours(table_id, row_id, server_row):
                        tables.setdefault(table_id, {})[row_id] = DELETED
                    continue
                for cell_id, cell in row.items():
                    now = server_row.get(cell_id, DELETED) if server_row else DELETED
                    if cells_equal(now, cell):
                        continue  # confirmed
                    if _in_history(self._cell_history(table_id, row_id, cell_id), now):
                        tables.setdefault(table_id, {}).setdefault(row_id, {})[cell_id] = cell
        values: dict[str, Any] = {}
        for value_id, value in sent[1].items():
            now = server_values.get(value_id, DELETED)
            if cells_equal(now, value):
                continue
            if _in_history(self._value_history.get(value_id, _MISSING), now):
                values[value_id] = value
        return tables, values, 1

    def _rebase(self, content: Content, changes_list: list[Changes]) -> None:
        """Histories restart at the server's values, only for cells these Changes touch."""
        server_tables, server_values = content
        history: dict[str, Any] = {}
        value_history: dict[str, Any] = {}
        for changes in changes_list:
            for table_id, table in changes[0].items():
                server_table = server_tables.get(table_id) or {}
                table_history = history.setdefault(table_id, {})
                rows = server_table if table is DELETED else table
                for row_id, row in rows.items():
                    server_row = server_table.get(row_id) or {}
                    row_history = table_history.setdefault(row_id, {})
                    cells = server_row if row is DELETED or table is DELETED else row
                    for cell_id in cells:
                        row_history[cell_id] = [server_row.get(cell_id, DELETED)]
            for value_id in changes[1]:
                value_history[value_id] = [server_values.get(value_id, DELETED)]
        self._history = history
        self._value_history = value_history

    def _confirm_on_verify(self, content: Content) -> bool:
        """Confirm the log against a quiet-time ``GET``; False if it shows a loss.

        Nothing was sent or received since well before that ``GET``, so whatever we
        sent and the server lacks (at its base value) was swallowed by a connection
        that looks open but is dead. Reconnect then (its resync re-sends), once; if the
        server still lacks it after that, it refuses it (e.g. a ``can_set_cell``
        hook): give up and adopt its content.
        """
        lost = [
            part
            for part in (self._lost_part(sent, content) for sent in self._unconfirmed)
            if not changes_is_empty(part)
        ]
        if lost and self._lost_reconnects < 1:
            self._lost_reconnects += 1
            logger.info("partywidget: sent changes missing on %s: reconnecting", self._store_url)
            self._connection.reconnect()
            return False
        if lost:
            self._report(
                RuntimeError(
                    f"{self._store_url} did not keep {len(lost)} sent change set(s) after a "
                    "reconnect: adopting its content"
                )
            )
        self._lost_reconnects = 0
        self._forget_unconfirmed()
        return True

    # -- verification ---------------------------------------------------------------------
    def _request_verify(self, after_resync: bool = False) -> None:
        """Verify against the server once quiet (one verification loop at a time)."""
        enabled = self._resync.verify if after_resync else self._resync.verify_on_conflict
        if self._destroyed or not enabled:
            return
        self._verify_requested = True
        if self._verify_task is None:
            self._verify_task = self._spawn(self._verify_loop())

    async def _wait_quiet(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            remaining = self._last_activity + self._resync.quiet_period - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)

    async def _verify_loop(self) -> None:
        try:
            rounds = 0
            while self._verify_requested and rounds < self._resync.max_verify_rounds:
                self._verify_requested = False
                await self._wait_quiet()
                if (
                    self._destroyed
                    or self._resyncing
                    or not self.is_auto_loading()
                    or self._connection.ready_state != OPEN
                ):
                    return  # the next resync asks again
                rounds += 1
                self._verifies += 1
                count = self._activity_count
                try:
                    content = await self._http_get()
                except Exception as error:
                    self._report(error)
                    self._verify_requested = True
                    continue
                if (
                    count != self._activity_count
                    or self._resyncing
                    or self._offline
                    or self.has_pending_changes()
                ):
                    self._verify_requested = True  # not quiet after all: try again
                    continue
                if content is None:
                    continue
                if self._unconfirmed and not self._confirm_on_verify(content):
                    return  # reconnecting: its resync re-sends what the server lacks
                if not changes_is_empty(diff_content(self._store.get_content(), content)):
                    logger.debug("verify: adopting the server's content for %s", self._store_url)
                    self._loads += 1
                    self._adopted += 1
                    self._apply(content)
                    self._verify_requested = True  # confirm it settled
        finally:
            self._verify_task = None

    def is_resyncing(self) -> bool:
        """Whether a reload after (re)connecting is in progress."""
        return self._resyncing

    def is_settled(self) -> bool:
        """Nothing pending: no unsent edits, no resync, no verification running."""
        return not (
            self._resyncing
            or self._offline
            or self.has_pending_changes()
            or self._verify_task is not None
        )


_UNKNOWN: Final[Any] = type("_Unknown", (), {"__repr__": lambda self: "<unknown>"})()
_MISSING: Final[Any] = type("_Missing", (), {"__repr__": lambda self: "<missing>"})()


#: Values kept per cell history; a longer one becomes unknown (re-sent when it differs).
_HISTORY_CAP: Final = 16


def _appended(history: Any, value: Any) -> Any:
    """``history`` (a list, ``_UNKNOWN`` or ``None`` for none) with ``value`` sent."""
    if history is None or history is _UNKNOWN or len(history) >= _HISTORY_CAP:
        return _UNKNOWN
    if not cells_equal(history[-1], value):
        history.append(value)
    return history


def _append_deleted(row_history: Any) -> None:
    """A row we deleted: every cell we track there was sent as deleted."""
    if isinstance(row_history, dict):
        for cell_id, history in row_history.items():
            row_history[cell_id] = _appended(history, DELETED)


def _in_history(history: Any, value: Any, *, missing: bool = True) -> bool:
    """May the server hold ``value`` because of us (or from before our edits)?

    Unknown histories say yes (re-sending is then the only way not to lose our edit);
    ``missing`` is the answer for a cell we never tracked.
    """
    if history is _UNKNOWN:
        return True
    if history is _MISSING:
        return missing
    return any(cells_equal(known, value) for known in history)


def _remove_touched(sent: Changes, tables: dict[str, Any], values: dict[str, Any]) -> None:
    """Drop from ``sent`` (in place) every entry an incoming Changes overlaps: a cell
    set or deleted there, or anything inside a row/table deleted on either side."""
    sent_tables, sent_values = sent[0], sent[1]
    for table_id, table in tables.items():
        sent_table = sent_tables.get(table_id)
        if sent_table is None:
            continue
        if table is DELETED or sent_table is DELETED:
            del sent_tables[table_id]
            continue
        for row_id, row in table.items():
            sent_row = sent_table.get(row_id)
            if sent_row is None:
                continue
            if row is DELETED or sent_row is DELETED:
                del sent_table[row_id]
                continue
            for cell_id in row:
                sent_row.pop(cell_id, None)
            if not sent_row:
                del sent_table[row_id]
        if not sent_table:
            del sent_tables[table_id]
    for value_id in values:
        sent_values.pop(value_id, None)


def _sent_keys(changes: Changes) -> Iterator[tuple[str, ...]]:
    """Keys remembered for what we sent: rows (``R``), table deletions (``T``), any
    entry in a table (``A``) and values (``V``). Row granularity: crossed edits of
    different cells commute under last-write-wins; a row and its table do not."""
    for table_id, table in changes[0].items():
        yield ("A", table_id)
        if table is DELETED:
            yield ("T", table_id)
        else:
            for row_id in table:
                yield ("R", table_id, row_id)
    for value_id in changes[1]:
        yield ("V", value_id)


def _received_keys(changes: Changes) -> Iterator[tuple[str, ...]]:
    """Keys of ``_sent_keys`` that an incoming change conflicts with."""
    for table_id, table in changes[0].items():
        if table is DELETED:
            yield ("A", table_id)
        else:
            yield ("T", table_id)
            for row_id in table:
                yield ("R", table_id, row_id)
    for value_id in changes[1]:
        yield ("V", value_id)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def create_partykit_persister(
    store: PersistableStore,
    connection: PartySocket,
    config_or_store_protocol: Mapping[str, Any] | str | None = None,
    on_ignored_error: IgnoredErrorHandler | None = None,
) -> PartyKitPersister:
    """Persist ``store`` to the PartyKit room of ``connection`` (TinyBase's
    ``createPartyKitPersister``).

    ``config_or_store_protocol`` is ``"http"``/``"https"`` or a mapping with TinyBase's
    keys ``store_protocol`` (default ``"https"``), ``store_path`` (``"/store"``),
    ``message_prefix`` (``""``), and ours: ``max_message_bytes`` (default just under
    1 MiB), ``http_timeout`` (seconds, default 10) and ``resync`` (``True``, ``False``
    for the reference behaviour, or a mapping of :class:`ResyncOptions` fields).
    """
    return PartyKitPersister(store, connection, config_or_store_protocol, on_ignored_error)
