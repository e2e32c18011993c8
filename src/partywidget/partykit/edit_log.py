"""The unconfirmed-edit log: which sent edits the server may not have, and why we think so.

The PartyKit protocol has no acknowledgements. An edit written into a connection that
has silently died is neither on the server nor anywhere else, so every Changes written
to the socket is kept here (coalesced, oldest first) until the server is known to have
it. For each cell/value those Changes touch we also keep its *history*: the value it
had before our first unconfirmed edit (the server's value as far as we know) followed
by every value we sent since. A TCP stream delivers a prefix of what was written, so
the server may hold any value of that history.

Compared with a reloaded room, each kept cell/value is then:

- equal to what we sent last: confirmed;
- an earlier value of its history: our edit never arrived -- *lost*, to be re-sent;
- anything else: someone else wrote it after us (a broadcast we missed): theirs stays.

A row/table deletion is lost only if everything the server has there could be ours.
Each entry is judged only on what later entries did not overwrite (else our own newer
value on the server would look like a loss, and the older one would be re-sent over
it), and cells set after a deletion found lost are re-sent after it.
A broadcast received after our send drops what it touches from the log (the server
ordered it after ours) and restarts the histories at its values.

Pure bookkeeping on plain Changes; :mod:`partywidget.partykit.reconcile` decides when
to consult it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from partywidget.changes import cells_equal, changes_is_empty, copy_changes, merge_changes_into
from partywidget.model import DELETED, Changes, Content

if TYPE_CHECKING:  # the generic persister (asyncio) is not imported at run time
    from partywidget.persister import OldValues

__all__ = ["EditLog"]

_UNKNOWN: Final[Any] = type("_Unknown", (), {"__repr__": lambda self: "<unknown>"})()
_MISSING: Final[Any] = type("_Missing", (), {"__repr__": lambda self: "<missing>"})()

#: Values kept per cell history; a longer one becomes unknown (re-sent when it differs).
_HISTORY_CAP: Final = 16


class EditLog:
    """Sent-but-unconfirmed Changes and the histories of the cells/values they touch."""

    def __init__(self, max_rows_with_old_values: int) -> None:
        self._max_rows = max_rows_with_old_values
        self.entries: list[Changes] = []
        #: Cells/values logged since the last size check (bounds the memory).
        self.size = 0
        self._history: dict[str, Any] = {}
        self._value_history: dict[str, Any] = {}

    # -- recording --------------------------------------------------------------------
    def wants_old_values(self, changes: Changes) -> bool:
        """Read a transaction's old values only when some cell/value it touches has no
        history yet (so a loop editing the same cells pays nothing after its first
        round), and never for transactions over the row limit."""
        limit = self._max_rows
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
            if known:
                known = _table_known(history.get(table_id), table)
        if known and changes[1]:
            value_history = self._value_history
            for value_id in changes[1]:
                if value_id not in value_history:
                    return True
        return not known

    def record_bases(self, changes: Changes, old: OldValues | None) -> None:
        """Start the history of every cell/value a local transaction touched, unless it
        has one: the value it had before our first unconfirmed edit.

        ``old`` is ``None`` for big transactions: their cells get an unknown history
        (re-sent when they differ) unless they have one; a table without any history and
        a row/table they delete are marked unknown as a whole.
        """
        if old is not None:
            self._record_old(old)
            return
        history = self._history
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

    def _record_old(self, old: OldValues) -> None:
        history = self._history
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

    def log_sent(self, changes: Changes) -> None:
        """Keep what was just written to the connection until the server confirms it,
        and append the values sent to the cells' histories."""
        entries = self.entries
        if not (entries and merge_changes_into(entries[-1], changes)):
            entries.append(copy_changes(changes))
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
        self.size += size

    def note_remote(self, changes: Changes) -> bool:
        """A broadcast arrived: the server ordered it after everything we sent before.

        So what it touches is no longer ours to re-send (re-sending would overwrite a
        newer value), and its values are now the server's: the histories restart there.
        Returns whether it touched something still unconfirmed: then the two edits may
        have crossed on the wire (the server applying ours last) -- worth a check.
        """
        tables, values = changes[0], changes[1]
        crossed = False
        for sent in self.entries:
            crossed = _remove_touched(sent, tables, values) or crossed
        if crossed:
            self.entries = [u for u in self.entries if not changes_is_empty(u)]
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
        return crossed

    def forget(self, *, keep_history: bool) -> None:
        """Empty the log (the server has all of it); the histories too unless edits
        are still to be sent (``keep_history``)."""
        self.entries = []
        self.size = 0
        if not keep_history:
            self._history = {}
            self._value_history = {}

    # -- comparing with the server ------------------------------------------------------
    def lost(self, content: Content) -> list[Changes]:
        """What of the log the server (``content``) lacks: the edits lost in flight.

        An entry is judged only on what no later entry overwrote: comparing an early
        value with a cell a later entry changed again would take our own newer value on
        the server for a loss, and re-send the older one after it. And a deletion found
        lost wipes what later entries set in that row/table, so those cells are re-sent
        after it even where the server already has them.
        """
        lost: list[Changes] = []
        wiped: set[tuple[str, ...]] = set()
        for sent, superseded in zip(self.entries, _superseded(self.entries), strict=True):
            part = self._lost_part(sent, content, superseded, wiped)
            if not changes_is_empty(part):
                lost.append(part)
                for table_id, table in part[0].items():
                    if table is DELETED:
                        wiped.add((table_id,))
                        continue
                    for row_id, row in table.items():
                        if row is DELETED:
                            wiped.add((table_id, row_id))
        return lost

    def recover(self, content: Content, unsent: list[Changes]) -> list[Changes]:
        """Sort the log against the reloaded ``content``; return what was lost.

        Afterwards the log is empty (the lost part is logged again when re-sent) and
        the histories restart from ``content``, for the edits still to be sent only.
        """
        lost = self.lost(content)
        self.entries = []
        self.size = 0
        self._rebase(content, [*lost, *unsent])
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

    def _lost_part(
        self,
        sent: Changes,
        content: Content,
        superseded: set[tuple[str, ...]],
        wiped: set[tuple[str, ...]],
    ) -> Changes:
        server_tables, server_values = content
        tables: dict[str, Any] = {}
        for table_id, table in sent[0].items():
            server_table = server_tables.get(table_id)
            if table is DELETED:
                if (
                    ("t", table_id) not in superseded
                    and server_table
                    and all(
                        self._ours(table_id, row_id, row) for row_id, row in server_table.items()
                    )
                ):
                    tables[table_id] = DELETED
                continue
            for row_id, row in table.items():
                server_row = server_table.get(row_id) if server_table else None
                if row is DELETED:
                    if (
                        ("r", table_id, row_id) not in superseded
                        and server_row
                        and self._ours(table_id, row_id, server_row)
                    ):
                        tables.setdefault(table_id, {})[row_id] = DELETED
                    continue
                again = (table_id,) in wiped or (table_id, row_id) in wiped
                for cell_id, cell in row.items():
                    if ("c", table_id, row_id, cell_id) in superseded:
                        continue  # a later entry decides
                    now = server_row.get(cell_id, DELETED) if server_row else DELETED
                    if cells_equal(now, cell):
                        if not again:
                            continue  # confirmed
                    elif not _in_history(self._cell_history(table_id, row_id, cell_id), now):
                        continue  # someone else's later edit
                    tables.setdefault(table_id, {}).setdefault(row_id, {})[cell_id] = cell
        values: dict[str, Any] = {}
        for value_id, value in sent[1].items():
            if ("v", value_id) in superseded:
                continue
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


