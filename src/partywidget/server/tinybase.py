"""``TinyBasePartyKitServer`` in Python: the reference room logic, plus reconvergence.

Why a port rather than a re-design: a real TinyBase app pointed at this server must work
unchanged, so the HTTP statuses, the ``s`` message handling, the storage key layout and
the byte layout of the GET body follow ``persister-partykit-server`` (tinybase 10.0.1)
closely. The server works on *wire* values (object cells stay ``"\\uFFFD{...}"``
strings), exactly like the reference, so what it stores and sends back is what clients
sent.

Differences, all compatible on the wire:

- When hooks reject part of a change, the sender gets an ordinary ``s`` message with the
  authoritative current values of the rejected items (``"\\uFFFC"`` where absent), so
  its store reconverges instead of silently diverging.
- Content is mirrored in memory per room (loaded once in :meth:`on_start`); every
  accepted change is written to storage in one transaction *before* it is broadcast,
  and the GET body is rebuilt from the mirror in the reference's (sorted storage key)
  order and cached until the next write.
- Hooks run one at a time in payload order (the reference runs them concurrently), and
  the accepted changes keep the payload's key order.
- Hooks see decoded cells (dicts/lists rather than their ``"\\uFFFD"`` strings) and
  :data:`~partywidget.model.DELETED` as the old cell/value when there is none.
- Limits (:class:`~partywidget.server.room.Limits`): over-long ids and over-deep JSON
  are refused (400 for a PUT, dropped and logged for a message).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from partywidget.codec import CodecError, js_dumps, js_loads
from partywidget.jsvalue import js_truthy as _js_truthy
from partywidget.model import DELETED
from partywidget.server.room import Connection, PartyServer, Room, maybe_await, printable
from partywidget.server.storage import StorageTransaction
from partywidget.server.wire_rules import (
    OFF_LOOP_CHARS,
    OFF_LOOP_ITEMS,
    Plan,
    attempted,
    hook_cell,
    is_content_or_changes,
    longest_id,
    marker_misuse,
    parse_changes,
    row_items,
    strip_deleted,
    table_items,
    to_wire,
)

__all__ = ["CORS_HEADERS", "TinyBasePartyKitServer", "TinyBaseServerConfig"]

log = logging.getLogger("partywidget.server")

SET_CHANGES: Final = "s"
HAS_STORE: Final = "hasStore"
CORS_HEADERS: Final[Mapping[str, str]] = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "*",
    "Access-Control-Allow-Headers": "*",
}
_TEXT: Final = "text/plain;charset=UTF-8"

HOOKS: Final = (
    "can_set_table",
    "can_del_table",
    "can_set_row",
    "can_del_row",
    "can_set_cell",
    "can_del_cell",
    "can_set_value",
    "can_del_value",
)


@dataclass(frozen=True)
class TinyBaseServerConfig:
    """The reference's ``config``: where the store lives over HTTP, how messages and
    storage keys are prefixed, and the headers of every HTTP response."""

    store_path: str = "/store"
    message_prefix: str = ""
    storage_prefix: str = ""
    response_headers: Mapping[str, str] = field(default_factory=lambda: dict(CORS_HEADERS))


class TinyBasePartyKitServer(PartyServer):
    """A room holding one TinyBase Store, synced by ``createPartyKitPersister`` clients.

    Subclass it to change ``config`` (a :class:`TinyBaseServerConfig` or a dict of its
    fields) or to override the ``can_*`` hooks, which may be ``async`` or plain, take the
    reference's arguments in snake_case and return whether to accept::

        class Server(TinyBasePartyKitServer):
            config = TinyBaseServerConfig(store_path="/db")

            async def can_set_cell(self, table_id, row_id, cell_id, cell,
                                   initial_save, request_or_connection, old_cell):
                return table_id != "locked"

    ``request_or_connection`` is the Starlette :class:`~starlette.requests.Request` of a
    PUT or the :class:`~partywidget.server.room.Connection` of a message, so hooks can
    authorise with ``.query_params`` or headers.
    """

    Config: ClassVar = TinyBaseServerConfig
    config: TinyBaseServerConfig = TinyBaseServerConfig()

    def __init__(self, party: Room) -> None:
        super().__init__(party)
        config: Any = self.config
        if isinstance(config, Mapping):
            config = TinyBaseServerConfig(**config)
        self.config = config
        self._lock = asyncio.Lock()
        self._tables: dict[str, dict[str, dict[str, Any]]] = {}
        self._values: dict[str, Any] = {}
        self._has_store = False
        self._body: str | None = None
        base = TinyBasePartyKitServer
        self._hooked = {
            name: name in vars(self) or getattr(type(self), name) is not getattr(base, name)
            for name in HOOKS
        }

    # ----------------------------------------------------------------- hooks (reference)

    async def can_set_table(
        self, table_id: str, initial_save: bool, request_or_connection: Any
    ) -> bool:
        return True

    async def can_del_table(self, table_id: str, connection: Connection) -> bool:
        return True

    async def can_set_row(
        self, table_id: str, row_id: str, initial_save: bool, request_or_connection: Any
    ) -> bool:
        return True

    async def can_del_row(self, table_id: str, row_id: str, connection: Connection) -> bool:
        return True

    async def can_set_cell(
        self,
        table_id: str,
        row_id: str,
        cell_id: str,
        cell: Any,
        initial_save: bool,
        request_or_connection: Any,
        old_cell: Any,
    ) -> bool:
        return True

    async def can_del_cell(
        self, table_id: str, row_id: str, cell_id: str, connection: Connection
    ) -> bool:
        return True

    async def can_set_value(
        self,
        value_id: str,
        value: Any,
        initial_save: bool,
        request_or_connection: Any,
        old_value: Any,
    ) -> bool:
        return True

    async def can_del_value(self, value_id: str, connection: Connection) -> bool:
        return True

    async def _allow(self, name: str, *args: Any) -> bool:
        if not self._hooked[name]:
            return True
        return _js_truthy(await maybe_await(getattr(self, name)(*args)))

    # ----------------------------------------------------------------- state

    @property
    def has_store(self) -> bool:
        """Whether the room has been initialised by a PUT (``hasStore`` in storage)."""
        return self._has_store

    def get_content(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """A copy of the room's content, in wire form (as the GET body carries it)."""
        tables = {
            t: {r: dict(row) for r, row in table.items()} for t, table in self._tables.items()
        }
        return tables, dict(self._values)

    def _cell_key(self, table_id: str, row_id: str, cell_id: str) -> str:
        return self.config.storage_prefix + "t" + js_dumps([table_id, row_id, cell_id])[1:-1]

    def _value_key(self, value_id: str) -> str:
        return self.config.storage_prefix + "v" + value_id

    async def on_start(self) -> None:
        """Load the mirror from storage once, parsing keys as ``loadStoreFromStorage``."""
        prefix = self.config.storage_prefix
        entries = await self.party.storage.list(prefix)
        tables: dict[str, dict[str, dict[str, Any]]] = {}
        values: dict[str, Any] = {}
        n = len(prefix)
        for key, value in entries.items():
            if len(key) <= n:
                continue
            kind, ids = key[n], key[n + 1 :]
            if kind == "t":
                try:
                    cell_ids = js_loads("[" + ids + "]")
                except CodecError:
                    continue
                if (
                    type(cell_ids) is list
                    and len(cell_ids) == 3
                    and all(type(i) is str for i in cell_ids)
                ):
                    t, r, c = cell_ids
                    tables.setdefault(t, {}).setdefault(r, {})[c] = value
            elif kind == "v":
                values[ids] = value
        self._tables, self._values = tables, values
        self._has_store = _js_truthy(entries.get(prefix + HAS_STORE, False))
        self._body = None

    def content_body(self) -> str:
        """The GET body: ``[tables, values]`` as the reference builds it, or ``""``.

        The reference lists storage keys in sorted order and inserts cells in that
        order; JSON.stringify then lists integer-like keys first (js_dumps does too).
        Sorting by the JSON of ``[table, row, cell]`` is sorting the storage keys, and
        that is sorting tables, then rows within a table, then cells within a row, each
        by the JSON text of its id: no id's JSON string is a proper prefix of another's
        (it ends at its first unescaped quote), so the first difference between two
        keys always falls within the first differing id. Sorting level by level needs
        the JSON of each distinct id once, not of every cell's key (a 1M-cell room has
        ~100k distinct ids).
        """
        if self._body is None:
            if not self._has_store:
                self._body = ""
            else:
                id_json: dict[str, str] = {}

                def json_of(id_: str) -> str:
                    text = id_json.get(id_)
                    if text is None:
                        text = id_json[id_] = js_dumps(id_)
                    return text

                tables: dict[str, dict[str, dict[str, Any]]] = {}
                for t in sorted(self._tables, key=json_of):
                    table = self._tables[t]
                    tables[t] = {
                        r: {c: table[r][c] for c in sorted(table[r], key=json_of)}
                        for r in sorted(table, key=json_of)
                    }
                values = {v: self._values[v] for v in sorted(self._values)}
                self._body = js_dumps([tables, values])
        return self._body

    # ----------------------------------------------------------------- HTTP

    def _response(self, status: int, body: str | None = None) -> Response:
        return Response(
            body,
            status_code=status,
            headers=dict(self.config.response_headers),
            media_type=_TEXT if body is not None else None,
        )

    async def on_request(self, request: Request) -> Response:
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("latin-1").split("?")[0] if raw_path else request.url.path
        if not path.endswith(self.config.store_path):
            return self._response(404)
        body = await request.body()
        if request.method == "PUT":
            text = body.decode("utf-8", "replace").removeprefix("\ufeff")
            try:
                content = js_loads(text, max_depth=self.party.limits.max_json_depth)
            except CodecError as error:
                log.warning("%s: PUT refused (400): %s", self.party.label, error)
                return self._response(400)
            if not is_content_or_changes(content, False):
                log.warning("%s: PUT refused (400): not [tables, values]", self.party.label)
                return self._response(400)
            if longest_id(content[0], content[1]) > self.party.limits.max_id_length:
                log.warning("%s: PUT refused (400): id too long", self.party.label)
                return self._response(400)
            misuse = marker_misuse(content[0], content[1])
            if misuse is not None:
                log.warning("%s: PUT refused (400): %s", self.party.label, misuse)
                return self._response(400)
            async with self._lock:
                if self._has_store:
                    return self._response(205)
                plan = await self._plan(content[0], content[1], True, request)
                try:
                    saved = await self._commit(plan, initial=True)
                except Exception as error:
                    log.error(
                        "%s: storage write failed (%s: %s): PUT not stored (503)",
                        self.party.label,
                        type(error).__name__,
                        error,
                    )
                    return self._response(503)
                return self._response(201 if saved else 205)
        return self._response(200, self.content_body())

    # ----------------------------------------------------------------- WebSocket

    async def on_message(self, message: str, connection: Connection) -> None:
        prefix = self.config.message_prefix
        label = f"{self.party.label} id={printable(connection.id)}"
        if len(message) <= len(prefix) or not message.startswith(prefix):
            log.info("%s: ignored message without prefix %r", label, prefix)
            return
        if message[len(prefix)] != SET_CHANGES:
            log.info("%s: ignored message of type %r", label, message[len(prefix)])
            return
        text = message[len(prefix) + 1 :]
        limits = self.party.limits
        if len(text) > OFF_LOOP_CHARS:
            # Parsing and checking a big message is pure CPU work: in a thread, the
            # event loop keeps serving other rooms (it gets the GIL back every few ms).
            payload, problem = await asyncio.to_thread(
                parse_changes, text, limits.max_json_depth, limits.max_id_length
            )
        else:
            payload, problem = parse_changes(text, limits.max_json_depth, limits.max_id_length)
        if problem is not None:
            log.warning("%s: rejected changes: %s", label, problem)
            return
        async with self._lock:
            if not connection.active:
                log.info("%s: dropped changes: the connection was replaced or closed", label)
                return
            if not self._has_store:
                log.info("%s: dropped changes: the room has no store yet", label)
                return
            plan = await self._plan(payload[0], payload[1], False, connection)
            try:
                committed = await self._commit(plan, initial=False)
            except Exception as error:
                # Nothing was stored: broadcast nothing, and tell the sender what *is*
                # stored for everything it tried to change, so it does not keep a value
                # nobody else has (the same reconverging message as a hook rejection).
                tried = attempted(plan)
                tables, values = self._current_values(tried)
                log.error(
                    "%s: storage write failed (%s: %s): changes not stored, not "
                    "broadcast; sent the sender the stored values of %d item(s)",
                    label,
                    type(error).__name__,
                    error,
                    len(tried),
                )
                if tables or values:
                    connection.send(prefix + SET_CHANGES + js_dumps(to_wire(tables, values)))
                return
            if not committed:
                return
            if plan.accepted_tables or plan.accepted_values:
                wire = to_wire(*self._accepted(plan))
                if len(text) > OFF_LOOP_CHARS:
                    encoded = await asyncio.to_thread(js_dumps, wire)
                else:
                    encoded = js_dumps(wire)
                self.party.broadcast(prefix + SET_CHANGES + encoded, [connection.id])
            if plan.rejected:
                tables, values = self._current_values(plan.rejected)
                log.info(
                    "%s: hooks rejected %d item(s); sending current values",
                    label,
                    len(plan.rejected),
                )
                if tables or values:
                    connection.send(prefix + SET_CHANGES + js_dumps(to_wire(tables, values)))

    @staticmethod
    def _accepted(plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
        return plan.accepted_tables, plan.accepted_values

    # ----------------------------------------------------------------- saving

    async def _plan(
        self,
        tables: dict[str, Any],
        values: dict[str, Any],
        initial: bool,
        who: HTTPConnection | Connection,
    ) -> Plan:
        """Pass every item through the hooks, as the reference's ``saveStore`` does."""
        plan = Plan()
        rejected = plan.rejected
        allow = self._allow
        seen = 0
        for table_id, table in tables.items():
            if table is DELETED:
                if table_id not in self._tables:
                    continue  # nothing to delete: not stored, not broadcast
                if await allow("can_del_table", table_id, who):
                    plan.del_tables.append(table_id)
                    plan.accepted_tables[table_id] = DELETED
                else:
                    rejected.append(("table", table_id))
            elif await allow("can_set_table", table_id, initial, who):
                for row_id, row in table.items():
                    if row is DELETED:
                        if row_id not in self._tables.get(table_id, {}):
                            continue
                        if await allow("can_del_row", table_id, row_id, who):
                            plan.del_rows.append((table_id, row_id))
                            plan.accepted_tables.setdefault(table_id, {})[row_id] = DELETED
                        else:
                            rejected.append(("row", table_id, row_id))
                    elif await allow("can_set_row", table_id, row_id, initial, who):
                        seen += len(row)
                        if seen >= OFF_LOOP_ITEMS:  # a big plan lets other rooms run
                            seen = 0
                            await asyncio.sleep(0)
                        await self._plan_cells(plan, table_id, row_id, row, initial, who)
                    else:
                        rejected.extend(row_items(table_id, row_id, row))
            else:
                rejected.extend(table_items(table_id, table))
        await self._plan_values(plan, values, initial, who)
        if initial:
            plan.rejected.clear()  # a PUT has no socket to reconverge through
            # Content without a cell or value (``[{"t":{}},{}]`` too) is the empty store.
            empty = not values and not any(
                row for table in tables.values() for row in table.values()
            )
            plan.has_store = empty or bool(plan.accepted_tables or plan.accepted_values)
        return plan

    async def _plan_cells(
        self,
        plan: Plan,
        table_id: str,
        row_id: str,
        row: dict[str, Any],
        initial: bool,
        who: HTTPConnection | Connection,
    ) -> None:
        """The cell hooks of one row whose row hook allowed it."""
        allow = self._allow
        for cell_id, cell in row.items():
            ids = (table_id, row_id, cell_id)
            if cell is DELETED:
                if self._old_cell(*ids) is DELETED:
                    continue
                if await allow("can_del_cell", *ids, who):
                    plan.del_cells.append(ids)
                    plan.accepted_row(table_id, row_id)[cell_id] = DELETED
                else:
                    plan.rejected.append(("cell", *ids, False))
            elif not self._hooked["can_set_cell"] or await allow(
                "can_set_cell",
                *ids,
                hook_cell(cell),
                initial,
                who,
                hook_cell(self._old_cell(*ids)),
            ):
                cell = strip_deleted(cell)
                plan.set_cells[ids] = cell
                plan.accepted_row(table_id, row_id)[cell_id] = cell
            else:
                plan.rejected.append(("cell", *ids, True))

    async def _plan_values(
        self,
        plan: Plan,
        values: dict[str, Any],
        initial: bool,
        who: HTTPConnection | Connection,
    ) -> None:
        """The value hooks, after every table's."""
        allow = self._allow
        for value_id, value in values.items():
            if value is DELETED:
                if value_id not in self._values:
                    continue
                if await allow("can_del_value", value_id, who):
                    plan.del_values.append(value_id)
                    plan.accepted_values[value_id] = DELETED
                else:
                    plan.rejected.append(("value", value_id, False))
            elif not self._hooked["can_set_value"] or await allow(
                "can_set_value",
                value_id,
                hook_cell(value),
                initial,
                who,
                hook_cell(self._values.get(value_id, DELETED)),
            ):
                value = strip_deleted(value)
                plan.set_values[value_id] = value
                plan.accepted_values[value_id] = value
            else:
                plan.rejected.append(("value", value_id, True))

    def _old_cell(self, table_id: str, row_id: str, cell_id: str) -> Any:
        return self._tables.get(table_id, {}).get(row_id, {}).get(cell_id, DELETED)

    async def _commit(self, plan: Plan, *, initial: bool) -> bool:
        """Write the plan in one storage transaction, then (only then) update the mirror."""
        if len(plan.set_cells) + len(plan.del_cells) > OFF_LOOP_ITEMS:
            # Pure work over the plan and the mirror, which only this room's lock
            # holder changes (on the loop, after this returns): safe in a thread.
            to_delete, to_set = await asyncio.to_thread(self._storage_keys, plan)
        else:
            to_delete, to_set = self._storage_keys(plan)
        if plan.has_store:
            to_set[self.config.storage_prefix + HAS_STORE] = 1
        has_store_key = self.config.storage_prefix + HAS_STORE

        def write(txn: StorageTransaction) -> bool:
            if initial and _js_truthy(txn.get(has_store_key)):
                return False
            if to_delete:
                txn.delete_many(to_delete)
            if to_set:
                txn.put_many(to_set)
            return True

        if not to_delete and not to_set and not initial:
            return True
        if not await self.party.storage.transaction(write):
            self._has_store = True
            return False
        self._apply(plan)
        return True

    def _storage_keys(self, plan: Plan) -> tuple[list[str], dict[str, Any]]:
        """The storage keys the plan deletes, and the keys and values it sets."""
        cell_key, value_key = self._cell_key, self._value_key
        to_delete: list[str] = []
        for t in plan.del_tables:
            for r, row in self._tables.get(t, {}).items():
                to_delete.extend(cell_key(t, r, c) for c in row)
        for t, r in plan.del_rows:
            to_delete.extend(cell_key(t, r, c) for c in self._tables.get(t, {}).get(r, {}))
        to_delete.extend(cell_key(*ids) for ids in plan.del_cells)
        to_delete.extend(value_key(v) for v in plan.del_values)
        to_set: dict[str, Any] = {cell_key(*ids): cell for ids, cell in plan.set_cells.items()}
        to_set.update((value_key(v), value) for v, value in plan.set_values.items())
        return to_delete, to_set

    def _apply(self, plan: Plan) -> None:
        tables, values = self._tables, self._values
        for t in plan.del_tables:
            tables.pop(t, None)
        for t, r in plan.del_rows:
            table = tables.get(t)
            if table is not None:
                table.pop(r, None)
                if not table:
                    del tables[t]
        for t, r, c in plan.del_cells:
            row = tables.get(t, {}).get(r)
            if row is not None:
                row.pop(c, None)
                if not row:
                    del tables[t][r]
                    if not tables[t]:
                        del tables[t]
        for v in plan.del_values:
            values.pop(v, None)
        for (t, r, c), cell in plan.set_cells.items():
            tables.setdefault(t, {}).setdefault(r, {})[c] = cell
        values.update(plan.set_values)
        if plan.has_store:
            self._has_store = True
        self._body = None

    def _current_values(
        self, rejected: list[tuple[Any, ...]]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Authoritative values of rejected items: what the sender needs to reconverge."""
        tables: dict[str, Any] = {}
        values: dict[str, Any] = {}
        for item in rejected:
            kind = item[0]
            if kind == "table":
                for r, row in self._tables.get(item[1], {}).items():
                    tables.setdefault(item[1], {}).setdefault(r, {}).update(row)
            elif kind == "row":
                current_row = self._tables.get(item[1], {}).get(item[2])
                if current_row:
                    tables.setdefault(item[1], {}).setdefault(item[2], {}).update(current_row)
            elif kind == "cell":
                _, t, r, c, was_set = item
                current = self._old_cell(t, r, c)
                if current is not DELETED or was_set:
                    tables.setdefault(t, {}).setdefault(r, {})[c] = current
            else:
                _, v, was_set = item
                current = self._values.get(v, DELETED)
                if current is not DELETED or was_set:
                    values[v] = current
        return tables, values
