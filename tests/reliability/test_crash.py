"""A server killed with SIGKILL mid-burst, restarted on the same SQLite file and port.

Real parts only: ``partywidget serve`` as a subprocess on a real SQLite file, three of
our clients (Store + PartySocket + persister) each writing its own rows as fast as a
notebook loop would, SIGKILL while they write, a restart on the same port and file.

Required: every client and the server end up with identical content holding every
writer's last value for every cell - zero lost edits, including the edits that were on
the wire (written to a socket, not yet stored) when the server died, which the client
keeps until the server is seen to have them and re-sends after its resync. The second
test isolates that case deterministically (bytes held in a proxy, then the server dies).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from partywidget.partykit.socket import PartySocket
from support.proxy import TcpProxy
from support.reliability import ServerProcess, fetch_content, py_peer
from support.waiting import eventually

pytestmark = pytest.mark.timeout(120)

WRITERS = 3
ROWS = 8


@dataclass
class Edit:
    writer: int
    seq: int
    row: str
    cell: str
    value: Any
    phase: str  # "stored" | "burst" | "offline"


@dataclass
class Journal:
    """Every edit made, in order, with the phase of the fault it was made in."""

    edits: list[Edit] = field(default_factory=list)
    phase: str = "stored"

    def last_values(self) -> dict[str, Any]:
        rows: dict[str, dict[str, Any]] = {}
        for e in self.edits:
            rows.setdefault(e.row, {})[e.cell] = e.value
        return {"t": rows} if rows else {}


async def _burst(peer: Any, writer: int, edits: range, journal: Journal) -> None:
    """Single-cell edits on this writer's own rows.

    Most cells are written exactly once (so a lost edit cannot be masked by a later
    one); every fourth edit rewrites one of a few "hot" rows, so last-write-wins is
    checked too.
    """
    for k in edits:
        if k % 4 == 0:
            row, cell = f"w{writer}-hot{k % ROWS}", "v"
        else:
            row, cell = f"w{writer}-r{k // ROWS}", f"c{k % ROWS}"
        value: Any = k if k % 3 else f"{writer}:{k}"
        peer.store.set_cell("t", row, cell, value)
        journal.edits.append(Edit(writer, k, row, cell, value, journal.phase))
        await asyncio.sleep(0.003)


async def _settled(server: ServerProcess, room: str, peers: list[Any]) -> Any:
    """The server's content once every client is connected, settled and equal to it."""
    if not all(
        p.persister.is_settled() and p.socket.ready_state == PartySocket.OPEN for p in peers
    ):
        return None
    try:
        content = await fetch_content(server.store_url(room))
    except httpx.TransportError:
        return None
    if content is None or not all(p.store.get_content() == content for p in peers):
        return None
    return content


def _is_transport_error(error: BaseException) -> bool:
    """Errors a crash legitimately produces (a GET/PUT while the server was down)."""
    return isinstance(error, httpx.TransportError | httpx.HTTPStatusError | OSError)


async def test_kill_9_mid_burst_then_restart_loses_no_edit(
    server_process: Callable[..., ServerProcess], room: str
) -> None:
    server = server_process()
    journal = Journal()
    async with (
        py_peer(server.host, room) as a,
        py_peer(server.host, room) as b,
        py_peer(server.host, room) as c,
    ):
        peers = [a, b, c]
        # Phase "stored": a burst the server has demonstrably stored before the crash.
        await asyncio.gather(*(_burst(p, i, range(0, 60), journal) for i, p in enumerate(peers)))
        stored: list[Any] = []

        async def stored_everything() -> bool:
            content = await _settled(server, room, peers)
            stored[:] = [content]
            return content is not None and content[0] == journal.last_values()

        await eventually(stored_everything, what="phase 1 stored")

        # Phase "burst": SIGKILL while all three write.
        journal.phase = "burst"
        tasks = [
            asyncio.create_task(_burst(p, i, range(60, 400), journal)) for i, p in enumerate(peers)
        ]
        await eventually(lambda: len(journal.edits) >= 180 + 60, what="burst under way")
        at_kill = len(journal.edits)
        server.kill9()
        await eventually(
            lambda: all(p.socket.ready_state != PartySocket.OPEN for p in peers),
            what="clients notice the crash",
        )
        # Phase "offline": edits made while the server is down, delivered after restart.
        journal.phase = "offline"
        await eventually(
            lambda: sum(e.phase == "offline" for e in journal.edits) >= 30, what="offline edits"
        )
        server.restart()
        await asyncio.gather(*tasks)

        final: list[Any] = []

        async def converged() -> bool:
            final[:] = [await _settled(server, room, peers)]
            return final[0] is not None

        await eventually(converged, what="clients and server identical")
        content = final[0]
        assert all(all(_is_transport_error(e) for e in p.errors) for p in peers), [
            p.errors for p in peers
        ]

    # Which edits are missing from the converged content? None may be.
    tables = content[0].get("t", {})
    lost = []
    for edit in journal.edits:
        later = [
            e
            for e in journal.edits
            if (e.row, e.cell) == (edit.row, edit.cell) and e.seq > edit.seq
        ]
        if not later and tables.get(edit.row, {}).get(edit.cell) != edit.value:
            lost.append(edit)
    assert lost == [], f"{len(lost)} edits lost (kill after edit #{at_kill}): {lost[:10]}"
    assert content[0] == journal.last_values()
    assert server.starts == 2
    assert "Traceback" not in server.log_text(), server.log_tail()


async def test_edit_in_flight_when_the_server_dies_is_not_lost(
    server_process: Callable[..., ServerProcess], room: str
) -> None:
    server = server_process()
    with TcpProxy("127.0.0.1", server.port) as proxy:
        async with py_peer(proxy.host, room) as writer:
            writer.store.set_cell("t", "r", "before", 1)
            await eventually(lambda: _settled(server, room, [writer]), what="settled")
            # Hold the bytes on the wire (a stalled path), edit, then the server dies.
            proxy.pause()
            sent = writer.persister.messages_sent
            writer.store.set_cell("t", "r", "in-flight", 2)
            await eventually(lambda: writer.persister.messages_sent > sent, what="handed over")
            server.kill9()
            proxy.drop_all()
            proxy.resume()
            await eventually(lambda: writer.socket.ready_state != PartySocket.OPEN)
            server.restart()
            await eventually(lambda: _settled(server, room, [writer]), what="resynced")
            content = await fetch_content(server.store_url(room))
            assert content is not None
            # Converged either way; the question is whether the edit survived.
            assert writer.store.get_content() == content
            assert content[0]["t"]["r"] == {"before": 1, "in-flight": 2}