def _table_known(table_history: Any, table: Mapping[str, Any]) -> bool:
    """Does every cell a table's Changes touch already have a history?"""
    if table_history is None:
        return False
    if table_history is _UNKNOWN:
        return True
    for row_id, row in table.items():
        row_history = table_history.get(row_id)
        if row is DELETED or row_history is None:
            return False
        if row_history is not _UNKNOWN:
            for cell_id in row:
                if cell_id not in row_history:
                    return False
    return True


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


def _remove_touched(sent: Changes, tables: dict[str, Any], values: dict[str, Any]) -> bool:
    """Drop from ``sent`` (in place) every entry an incoming Changes overlaps: a cell
    set or deleted there, or anything inside a row/table deleted on either side.
    Returns whether anything was dropped."""
    sent_tables, sent_values = sent[0], sent[1]
    touched = False
    for table_id, table in tables.items():
        sent_table = sent_tables.get(table_id)
        if sent_table is None:
            continue
        if table is DELETED or sent_table is DELETED:
            del sent_tables[table_id]
            touched = True
            continue
        for row_id, row in table.items():
            sent_row = sent_table.get(row_id)
            if sent_row is None:
                continue
            if row is DELETED or sent_row is DELETED:
                del sent_table[row_id]
                touched = True
                continue
            for cell_id in row:
                if sent_row.pop(cell_id, _MISSING) is not _MISSING:
                    touched = True
            if not sent_row:
                del sent_table[row_id]
        if not sent_table:
            del sent_tables[table_id]
    for value_id in values:
        if sent_values.pop(value_id, _MISSING) is not _MISSING:
            touched = True
    return touched


def _superseded(entries: list[Changes]) -> list[set[tuple[str, ...]]]:
    """For each entry, its keys that a later entry overwrites: a cell set or deleted
    later (by itself, its row or its table), a row or table deleted later, a value."""
    result: list[set[tuple[str, ...]]] = []
    later: set[tuple[str, ...]] = set()
    for changes in reversed(entries):
        mine: set[tuple[str, ...]] = set()
        keys: list[tuple[str, ...]] = []
        for table_id, table in changes[0].items():
            table_key = ("t", table_id)
            if table is DELETED:
                keys.append(table_key)
                if table_key in later:
                    mine.add(table_key)
                continue
            table_gone = table_key in later
            for row_id, row in table.items():
                row_key = ("r", table_id, row_id)
                row_gone = table_gone or row_key in later
                if row is DELETED:
                    keys.append(row_key)
                    if row_gone:
                        mine.add(row_key)
                    continue
                for cell_id in row:
                    cell_key = ("c", table_id, row_id, cell_id)
                    keys.append(cell_key)
                    if row_gone or cell_key in later:
                        mine.add(cell_key)
        for value_id in changes[1]:
            value_key = ("v", value_id)
            keys.append(value_key)
            if value_key in later:
                mine.add(value_key)
        later.update(keys)
        result.append(mine)
    result.reverse()
    return result
