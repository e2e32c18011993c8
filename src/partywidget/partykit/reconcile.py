"""The lossless-sync engine of the PartyKit persister, without any I/O.

:class:`Reconciler` is a synchronous state machine in the style of python-websockets'
``Protocol``: the transport feeds it *events* (a local transaction, a message received,
the socket opened, a reload or verification answered, time passing -- always given as
numbers) and carries out the *decisions* it returns (:class:`Send`, :class:`Apply`,
:class:`Deliver`, :class:`Reload`, :class:`Put`, :class:`StartVerifier`,
:class:`Adopt`, :class:`Reconnect`, :class:`Report`). It never reads a clock, a socket
or the network, so every rule below is unit-tested with plain Changes.

The wire protocol itself (TinyBase's ``createPartyKitPersister``: ``GET``/``PUT`` of the
room's store, ``s`` messages of Changes, broadcast to everyone but the sender, no
acknowledgements) is described in ``docs/protocol.md``. The reference client loses
data in several ways; these rules are how this one does not:

Resync after reconnect
    While the socket is not open (or a resync is running) local Changes are kept here
    (*offline*), not in the socket's queue. When a connection opens after the Store was
    loaded over HTTP (every reconnect, and a first open that came after the initial
    ``GET``), incoming messages are *held*, the room is fetched again (:class:`Reload`)
    and the Store becomes, in one transaction: the fetched content, then the held
    messages in arrival order (per-connection broadcast order makes this replay
    converge), then the offline edits, which are then sent. Offline edits go last
    because the reload may have been answered before the server applied them (the
    server does not echo a sender's changes), so they must win locally as they will
    on the server.
Verification once quiet
    After a resync, and whenever an incoming change touches a row, table or value this
    client sent within ``conflict_window`` seconds or an edit still unconfirmed in the
    log (two clients' concurrent edits can cross on the wire and leave each with the
    other's value; a slow link can delay that past any window), the transport runs a
    verifier (:class:`StartVerifier`): it waits until the room has been quiet for
    ``quiet_period`` seconds, fetches the room and, if it differs and nothing local is
    pending, adopts the server's content (:class:`Adopt`). So once quiet, every client
    equals the server.
Edits lost in flight
    Every Changes written to the socket is kept in an :class:`EditLog` until the server
    is known to have it. On the resync after a reconnect, what the reload shows missing
    is re-applied over it and sent again, like an offline edit (the log's docstring has
    the rules). Messages held during that resync are told to the log only after it:
    they came on the new connection, so they say nothing about what the old one lost. A quiet verification confirms and empties the log (requested once
    ``confirm_after`` entries are kept); if it shows sent edits missing while the socket
    looks open, the connection is presumed dead and reopened (:class:`Reconnect`, once;
    then the server is presumed to refuse them and its content is adopted).
    ``confirm=False`` turns this off.

Applying loaded or remote data never echoes back to the room: the generic persister
(:mod:`partywidget.persister`) applies it without triggering auto-save, and re-applies
the local edits it has not handed over yet on top (:meth:`Reconciler.unsent` adds the
offline ones).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from partywidget.changes import changes_is_empty, copy_changes, diff_content, merge_changes_into
from partywidget.model import DELETED, Changes, Content
from partywidget.partykit.edit_log import EditLog

if TYPE_CHECKING:  # the generic persister (asyncio) is not imported at run time
    from partywidget.persister import OldValues

__all__ = [
    "VERIFY_NOW",
    "Adopt",
    "Apply",
    "Decision",
    "Deliver",
    "Put",
    "Reconciler",
    "Reconnect",
    "Reload",
    "Report",
    "ResyncOptions",
    "Send",
    "StartVerifier",
]

logger = logging.getLogger("partywidget.partykit.persister")


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


# -- decisions ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    """Write ``changes`` to the socket now, then report with :meth:`Reconciler.sent`."""

    changes: Changes


@dataclass(frozen=True, slots=True)
class Apply:
    """Apply to the Store in one transaction, without echo: ``content`` (if any)
    replaces it, then each item of ``changes`` in order, then the unsent local edits.
    ``count_load``: count it in the ``loads`` statistic."""

    content: Content | None
    changes: tuple[Any, ...]
    count_load: bool


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand a received message (Changes or Content) to the persister's listener."""

    data: Any


