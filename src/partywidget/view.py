"""The kernel side of the kernel <-> view protocol, as a pure model: dicts in, dicts out.

A widget's front-end (``js/``) mirrors the kernel's Store in a TinyBase JS Store fed by
custom comm messages. This module decides what those messages are; the widget only
sends them and applies the view's edits to its Store, so every rule here is tested with
plain data (``tests/unit/test_view.py``). ``js/protocol.ts`` is its mirror on the other
side and defines the same message kinds.

* view -> kernel ``{"kind": "snapshot?", "view": id}`` when a view renders (or detects a
  gap); the kernel answers with the whole content in chunks
  ``{"kind": "snapshot", "to": id, "sid", "seq", "part", "parts", "content"}``;
* kernel -> views ``{"kind": "changes", "seq", "changes"}``: one per Store transaction
  (local or remote), so a one-cell change costs ~100 bytes whatever the table size;
* view -> kernel ``{"kind": "changes", "view", "seq", "changes"}``: the view's edits.

Content and Changes are encoded as on the PartyKit wire (``partywidget.codec``). Each
direction numbers its messages; a receiver seeing anything but last+1 asks for (or
sends) a fresh snapshot, which heals lost, duplicated or early messages. A snapshot
request restarts the numbering of that view's edits (from 1), on both sides. Edits the Store
refuses (schema, read-only) are answered with the Store's actual cells, so a view never
drifts from the kernel.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from .codec import CodecError, decode_changes, encode_changes, encode_content
from .jsvalue import cells_equal as _same
from .model import DELETED, Changes, Content

__all__ = [
    "CHANGES",
    "SNAPSHOT",
    "SNAPSHOT_CHUNK_CELLS",
    "SNAPSHOT_REQUEST",
    "Received",
    "StoreReader",
    "ViewProtocol",
    "corrections",
]

#: Message kinds (the ``kind`` field); ``js/protocol.ts`` defines the same three.
SNAPSHOT_REQUEST: Final = "snapshot?"
SNAPSHOT: Final = "snapshot"
CHANGES: Final = "changes"

#: Cells per snapshot message: ~20k cells is a few hundred kB, small enough for the comm.
SNAPSHOT_CHUNK_CELLS = 20_000

Message = dict[str, Any]


class StoreReader(Protocol):
    """What :func:`corrections` reads of the Store after applying a view's edits."""

    def has_table(self, table_id: str, /) -> bool: ...
    def get_table(self, table_id: str, /) -> Any: ...
    def has_row(self, table_id: str, row_id: str, /) -> bool: ...
    def get_row(self, table_id: str, row_id: str, /) -> Any: ...
    def has_cell(self, table_id: str, row_id: str, cell_id: str, /) -> bool: ...
    def get_cell(self, table_id: str, row_id: str, cell_id: str, /) -> Any: ...
    def has_value(self, value_id: str, /) -> bool: ...
    def get_value(self, value_id: str, /) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Received:
    """What to do about one message from a view.

    ``changes``: apply them to the Store, then send :meth:`ViewProtocol.corrections`.
    ``resync``: then send the view a fresh snapshot (it asked, or its stream had a gap,
    or its edits could not be taken). ``problem`` says why edits were not taken (logged).
    """

    view: str
    changes: Changes | None = None
    resync: bool = False
    problem: str = ""


def corrections(requested: Changes, store: StoreReader) -> Changes | None:
    """The Store's actual cells and values wherever they differ from what a view asked
    for (after the Store applied, or refused, the request); None when all were taken."""
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
                if not _same(actual, cell):
                    tables.setdefault(table_id, {}).setdefault(row_id, {})[cell_id] = actual
    values: dict[str, Any] = {}
    for value_id, value in requested[1].items():
        actual = store.get_value(value_id) if store.has_value(value_id) else DELETED
        if not _same(actual, value):
            values[value_id] = actual
    return (tables, values, 1) if tables or values else None


