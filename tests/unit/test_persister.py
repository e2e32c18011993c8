"""The generic persister core against a real in-memory transport.

The transport here is not a mock: ``MemoryRoom`` is a complete persistence target (a
shared Content, full saves, change application and fan-out to the other subscribers),
which is exactly what the core talks to. It applies Changes with its own small
last-writer-wins (:func:`lww_applied`), not the project's, so a bug there cannot hide
here. Tests assert on what ends up in the room and in the Stores, and on the messages
the room saw.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable
from typing import Any

import pytest

from partywidget.changes import copy_changes, merge_changes_into
from partywidget.model import DELETED, Changes, Content
from partywidget.persister import (
    OldValues,
    Persister,
    PersisterHooks,
    Status,
    create_custom_persister,
)
from partywidget.store import Store, create_store

pytestmark = pytest.mark.timeout(60)


def lww_applied(content: Any, changes: Any) -> Content:
    """``content`` after ``changes``: later entries overwrite, DELETED removes, rows and
    tables left empty vanish (TinyBase's rules, written independently)."""
    tables, values = copy.deepcopy(content[0]), dict(content[1])
    for table_id, table in changes[0].items():
        if table is DELETED:
            tables.pop(table_id, None)
            continue
        for row_id, row in table.items():
            if row is DELETED:
                tables.get(table_id, {}).pop(row_id, None)
                continue
            target = tables.setdefault(table_id, {}).setdefault(row_id, {})
            for cell_id, cell in row.items():
                if cell is DELETED:
                    target.pop(cell_id, None)
                else:
                    target[cell_id] = cell
            if not target:
                del tables[table_id][row_id]
        if table_id in tables and not tables[table_id]:
            del tables[table_id]
    for value_id, value in changes[1].items():
        if value is DELETED:
            values.pop(value_id, None)
        else:
            values[value_id] = value
    return tables, values


class MemoryRoom:
    """A shared persistence target: one Content, many subscribers, an audit log."""

    def __init__(self, content: Content | None = None) -> None:
        self.content: Content | None = content
        self.listeners: dict[int, Callable[[Any, Any], Any]] = {}
        self.full_saves: list[Content] = []
        self.change_saves: list[Changes] = []
        #: "full"/"changes" in the order saves completed.
        self.events: list[str] = []
        self.gets = 0
        self._next = 0
        # Tests close this gate to hold a save (PUT) in flight.
        self.save_gate = asyncio.Event()
        self.save_gate.set()
        self.fail_get: BaseException | None = None

    def transport(
        self,
    ) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
        me: dict[str, int] = {}

        async def get_persisted() -> Content | None:
            self.gets += 1
            await asyncio.sleep(0)
            if self.fail_get is not None:
                raise self.fail_get
            return self.content

        async def set_persisted(get_content: Callable[[], Content], changes: Any) -> None:
            if changes is None:
                await self.save_gate.wait()
                content = get_content()
                self.full_saves.append(content)
                self.events.append("full")
                if self.content is None:
                    self.content = content
                return
            self.change_saves.append(copy_changes(changes))
            self.events.append("changes")
            self.content = lww_applied(self.content or ({}, {}), changes)
            for handle, listener in list(self.listeners.items()):
                if handle != me.get("handle"):
                    listener(None, copy_changes(changes))

        def add_listener(listener: Callable[[Any, Any], Any]) -> int:
            self._next += 1
            me["handle"] = self._next
            self.listeners[self._next] = listener
            return self._next

        def del_listener(handle: int) -> None:
            self.listeners.pop(handle, None)

        return get_persisted, set_persisted, add_listener, del_listener


def make(
    room: MemoryRoom, store: Store | None = None, **kwargs: Any
) -> tuple[Store, Persister, list[BaseException]]:
    store = store if store is not None else create_store()
    errors: list[BaseException] = []
    persister = create_custom_persister(store, *room.transport(), errors.append, **kwargs)
    return store, persister, errors


async def settle(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (yielding to the loop) until ``condition()`` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


# -- load / save ------------------------------------------------------------------------
async def test_load_replaces_store_content() -> None:
    room = MemoryRoom(({"t": {"r": {"c": 1}}}, {"v": "x"}))
    store, persister, errors = make(room)
    store.set_cell("old", "r", "c", 2)
    assert await persister.load() is persister
    assert store.get_content() == ({"t": {"r": {"c": 1}}}, {"v": "x"})
    assert persister.get_stats() == {"loads": 1, "saves": 0}
    assert errors == []


async def test_load_uses_initial_content_only_when_nothing_persisted() -> None:
    room = MemoryRoom()
    store, persister, _ = make(room)
    await persister.load(({"t": {"r": {"c": 1}}}, {}))
    assert store.get_tables() == {"t": {"r": {"c": 1}}}
    await persister.load(lambda: ({}, {"v": 1}))
    assert store.get_content() == ({}, {"v": 1})
    room.content = ({"a": {"b": {"c": True}}}, {})
    await persister.load(({"ignored": {"r": {"c": 1}}}, {}))
    assert store.get_tables() == {"a": {"b": {"c": True}}}


async def test_load_error_is_reported_and_initial_content_used() -> None:
    room = MemoryRoom()
    room.fail_get = ConnectionRefusedError("nobody home")
    store, persister, errors = make(room)
    await persister.load(({}, {"v": 1}))
    assert store.get_values() == {"v": 1}
    assert len(errors) == 1 and isinstance(errors[0], ConnectionRefusedError)


async def test_save_persists_full_content_and_status_sequence() -> None:
    room = MemoryRoom()
    store, persister, _ = make(room)
    seen: list[Status] = []
    listener_id = persister.add_status_listener(lambda p, s: seen.append(s))
    store.set_cell("t", "r", "c", "é").set_value("v", [1, {"a": None}])
    await persister.save()
    assert room.content == ({"t": {"r": {"c": "é"}}}, {"v": [1, {"a": None}]})
    await persister.load()
    assert seen == [Status.SAVING, Status.IDLE, Status.LOADING, Status.IDLE]
    assert persister.del_listener(listener_id) is persister
    await persister.save()
    assert len(seen) == 4
    assert persister.get_status() is Status.IDLE
    assert persister.get_store() is store


# -- auto-load / auto-save ----------------------------------------------------------------
async def test_two_stores_sync_through_the_room() -> None:
    room = MemoryRoom()
    a, pa, errors_a = make(room)
    b, pb, errors_b = make(room)
    a.set_cell("t", "r", "c", 1)
    await pa.start_auto_persisting()
    await pb.start_auto_persisting()
    assert b.get_content() == a.get_content()
    assert pa.is_auto_loading() and pa.is_auto_saving()

    a.set_cell("t", "r2", "c", {"json": [1, 2]})
    b.set_value("v", False)
    await settle(lambda: a.get_content() == b.get_content() == room.content)
    a.del_row("t", "r")
    await settle(lambda: b.get_row_ids("t") == ["r2"])
    b.del_tables()
    await settle(lambda: a.get_tables() == {})
    assert a.get_content() == b.get_content() == room.content == ({}, {"v": False})
    assert errors_a == errors_b == []


async def test_remote_changes_are_not_echoed() -> None:
    room = MemoryRoom()
    a, pa, _ = make(room)
    b, pb, _ = make(room)
    await pa.start_auto_persisting()
    await pb.start_auto_persisting()
    a.set_cell("t", "r", "c", 1)
    await settle(lambda: b.get_cell("t", "r", "c") == 1)
    # b's own next edit reaches a only after anything b sent before it, so an echo
    # of a's edit would be in the room's log before this marker.
    b.set_value("marker", True)
    await settle(lambda: a.get_value("marker") is True)
    assert room.change_saves == [({"t": {"r": {"c": 1}}}, {}, 1), ({}, {"marker": True}, 1)]


async def test_edits_in_one_loop_turn_are_coalesced() -> None:
    room = MemoryRoom()
    a, pa, _ = make(room)
    b, pb, _ = make(room)
    await pa.start_auto_persisting()
    await pb.start_auto_persisting()
    for i in range(1000):
        a.set_cell("t", str(i), "c", i)
    a.set_value("done", True)
    await settle(lambda: b.get_value("done") is True)
    assert len(room.change_saves) == 1
    assert len(b.get_row_ids("t")) == 1000
    # Separate turns are separate messages.
    a.set_cell("t", "0", "c", "x")
    await settle(lambda: len(room.change_saves) == 2)
    a.set_cell("t", "1", "c", "y")
    await settle(lambda: len(room.change_saves) == 3)
    await settle(lambda: b.get_content() == a.get_content())


async def test_coalescing_off_sends_every_transaction() -> None:
    room = MemoryRoom()
    a, pa, _ = make(room, coalesce=False)
    await pa.start_auto_save()
    for i in range(5):
        a.set_cell("t", str(i), "c", i)
    await settle(lambda: len(room.change_saves) == 5)


async def test_delete_then_set_in_one_turn_keeps_order() -> None:
    room = MemoryRoom()
    a, pa, _ = make(room)
    b, pb, _ = make(room)
    a.set_row("t", "r", {"x": 1, "y": 2})
    await pa.start_auto_persisting()
    await pb.start_auto_persisting()
    a.del_row("t", "r")
    a.set_cell("t", "r", "x", 3)  # cannot merge with the row deletion
    await settle(lambda: b.get_row("t", "r") == {"x": 3})
    assert room.content == ({"t": {"r": {"x": 3}}}, {})
    assert len(room.change_saves) == 2


async def test_edits_during_initial_save_are_sent_afterwards() -> None:
    room = MemoryRoom(({"t": {"r": {"c": 0}}}, {}))
    a, pa, _ = make(room)
    await pa.load()
    room.save_gate.clear()
    starting = asyncio.ensure_future(pa.start_auto_save())
    await settle(lambda: pa.get_status() is Status.SAVING)
    a.set_cell("t", "r", "c", 1)  # while the initial save is in flight
    assert pa.has_pending_changes()
    room.save_gate.set()
    await starting
    await settle(lambda: len(room.change_saves) == 1)
    assert room.events == ["full", "changes"]  # held until the save completed
    assert room.content == ({"t": {"r": {"c": 1}}}, {})


async def test_remote_data_does_not_override_unsent_local_edits() -> None:
    room = MemoryRoom()
    a, pa, _ = make(room)
    b, pb, _ = make(room)
    await pa.start_auto_persisting()
    await pb.start_auto_persisting()
    # Both edits stay pending until the end of this turn. a's is sent first and reaches
    # b while b's own edit is still unsent; b's will reach the room after a's, so b must
    # keep its value locally too.
    a.set_cell("t", "r", "c", "a")
    b.set_cell("t", "r", "c", "b")
    await settle(lambda: not pa.has_pending_changes() and not pb.has_pending_changes())
    await settle(lambda: a.get_content() == room.content)
    # Without re-applying b's unsent edit over a's incoming one, b would keep "a" while
    # the room (which got b's edit last) has "b".
    assert b.get_content() == room.content


async def test_changes_from_another_thread_reach_the_loop() -> None:
    room = MemoryRoom()
    a, pa, errors = make(room)
    b, pb, _ = make(room)
    await pa.start_auto_persisting()
    await pb.start_auto_persisting()
    threads: list[int] = []

    def edit() -> None:
        threads.append(threading.get_ident())
        for i in range(50):
            a.set_cell("t", str(i), "c", i)

    thread = threading.Thread(target=edit)
    thread.start()
    await asyncio.to_thread(thread.join)
    await settle(lambda: len(b.get_row_ids("t")) == 50)
    assert threads[0] != threading.get_ident()
    assert b.get_content() == a.get_content() == room.content
    assert errors == []


async def test_stop_and_restart_auto_persisting() -> None:
    room = MemoryRoom()
    a, pa, _ = make(room)
    b, pb, _ = make(room)
    await pa.start_auto_persisting()
    await pb.start_auto_persisting()
    await pb.stop_auto_persisting()
    assert not pb.is_auto_loading() and not pb.is_auto_saving()
    a.set_cell("t", "r", "c", 1)
    b.set_cell("t", "r", "c", 2)
    await settle(lambda: room.content == ({"t": {"r": {"c": 1}}}, {}))
    # only a still listens, so nothing can reach b; and b did not send its edit
    assert len(room.listeners) == 1 and len(room.change_saves) == 1
    assert b.get_cell("t", "r", "c") == 2
    await pb.start_auto_load()
    assert b.get_cell("t", "r", "c") == 1


async def test_schedule_runs_in_order_and_reports_errors() -> None:
    room = MemoryRoom()
    _, persister, errors = make(room)
    order: list[int] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def held(n: int) -> None:
        started.set()
        await release.wait()
        order.append(n)

    def boom() -> None:
        raise RuntimeError("boom")

    first = asyncio.ensure_future(persister.schedule(lambda: held(1), lambda: held(2)))
    second = asyncio.ensure_future(persister.schedule(boom, lambda: order.append(3)))
    await started.wait()
    assert order == [] and not second.done()  # the second waits for the first
    release.set()
    await asyncio.gather(first, second)
    assert order == [1, 2, 3]
    assert [str(e) for e in errors] == ["boom"]


async def test_destroy_stops_everything() -> None:
    room = MemoryRoom()
    destroyed: list[bool] = []
    a, pa, _ = make(room, on_destroy=lambda: destroyed.append(True))
    await pa.start_auto_persisting()
    assert room.listeners
    assert await pa.destroy() is pa
    await pa.destroy()  # idempotent
    assert destroyed == [True]
    assert not room.listeners
    assert not pa.is_auto_saving() and not pa.is_auto_loading()
    a.set_cell("t", "r", "c", 1)
    assert not pa.has_pending_changes()  # the Store listener is gone: nothing taken
    assert room.change_saves == []


async def test_pending_edits_are_sent_when_auto_save_stops() -> None:
    room = MemoryRoom()
    a, pa, _ = make(room)
    await pa.start_auto_save()
    a.set_cell("t", "r", "c", 1)
    await pa.stop_auto_save()
    assert room.content == ({"t": {"r": {"c": 1}}}, {})


# -- hooks --------------------------------------------------------------------------------
async def test_hooks_see_local_edits_with_old_values_and_take_them_synchronously() -> None:
    room = MemoryRoom(({"t": {"r": {"c": "before"}}}, {}))
    taken: list[Changes] = []
    seen: list[tuple[Changes, OldValues | None]] = []
    hooks = PersisterHooks(
        wants_old_values=lambda changes: "c" in changes[0].get("t", {}).get("r", {}),
        on_local_changes=lambda changes, old: seen.append((copy_changes(changes), old)),
        hand_over=taken.append,
    )
    store, persister, errors = make(room, hooks=hooks)
    await persister.start_auto_persisting()
    store.set_cell("t", "r", "c", "after")
    store.set_cell("t", "r", "d", 1)
    await settle(lambda: bool(taken))
    assert seen[0] == (
        ({"t": {"r": {"c": "after"}}}, {}, 1),
        ({"t": {"r": {"c": ["before", "after"]}}}, {}),
    )
    assert seen[1] == (({"t": {"r": {"d": 1}}}, {}, 1), None)
    # hand_over replaced set_persisted for local Changes, one batch for the turn
    assert taken == [({"t": {"r": {"c": "after", "d": 1}}}, {}, 1)]
    assert room.change_saves == []
    assert persister.get_stats()["saves"] == 2  # the initial full save, then the batch
    assert errors == []


async def test_unsent_changes_of_the_transport_win_over_loaded_data() -> None:
    room = MemoryRoom()
    offline: list[Changes] = [({"t": {"r": {"c": "mine"}}}, {}, 1)]
    store, persister, _ = make(room, hooks=PersisterHooks(unsent_changes=lambda: offline))
    persister.apply_loaded(({"t": {"r": {"c": "theirs", "d": 1}}}, {}), count_load=True)
    assert store.get_tables() == {"t": {"r": {"c": "mine", "d": 1}}}
    assert persister.get_stats()["loads"] == 1


async def test_loading_sets_the_status_for_a_transports_own_reload() -> None:
    room = MemoryRoom()
    _, persister, _ = make(room)
    statuses: list[Status] = []
    persister.add_status_listener(lambda _, status: statuses.append(status))
    with persister.loading():
        assert persister.get_status() is Status.LOADING
    assert statuses == [Status.LOADING, Status.IDLE]


# -- merging ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "second", "merged"),
    [
        (({"t": {"r": {"a": 1}}}, {}, 1), ({"t": {"r": {"b": 2}}}, {"v": 1}, 1), True),
        (({"t": {"r": {"a": 1}}}, {}, 1), ({"t": DELETED}, {}, 1), True),
        (({"t": {"r": DELETED}}, {}, 1), ({"t": {"r": {"a": 1}}}, {}, 1), False),
        (({"t": DELETED}, {}, 1), ({"t": {"r": {"a": 1}}}, {}, 1), False),
        (({"t": DELETED}, {}, 1), ({"t": {"r": {"a": DELETED}}}, {}, 1), True),
        (({}, {"v": 1}, 1), ({}, {"v": DELETED}, 1), True),
    ],
)
def test_merge_changes_into_matches_sequential_application(
    first: Changes, second: Changes, merged: bool
) -> None:
    start: Content = ({"t": {"r": {"a": 0, "z": 9}, "q": {"a": 1}}}, {"v": 0, "w": 1})
    expected = lww_applied(lww_applied(start, first), second)
    acc = copy_changes(first)
    assert merge_changes_into(acc, second) is merged
    if merged:
        assert lww_applied(start, acc) == expected
    else:
        assert acc == copy_changes(first)