@dataclass(frozen=True, slots=True)
class Reload:
    """Fetch the room now and answer with :meth:`Reconciler.reload_result` (``epoch``
    identifies the connection this resync belongs to)."""

    epoch: int


@dataclass(frozen=True, slots=True)
class Put:
    """The room has no store: save the whole Store, then call :meth:`Reconciler.put_done`."""


@dataclass(frozen=True, slots=True)
class StartVerifier:
    """Start the verifier: call :meth:`Reconciler.verify_step` until it returns None."""


@dataclass(frozen=True, slots=True)
class Adopt:
    """Replace the Store with the server's ``content`` (it differed once quiet)."""

    content: Content


@dataclass(frozen=True, slots=True)
class Reconnect:
    """The connection looks open but swallowed sent edits: reopen it."""


@dataclass(frozen=True, slots=True)
class Report:
    """Hand ``error`` to ``on_ignored_error`` (nothing is raised)."""

    error: BaseException


Decision: TypeAlias = (
    Send | Apply | Deliver | Reload | Put | StartVerifier | Adopt | Reconnect | Report
)

#: :meth:`Reconciler.verify_step`'s answer for "fetch the room now".
VERIFY_NOW: Final = "verify-now"

_NO_DECISIONS: Final[tuple[Decision, ...]] = ()


