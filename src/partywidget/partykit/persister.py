"""``create_partykit_persister``: TinyBase's PartyKit client persister, made lossless.

On the wire this is exactly TinyBase 10's ``createPartyKitPersister``: ``GET``/``PUT``
of ``{store_protocol}://{host}/parties/{party}/{room}{store_path}`` for whole content,
and ``{message_prefix}s{changes JSON}`` messages over the room's PartySocket for every
local change (see ``docs/protocol.md``). What makes it lossless -- resync after
reconnect, replay of held messages, the unconfirmed-edit log and the re-sending of
edits lost in flight, verification once quiet -- is decided by the sans-I/O
:class:`~partywidget.partykit.reconcile.Reconciler`, whose docstring explains every
rule. This module is the transport glue around it:

- socket events (open, message) and the generic persister's hooks
  (:class:`~partywidget.persister.PersisterHooks`) become reconciler events, with the
  time from :func:`time.monotonic`;
- its decisions become socket sends (split to fit PartyKit's frame limit by
  :mod:`partywidget.partykit.messages`), Store applies, ``GET``/``PUT`` with httpx, a
  reconnect, and the verifier task that sleeps until the room is quiet.

The generic core adds: edits made while the initial ``PUT`` is in flight are sent after
it, and local transactions of one event-loop turn become one message. Applying loaded
or remote data never echoes back to the room. Every swallowed error (HTTP status
errors, timeouts, refused connections, bad or foreign messages, ``CodecError``, a cell
too large for a message) goes to ``on_ignored_error`` and the module logger. One
``httpx.AsyncClient`` (with timeouts) per persister, closed by :meth:`destroy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final

import httpx

from partywidget._options import camel_case, options_from
from partywidget.changes import ChangesTooLargeError
from partywidget.codec import (
    CHANGES_TYPE,
    CodecError,
    decode_content,
    decode_message,
    decode_payload,
    encode_content,
)
from partywidget.model import Changes, Content
from partywidget.partykit.messages import DEFAULT_MAX_MESSAGE_BYTES, messages_for
from partywidget.partykit.reconcile import (
    VERIFY_NOW,
    Adopt,
    Apply,
    Decision,
    Deliver,
    Put,
    Reconciler,
    Reconnect,
    Reload,
    Report,
    ResyncOptions,
    Send,
    StartVerifier,
)
from partywidget.partykit.socket import OPEN, PartySocket
from partywidget.persister import (
    GetContent,
    IgnoredErrorHandler,
    OldValues,
    PersistableStore,
    Persister,
    PersisterHooks,
    PersisterListener,
)

__all__ = [
    "DEFAULT_HTTP_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ForeignMessageError",
    "PartyKitConfig",
    "PartyKitPersister",
    "ResyncOptions",
    "create_partykit_persister",
]

logger = logging.getLogger(__name__)

DEFAULT_HTTP_TIMEOUT: Final = 10.0
STORE_PATH: Final = "/store"


class ForeignMessageError(ValueError):
    """A room message with our prefix but a type other than ``s`` (ignored, reported)."""


def resync_options(value: Any) -> ResyncOptions:
    """``resync`` as given in a config: ``True``/``None`` (defaults), ``False`` (the
    reference behaviour: no reload after reconnect), a mapping or :class:`ResyncOptions`."""
    if value is None or value is True:
        return ResyncOptions()
    if value is False:
        return ResyncOptions(enabled=False, verify=False, verify_on_conflict=False)
    if isinstance(value, Mapping):
        names = {f.name for f in fields(ResyncOptions)}
        unknown = set(value) - names - {camel_case(name) for name in names}
        if unknown:
            raise ValueError(f"unknown resync options: {sorted(map(str, unknown))}")
    if isinstance(value, ResyncOptions | Mapping):
        return options_from(ResyncOptions, value)
    raise TypeError(f"resync must be a bool, a mapping or ResyncOptions, not {value!r}")


@dataclass(frozen=True)
class PartyKitConfig:
    """The persister's configuration (TinyBase's ``PartyKitPersisterConfig`` and ours).

    Build it from a mapping with TinyBase's camelCase or snake_case keys through
    :func:`partywidget._options.options_from`, or pass just ``"http"``/``"https"``.
    """

    #: ``"https"`` or ``"http"`` for the store URL.
    store_protocol: str = "https"
    store_path: str = STORE_PATH
    message_prefix: str = ""
    #: Longest change message in UTF-8 bytes; longer Changes are split.
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    #: Seconds for each ``GET``/``PUT``.
    http_timeout: float = DEFAULT_HTTP_TIMEOUT
    #: ``True``, ``False`` (reference behaviour), a mapping or :class:`ResyncOptions`.
    resync: ResyncOptions = field(default_factory=ResyncOptions)

    def __post_init__(self) -> None:
        # Falsy values mean "the default", as in TinyBase's config handling.
        defaults = {
            "store_protocol": "https",
            "store_path": STORE_PATH,
            "message_prefix": "",
            "max_message_bytes": DEFAULT_MAX_MESSAGE_BYTES,
            "http_timeout": DEFAULT_HTTP_TIMEOUT,
        }
        for name, default in defaults.items():
            if not getattr(self, name):
                object.__setattr__(self, name, default)
        object.__setattr__(self, "max_message_bytes", int(self.max_message_bytes))
        object.__setattr__(self, "http_timeout", float(self.http_timeout))
        if not isinstance(self.resync, ResyncOptions):
            object.__setattr__(self, "resync", resync_options(self.resync))


def partykit_config(value: PartyKitConfig | Mapping[str, Any] | str | None) -> PartyKitConfig:
    """The config from a :class:`PartyKitConfig`, a mapping, a store protocol or None."""
    if isinstance(value, str):
        return PartyKitConfig(store_protocol=value)
    return options_from(PartyKitConfig, value)


class PartyKitPersister(Persister):
    """A :class:`~partywidget.persister.Persister` for a TinyBase PartyKit room.

    Built from the generic persister's public contract: the four transport callbacks,
    :class:`~partywidget.persister.PersisterHooks` and its methods for transports.
    """

    def __init__(
        self,
        store: PersistableStore,
        connection: PartySocket,
        config: PartyKitConfig | Mapping[str, Any] | str | None = None,
        on_ignored_error: IgnoredErrorHandler | None = None,
    ) -> None:
        self.config = config = partykit_config(config)
        self._connection = connection
        self._store_url = (
            f"{config.store_protocol}://{connection.host}/parties/"
            f"{connection.name}/{connection.room}{config.store_path}"
        )
        self._http: httpx.AsyncClient | None = None
        self._listener: PersisterListener | None = None
        self._transport_closed = False
        self._messages_sent = 0
        self._reconciler = reconciler = Reconciler(
            config.resync, lambda: self.get_pending_changes(), self._store_url
        )
        super().__init__(
            store,
            self._fetch_for_load,
            self._save_or_send,
            self._listen,
            self._unlisten,
            on_ignored_error,
            on_destroy=self._close_transport,
            hooks=PersisterHooks(
                wants_old_values=reconciler.wants_old_values if reconciler.confirming else None,
                on_local_changes=self._note_local_edit,
                unsent_changes=reconciler.unsent,
                # Sending a change is queueing a socket message: no flush task needed.
                hand_over=self._send_or_hold,
            ),
        )
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
        return {**super().get_stats(), **self._reconciler.stats}

    @property
    def messages_sent(self) -> int:
        """How many change messages were handed to the socket (after splitting)."""
        return self._messages_sent

    def is_resyncing(self) -> bool:
        """Whether a reload after (re)connecting is in progress."""
        return self._reconciler.is_resyncing()

    def is_settled(self) -> bool:
        """Nothing pending: no unsent edits, no resync, no verification running."""
        return not (self._reconciler.is_busy() or self.has_pending_changes())

    # -- HTTP -----------------------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.http_timeout), follow_redirects=False
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
        self._transport_closed = True
        self._connection.remove_event_listener("open", self._on_open)
        if self._listener is not None:
            self._connection.remove_event_listener("message", self._on_message)
            self._listener = None
        client, self._http = self._http, None
        if client is not None:
            await client.aclose()

    # -- transport callbacks for the core ---------------------------------------------------
    async def _fetch_for_load(self) -> Content | None:
        if (
            self.is_auto_loading()
            and self._connection.ready_state != OPEN
            and self.config.resync.open_timeout > 0
        ):
            # Joining the room before the GET means no broadcast can fall between them.
            with contextlib.suppress(TimeoutError, ConnectionError):
                await self._connection.wait_open(self.config.resync.open_timeout)
        self._reconciler.loading()
        return await self._http_get()

    async def _save_or_send(self, get_content: GetContent, changes: Changes | None) -> None:
        if changes is None:
            await self._http_put(get_content())
        else:
            self._send_or_hold(changes)

    def _listen(self, listener: PersisterListener) -> PersisterListener:
        self._listener = listener
        self._connection.add_event_listener("message", self._on_message)
        return listener

    def _unlisten(self, _handle: Any) -> None:
        self._connection.remove_event_listener("message", self._on_message)
        self._listener = None

    def _note_local_edit(self, changes: Changes, old: OldValues | None) -> None:
        self._reconciler.local_changes(changes, old, time.monotonic())

    # -- sending --------------------------------------------------------------------------
    def _socket_open(self) -> bool:
        return not self._transport_closed and self._connection.ready_state == OPEN

    def _send_or_hold(self, changes: Changes) -> None:
        """Send now if the socket is open and no resync runs, else keep for later."""
        if self._reconciler.hand_over(changes, self._socket_open()):
            self._send(changes)

    def _send(self, changes: Changes) -> None:
        prefix = self.config.message_prefix
        try:
            messages, too_large = messages_for(changes, self.config.max_message_bytes, prefix)
        except (CodecError, ChangesTooLargeError) as error:
            self.report_error(error)
            return
        for skipped in too_large:
            self.report_error(skipped)
        written = []
        send = self._connection.send
        for part, text in messages:
            self._messages_sent += 1
            written.append((part, send(text)))
        decisions = self._reconciler.sent(changes, written, time.monotonic())
        if decisions:
            self._perform(decisions)

    # -- receiving ------------------------------------------------------------------------
    def _on_message(self, event: Any) -> None:
        data = getattr(event, "data", None)
        try:
            type_, payload = decode_message(data, self.config.message_prefix)
            if type_ != CHANGES_TYPE:
                raise ForeignMessageError(f"ignored message of type {type_!r}")
            decoded = decode_payload(payload)
        except (CodecError, ForeignMessageError) as error:
            self.report_error(error)
            return
        listening = self._listener is not None
        self._perform(self._reconciler.received(decoded, time.monotonic(), listening))

    # -- decisions ------------------------------------------------------------------------
    def _perform(self, decisions: Sequence[Decision]) -> None:
        """Carry out the reconciler's decisions, in order."""
        for decision in decisions:
            if isinstance(decision, Send):
                self._send(decision.changes)
            elif isinstance(decision, Deliver):
                listener = self._listener
                if listener is not None:
                    data = decision.data
                    if len(data) == 3:
                        listener(None, data)
                    else:
                        listener(data, None)
            elif isinstance(decision, Apply):
                self.apply_loaded(
                    decision.content, decision.changes, count_load=decision.count_load
                )
            elif isinstance(decision, Adopt):
                self.apply_loaded(decision.content, count_load=True)
            elif isinstance(decision, StartVerifier):
                self.spawn(self._verify_loop())
            elif isinstance(decision, Reconnect):
                self._connection.reconnect()
            elif isinstance(decision, Report):
                self.report_error(decision.error)
            elif isinstance(decision, Reload):
                self.spawn(self.schedule(functools.partial(self._resync, decision.epoch)))
            elif isinstance(decision, Put):
                self.spawn(self._put_for_resync())

    # -- resync ---------------------------------------------------------------------------
    def _on_open(self, _event: Any) -> None:
        """A connection opened: resync if the Store may have missed broadcasts."""
        if self._transport_closed or self.is_destroyed():
            return
        opened = self._reconciler.opened(time.monotonic(), self.is_auto_loading())
        self._perform(opened)

    async def _resync(self, epoch: int) -> None:
        reconciler = self._reconciler
        if not reconciler.is_current(epoch) or self.is_destroyed():
            return  # a newer connection opened; its own resync is queued
        with self.loading():
            failed = False
            try:
                content = await self._http_get()
            except Exception as error:
                self.report_error(error)
                failed, content = True, None
            if not reconciler.is_current(epoch) or self.is_destroyed():
                return
            decisions = reconciler.reload_result(
                epoch,
                content,
                failed=failed,
                auto_saving=self.is_auto_saving(),
                socket_open=self._socket_open(),
            )
            puts = [d for d in decisions if isinstance(d, Put)]
            self._perform([d for d in decisions if not isinstance(d, Put)])
            if puts:
                await self._put_for_resync()

    async def _put_for_resync(self) -> None:
        """Initialise a room that lost its store with ours, then finish the resync."""
        failure: BaseException | None = None
        try:
            await self._http_put(self.get_store().get_content())
        except Exception as error:
            failure = error
        self._perform(self._reconciler.put_done(failure, self._socket_open()))

    # -- verification ---------------------------------------------------------------------
    async def _verify_loop(self) -> None:
        """Wait until quiet, fetch, hand the answer to the reconciler; until it stops."""
        reconciler = self._reconciler
        try:
            while not self.is_destroyed():
                step = reconciler.verify_step(time.monotonic(), self._can_verify())
                if step is None:
                    return
                if step != VERIFY_NOW:
                    assert isinstance(step, float)
                    await asyncio.sleep(max(0.0, step - time.monotonic()))
                    continue
                try:
                    content = await self._http_get()
                except Exception as error:
                    self.report_error(error)
                    reconciler.verify_failed()
                    continue
                self._perform(
                    reconciler.verify_result(
                        content, self.get_store().get_content, self.has_pending_changes()
                    )
                )
        finally:
            reconciler.stop_verifier()

    def _can_verify(self) -> bool:
        return (
            not self.is_destroyed()
            and self.is_auto_loading()
            and self._connection.ready_state == OPEN
        )


def create_partykit_persister(
    store: PersistableStore,
    connection: PartySocket,
    config_or_store_protocol: PartyKitConfig | Mapping[str, Any] | str | None = None,
    on_ignored_error: IgnoredErrorHandler | None = None,
) -> PartyKitPersister:
    """Persist ``store`` to the PartyKit room of ``connection`` (TinyBase's
    ``createPartyKitPersister``).

    ``config_or_store_protocol`` is ``"http"``/``"https"``, a :class:`PartyKitConfig`
    or a mapping of its fields in TinyBase's camelCase or snake_case: TinyBase's
    ``store_protocol`` (default ``"https"``), ``store_path`` (``"/store"``),
    ``message_prefix`` (``""``), and ours: ``max_message_bytes`` (default just under
    1 MiB), ``http_timeout`` (seconds, default 10) and ``resync`` (``True``, ``False``
    for the reference behaviour, or a mapping of :class:`ResyncOptions` fields).
    """
    return PartyKitPersister(store, connection, config_or_store_protocol, on_ignored_error)
