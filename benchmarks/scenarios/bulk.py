"""Scenario 4, bulk: a fresh client loads 100k and 1M cells; a client saves them.

Why: opening a notebook on a big shared table is a load of the whole room (HTTP GET +
decode + apply), and putting a DataFrame into a room is one big save. Rooms are filled
by one HTTP PUT (the initial save both persisters do), timed as the servers' ingest.
Then:

- load: a fresh client connects and loads (reference: Node TinyBase from partykit dev;
  partywidget: our Python client from our server), plus the Python client followed by
  the DataFrame (goal: 1M cells + DataFrame <= 5 s).
- save through the socket: a connected client sets every cell in one transaction and a
  second client waits for all of them. TinyBase sends that as one message, and PartyKit
  closes connections on frames over 1 MiB - recorded as the reference's failure. Our
  persister splits change sets under 1 MiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from benchmarks.harness import Context, Figure, Goal, Side, describe_error, scenario
from benchmarks.scenarios._env import (
    SERVER_LABEL,
    PyClient,
    bulk_body,
    node,
    put_content,
    servers,
)

TABLE = "bulk"
COLS = 10


def _label(cells: int) -> str:
    return f"{cells // 1_000_000}M" if cells >= 1_000_000 else f"{cells // 1000}k"


async def _timed(label: str, action: Callable[[], Awaitable[float]]) -> Side:
    try:
        return Side(label, value=await action())
    except Exception as error:
        return Side(label, error=describe_error(error))


async def _py_load(host: str, room: str, cells: int, timeout: float, frame: bool) -> float:
    t0 = time.perf_counter()
    client = await asyncio.wait_for(PyClient.connect(host, room, save=False), timeout)
    try:
        if client.cell_count() != cells:
            raise RuntimeError(f"loaded {client.cell_count()} cells, expected {cells}")
        if frame:
            from partywidget.frames import table_to_frame

            df = table_to_frame(client.store, TABLE)
            if df.shape != (cells // COLS, COLS):
                raise RuntimeError(f"DataFrame shape {df.shape}")
        return time.perf_counter() - t0
    finally:
        await client.close()


async def _js_load(ctx: Context, host: str, room: str, cells: int, timeout: float) -> float:
    bench = await node(ctx)
    name = f"{room}-load-{time.monotonic_ns()}"
    try:
        result = await bench.call(
            "load",
            client=name,
            host=host,
            room=room,
            expectCells=cells,
            timeoutMs=timeout * 1000,
            timeout=timeout + 30,
        )
        return float(result["seconds"])
    finally:
        with contextlib.suppress(Exception):
            await bench.call("disconnect", client=name, timeout=60)


async def _js_save(ctx: Context, host: str, room: str, rows: int, timeout: float) -> float:
    bench = await node(ctx)
    w, r = f"{room}-w", f"{room}-r"
    try:
        await bench.call("connect", client=w, host=host, room=room)
        await bench.call("connect", client=r, host=host, room=room)
        result = await bench.call(
            "saveBig",
            writer=w,
            reader=r,
            rows=rows,
            cols=COLS,
            timeoutMs=timeout * 1000,
            timeout=timeout + 30,
        )
        return float(result["seconds"])
    finally:
        for name in (w, r):
            with contextlib.suppress(Exception):
                await bench.call("disconnect", client=name, timeout=60)


async def _py_save(host: str, room: str, rows: int, timeout: float) -> float:
    a = await PyClient.connect(host, room)
    b = await PyClient.connect(host, room)
    try:
        t0 = time.perf_counter()
        with a.store.transaction():
            set_cell = a.store.set_cell
            for i in range(rows):
                row = f"r{i}"
                for j in range(COLS):
                    set_cell(TABLE, row, f"c{j}", i * COLS + j)
        await b.wait_for(lambda: b.store.get_row_count(TABLE) >= rows, timeout)
        return time.perf_counter() - t0
    finally:
        await a.close()
        await b.close()


@scenario("bulk", "a fresh client loads 100k / 1M cells; one client saves them via the socket")
async def run(ctx: Context) -> list[Figure]:
    sizes = [ctx.config.size(100_000, 100_000, 1_000)]
    if not ctx.config.quick and not ctx.config.tiny:
        sizes.append(1_000_000)
    hosts = await servers(ctx)
    # Import pandas and the frames module now: a notebook has them loaded already.
    import partywidget.frames  # noqa: F401

    figures: list[Figure] = []
    for cells in sizes:
        figures += await _one_size(ctx, hosts, cells)
    return figures


async def _one_size(ctx: Context, hosts: dict[str, str], cells: int) -> list[Figure]:
    figures: list[Figure] = []
    rows = cells // COLS
    timeout = 120.0 if cells <= 100_000 else 600.0
    body = bulk_body(rows, COLS, TABLE)
    rooms = {server: ctx.room(f"bulk{_label(cells)}-{server}") for server in hosts}
    put: dict[str, Side] = {}
    for server, host in hosts.items():

        async def do_put(host: str = host, room: str = rooms[server]) -> float:
            t0 = time.perf_counter()
            status = await put_content(host, room, body, timeout)
            if status != 201:
                raise RuntimeError(f"PUT answered {status}")
            return time.perf_counter() - t0

        put[server] = await _timed(f"HTTP PUT -> {SERVER_LABEL[server]}", do_put)
        ctx.log(f"  PUT {_label(cells)} -> {server}: {put[server].value or put[server].error}")
    n = _label(cells)
    figures.append(
        Figure("bulk", f"server ingests {n} cells (PUT)", "s", put["partykit"], put["ours"])
    )

    async def load(server: str, lang: str, frame: bool = False) -> Side:
        label = f"{lang}{' + DataFrame' if frame else ''} <- {SERVER_LABEL[server]}"
        if put[server].error is not None:
            return Side(label, error="room could not be filled")
        host, room = hosts[server], rooms[server]
        if lang == "JS":
            side = await _timed(label, lambda: _js_load(ctx, host, room, cells, timeout))
        else:
            side = await _timed(label, lambda: _py_load(host, room, cells, timeout, frame))
        ctx.log(f"  load {n} {label}: {side.value or side.error}")
        return side

    ref_load = await load("partykit", "JS")
    figures.append(
        Figure("bulk", f"fresh client loads {n} cells", "s", ref_load, await load("ours", "Py"))
    )
    figures.append(
        Figure(
            "bulk",
            f"fresh client loads {n} cells (server only)",
            "s",
            ref_load,
            await load("ours", "JS"),
        )
    )
    figures.append(
        Figure(
            "bulk",
            f"fresh client loads {n} cells (client only)",
            "s",
            ref_load,
            await load("partykit", "Py"),
        )
    )
    figures.append(
        Figure(
            "bulk",
            f"fresh client loads {n} cells + DataFrame",
            "s",
            ref_load,
            await load("ours", "Py", frame=True),
            Goal("<=", 5.0, absolute=True, unit="s") if cells >= 1_000_000 else None,
            "reference column: the load alone (TinyBase has no DataFrame)",
        )
    )

    async def save(server: str, lang: str) -> Side:
        label = f"{lang}->{lang} via {SERVER_LABEL[server]}"
        host, room = hosts[server], ctx.room(f"save{n}-{lang}-{server}")
        if lang == "JS":
            side = await _timed(label, lambda: _js_save(ctx, host, room, rows, timeout))
        else:
            side = await _timed(label, lambda: _py_save(host, room, rows, timeout))
        ctx.log(f"  save {n} {label}: {side.value or side.error}")
        return side

    figures.append(
        Figure(
            "bulk",
            f"save {n} cells in one transaction -> reader",
            "s",
            await save("partykit", "JS"),
            await save("ours", "Py"),
            note="TinyBase sends one message; PartyKit refuses frames over 1 MiB",
        )
    )
    return figures