class Reconciler:
    """The sync engine's state; one per persister. See the module docstring.

    ``pending_local`` returns the local edits the generic persister holds and has not
    handed over yet (they are re-sent after a reload like offline ones). ``store_url``
    only names the room in log lines and errors.
    """

    def __init__(
        self,
        options: ResyncOptions,
        pending_local: Callable[[], Sequence[Changes]] = lambda: (),
        store_url: str = "",
    ) -> None:
        self.options = options
        self._pending_local = pending_local
        self._store_url = store_url
        self.confirming = options.enabled and options.confirm
        self.log = EditLog(options.confirm_max_rows)
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
        self._lost_reconnects = 0
        self._after_put: list[Changes] = []
        # The verifier: requested again, running, waiting for quiet, rounds, stop.
        self._verify_requested = False
        self._verifying = False
        self._verify_waiting = False
        self._verify_rounds = 0
        self._verify_count = 0
        self._verify_stop = False
        self.stats = {"resyncs": 0, "replayed": 0, "verifies": 0, "adopted": 0, "recovered": 0}

    # -- queries --------------------------------------------------------------------------
    def is_resyncing(self) -> bool:
        return self._resyncing

    def is_busy(self) -> bool:
        """Resyncing, holding offline edits or verifying (see ``is_settled``)."""
        return self._resyncing or bool(self._offline) or self._verifying

    def unsent(self) -> list[Changes]:
        """Offline edits, re-applied over any loaded or remote data."""
        return self._offline

    # -- local edits ----------------------------------------------------------------------
    def wants_old_values(self, changes: Changes) -> bool:
        """Should the values this local transaction replaced be read (see EditLog)?"""
        return self.confirming and self.log.wants_old_values(changes)

    def local_changes(self, changes: Changes, old: OldValues | None, now: float) -> None:
        """A local transaction changed something (``old``: what it replaced, if asked)."""
        self._note_activity(now)
        if self.confirming:
            self.log.record_bases(changes, old)

    def hand_over(self, changes: Changes, socket_open: bool) -> bool:
        """Local Changes are to go out: True -> send them now (:class:`Send`), False ->
        kept offline until the next connection's resync."""
        if self._resyncing or not socket_open:
            self._hold_offline(changes)
            return False
        return True

    def sent(
        self, changes: Changes, written: Sequence[tuple[Changes, bool]], now: float
    ) -> Sequence[Decision]:
        """``changes`` went to the socket as ``written`` parts, each with whether the
        socket took it (False: queued for the next connection -- kept offline too, so
        the resync re-applies and re-sends it)."""
        decisions: Sequence[Decision] = _NO_DECISIONS
        for part, delivered in written:
            if not delivered:
                self._hold_offline(part)
            elif self.confirming:
                self.log.log_sent(part)  # what was written, not what was too large
                if self.log.size >= self.options.confirm_after:
                    self.log.size = 0
                    decisions = self._request_verify(after_resync=True)
        self._note_activity(now)
        if self.options.verify_on_conflict:
            recent = self._recent_sent
            for key in _sent_keys(changes):
                recent[key] = now
            if len(recent) > 10_000:
                horizon = now - self.options.conflict_window
                for key in [k for k, t in recent.items() if t < horizon]:
                    del recent[key]
        return decisions

    def _hold_offline(self, changes: Changes) -> None:
        if not (self._offline and merge_changes_into(self._offline[-1], changes)):
            self._offline.append(copy_changes(changes))

    # -- remote data ----------------------------------------------------------------------
    def received(self, data: Any, now: float, listening: bool) -> Sequence[Decision]:
        """A decoded room message (Changes, or a whole Content) arrived; ``listening``:
        the persister is auto-loading."""
        self._note_activity(now)
        if self._resyncing:
            # Told to the edit log only after the reload: it came on the new connection,
            # so it says nothing about what the old one lost.
            self._held.append(data)
            return _NO_DECISIONS
        crossed = self.confirming and self._note_remote(data)
        if not listening:
            return _NO_DECISIONS
        if len(data) == 3 and (crossed or self._conflicts(data, now)):
            return (*self._request_verify(), Deliver(data))
        return (Deliver(data),)

    def _note_remote(self, data: Any) -> bool:
        """Tell the edit log; True if the message touched an unconfirmed edit of ours."""
        if len(data) != 3:  # a whole Content: nothing of ours survives it
            self._forget_log()
            return False
        return self.log.note_remote(data)

    def _conflicts(self, changes: Changes, now: float) -> bool:
        recent = self._recent_sent
        if not recent:
            return False
        horizon = now - self.options.conflict_window
        return any(recent.get(key, horizon - 1) >= horizon for key in _received_keys(changes))

    # -- connection and resync ------------------------------------------------------------
    def loading(self) -> None:
        """The Store is being loaded over HTTP (so a later open must resync)."""
        self._load_started = True

    def opened(self, now: float, auto_loading: bool) -> Sequence[Decision]:
        """A connection opened: resync if the Store may have missed broadcasts, else
        send the offline edits."""
        self._epoch += 1
        self._held.clear()  # from an older connection; the coming reload supersedes them
        self._note_activity(now)
        if self.options.enabled and auto_loading and self._load_started:
            self._resyncing = True
            return (Reload(self._epoch),)
        offline, self._offline = self._offline, []
        return self._sends(offline, socket_open=True)

    def is_current(self, epoch: int) -> bool:
        """Is ``epoch`` still the latest connection (else its reload is moot)?"""
        return epoch == self._epoch

    def reload_result(
        self,
        epoch: int,
        content: Content | None,
        *,
        failed: bool,
        auto_saving: bool,
        socket_open: bool,
    ) -> Sequence[Decision]:
        """The resync's ``GET`` answered ``content`` (``None``: the room has no store,
        or ``failed``). Returns what to apply, save and send."""
        if epoch != self._epoch:
            return _NO_DECISIONS
        held, self._held = self._held, []
        offline, self._offline = self._offline, []
        self._resyncing = False
        self.stats["resyncs"] += 1
        self.stats["replayed"] += len(held)
        if content is None:
            if self.confirming:
                for data in held:
                    self._note_remote(data)
            # Offline edits win over the held messages here too (they are sent after).
            apply = Apply(None, (*held, *offline), count_load=False)
            if not failed and auto_saving:
                # The room lost its store (e.g. a server without persistence restarted):
                # initialise it again with ours, then send what is left.
                self._after_put = offline
                return (apply, Put())
            return (apply, *self._sends(offline, socket_open), *self._request_verify(True))
        lost: list[Changes] = []
        if self.confirming:
            lost = self.log.recover(content, [*offline, *self._pending_local()])
            for data in held:
                self._note_remote(data)
            if lost:
                self.stats["recovered"] += len(lost)
                logger.info(
                    "partywidget: re-sending %d change set(s) lost in flight to %s",
                    len(lost),
                    self._store_url,
                )
        apply = Apply(content, (*held, *lost, *offline), count_load=True)
        # What the dead connection swallowed goes first: it was sent before these.
        return (apply, *self._sends([*lost, *offline], socket_open), *self._request_verify(True))

    def put_done(self, error: BaseException | None, socket_open: bool) -> Sequence[Decision]:
        """The :class:`Put` of a resync finished (``error`` if it failed)."""
        decisions: list[Decision] = []
        if error is not None:
            decisions.append(Report(error))
        else:
            self._forget_log()  # all of it is in what we PUT
        after, self._after_put = self._after_put, []
        return (*decisions, *self._sends(after, socket_open), *self._request_verify(True))

    def _sends(self, changes_list: list[Changes], socket_open: bool) -> tuple[Decision, ...]:
        return tuple(Send(c) for c in changes_list if self.hand_over(c, socket_open))

    # -- verification ---------------------------------------------------------------------
    def _request_verify(self, after_resync: bool = False) -> tuple[Decision, ...]:
        """Verify once quiet; :class:`StartVerifier` unless a verifier is running."""
        options = self.options
        if not (options.verify if after_resync else options.verify_on_conflict):
            return ()
        self._verify_requested = True
        if self._verifying:
            return ()
        self._verifying = True
        self._verify_rounds = 0
        self._verify_waiting = False
        self._verify_stop = False
        return (StartVerifier(),)

    def verify_step(self, now: float, can_verify: bool) -> float | str | None:
        """The verifier's next step: a time to sleep until (not quiet yet),
        :data:`VERIFY_NOW` (fetch the room, then :meth:`verify_result`), or ``None``:
        stop. ``can_verify``: auto-loading, socket open, not destroyed."""
        if not self._verify_waiting:
            if self._verify_stop or not (
                self._verify_requested and self._verify_rounds < self.options.max_verify_rounds
            ):
                self.stop_verifier()
                return None
            self._verify_requested = False
            self._verify_waiting = True
        due = self._last_activity + self.options.quiet_period
        if due > now:
            return due
        self._verify_waiting = False
        if self._resyncing or not can_verify:
            self.stop_verifier()  # the next resync asks again
            return None
        self._verify_rounds += 1
        self.stats["verifies"] += 1
        self._verify_count = self._activity_count
        return VERIFY_NOW

    def stop_verifier(self) -> None:
        """The verifier ended (or its transport cancelled it)."""
        self._verifying = False
        self._verify_waiting = False

    def verify_failed(self) -> None:
        """The verifying ``GET`` failed (the transport reports the error): try again."""
        self._verify_requested = True

    def verify_result(
        self,
        content: Content | None,
        store_content: Callable[[], Content],
        local_pending: bool,
    ) -> Sequence[Decision]:
        """The verifying ``GET`` answered; ``local_pending``: the persister holds local
        edits not handed over yet. Confirms the edit log, or reconnects, or adopts."""
        if (
            self._verify_count != self._activity_count
            or self._resyncing
            or self._offline
            or local_pending
        ):
            self._verify_requested = True  # not quiet after all: try again
            return _NO_DECISIONS
        if content is None:
            return _NO_DECISIONS
        decisions: list[Decision] = []
        if self.log.entries:
            lost = self.log.lost(content)
            if lost and self._lost_reconnects < 1:
                # Nothing was sent or received since well before the GET, so what the
                # server lacks was swallowed by a connection that looks open but is dead.
                self._lost_reconnects += 1
                logger.info(
                    "partywidget: sent changes missing on %s: reconnecting", self._store_url
                )
                self._verify_stop = True  # its resync re-sends and verifies again
                return (Reconnect(),)
            if lost:
                # Still missing after a reconnect: the server refuses them.
                decisions.append(
                    Report(
                        RuntimeError(
                            f"{self._store_url} did not keep {len(lost)} sent change set(s) "
                            "after a reconnect: adopting its content"
                        )
                    )
                )
            self._lost_reconnects = 0
            self._forget_log()
        if not changes_is_empty(diff_content(store_content(), content)):
            logger.debug("verify: adopting the server's content for %s", self._store_url)
            self.stats["adopted"] += 1
            decisions.append(Adopt(content))
            self._verify_requested = True  # confirm it settled
        return decisions

    # -- helpers --------------------------------------------------------------------------
    def _note_activity(self, now: float) -> None:
        self._activity_count += 1
        self._last_activity = now

    def _forget_log(self) -> None:
        self.log.forget(keep_history=bool(self._offline or self._pending_local()))


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