def chunk_tables(tables: Mapping[str, Any], chunk_cells: int) -> list[dict[str, Any]]:
    """Split tables into parts of about ``chunk_cells`` cells (whole rows; at least one
    part, possibly empty)."""
    parts: list[dict[str, Any]] = []
    part: dict[str, Any] = {}
    cells = 0
    for table_id, table in tables.items():
        for row_id, row in table.items():
            part.setdefault(table_id, {})[row_id] = row
            cells += len(row)
            if cells >= chunk_cells:
                parts.append(part)
                part, cells = {}, 0
    if part or not parts:
        parts.append(part)
    return parts


def _random_sid() -> str:
    return uuid.uuid4().hex[:8]


class ViewProtocol:
    """The kernel's half of the protocol with all views of one widget.

    It numbers the kernel -> views stream, checks each view's stream, builds snapshots
    and deltas. It never touches a Store or a comm: the widget feeds it Store Changes
    and view messages and sends what it returns. ``new_sid`` makes snapshot ids
    deterministic in tests.
    """

    def __init__(
        self,
        chunk_cells: int | None = None,
        new_sid: Callable[[], str] = _random_sid,
    ) -> None:
        self.chunk_cells = SNAPSHOT_CHUNK_CELLS if chunk_cells is None else chunk_cells
        self.seq = 0  #: last number of the kernel -> views stream
        self.views: dict[str, int] = {}  #: view id -> last number seen from it
        self._new_sid = new_sid
        #: Messages sent: snapshots, their parts, and deltas (tests, benchmarks).
        self.snapshots = 0
        self.snapshot_parts = 0
        self.deltas = 0

    # -- kernel -> views ------------------------------------------------------------------

    def delta(self, changes: Changes) -> list[Message]:
        """The message for one Store transaction; none while no view has asked for a
        snapshot (a view starts from one, so there is nothing to keep up to date)."""
        if not self.views:
            return []
        return [self._delta(changes)]

    def _delta(self, changes: Changes) -> Message:
        self.seq += 1
        self.deltas += 1
        return {"kind": CHANGES, "seq": self.seq, "changes": encode_changes(changes)}

    def snapshot(self, view: str | None, content: Content) -> list[Message]:
        """The whole ``content`` for ``view`` (None: every view), in chunks; the view
        continues the delta stream after ``seq``."""
        tables, values = content
        parts = chunk_tables(tables, self.chunk_cells)
        sid = self._new_sid()
        self.snapshots += 1
        self.snapshot_parts += len(parts)
        return [
            {
                "kind": SNAPSHOT,
                "to": view,
                "sid": sid,
                "seq": self.seq,
                "part": index,
                "parts": len(parts),
                "content": encode_content((part, values if index == 0 else {})),
            }
            for index, part in enumerate(parts)
        ]

    def corrections(self, requested: Changes, store: StoreReader) -> list[Message]:
        """A delta of the Store's actual cells where it did not take a view's edits."""
        fixed = corrections(requested, store)
        return [] if fixed is None else [self._delta(fixed)]

    # -- views -> kernel ------------------------------------------------------------------

    def receive(self, message: Any, *, read_only: bool = False) -> Received | None:
        """Decide what to do about a message from a view (None: not ours, ignore it)."""
        if not isinstance(message, dict):
            return None
        kind = message.get("kind")
        view = str(message.get("view", ""))
        if kind == SNAPSHOT_REQUEST:
            self.views[view] = 0
            return Received(view, resync=True)
        if kind != CHANGES:
            return None
        seq = message.get("seq")
        expected = self.views.get(view, 0) + 1
        self.views[view] = seq if isinstance(seq, int) else expected
        try:
            changes = decode_changes(str(message.get("changes", "")))
        except CodecError as error:
            return Received(view, resync=True, problem=f"bad changes from the view: {error}")
        if read_only:
            return Received(view, resync=True, problem="the widget is read-only")
        return Received(view, changes=changes, resync=seq != expected)

    def forget(self) -> None:
        """Drop every view (the widget closed)."""
        self.views.clear()
