"""Scenario 3, burst: 10,000 separate edits (not one transaction) from one client to a
reader; edits per second from the first edit until the reader holds all of them.

Why: a notebook loop of ``set_cell`` calls is the common way to write data. TinyBase
sends one socket message per transaction, so the reference pays per-message costs
10,000 times; partywidget's persister coalesces the edits of one event-loop turn into one
message (split under 1 MiB). Goal row: Py->Py on our server vs JS->JS on partykit dev;
the other rows separate the client effect from the server effect.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from benchmarks.harness import Context, Figure, Goal, Side, scenario
from benchmarks.scenarios._env import SERVER_LABEL, PyClient, node, servers

TABLE = "burst"
TIMEOUT = 300.0


async def _py_to_py(host: str, room: str, count: int) -> float:
    a = await PyClient.connect(host, room)
    b = await PyClient.connect(host, room)
    try:
        t0 = time.perf_counter()
        set_cell = a.store.set_cell
        for i in range(count):
            set_cell(TABLE, f"r{i}", "c", i)
        await b.wait_for(lambda: b.store.get_row_count(TABLE) >= count, TIMEOUT)
        return time.perf_counter() - t0
    finally:
        await a.close()
        await b.close()


async def _js_to_js(ctx: Context, host: str, room: str, count: int) -> float:
    bench = await node(ctx)
    a, b = f"{room}-a", f"{room}-b"
    try:
        await bench.call("connect", client=a, host=host, room=room)
        await bench.call("connect", client=b, host=host, room=room)
        result = await bench.call(
            "burst", writer=a, reader=b, count=count, timeoutMs=TIMEOUT * 1000, timeout=TIMEOUT + 30
        )
        return float(result["seconds"])
    finally:
        for name in (a, b):
            with contextlib.suppress(Exception):
                await bench.call("disconnect", client=name)


@scenario("burst", "10,000 separate edits from one client to a reader, edits/s")
async def run(ctx: Context) -> list[Figure]:
    count = ctx.config.size(10_000, 10_000, 200)
    repeats = 1 if ctx.config.quick or ctx.config.tiny else ctx.config.repeats
    hosts = await servers(ctx)
    best: dict[tuple[str, str], Any] = {}
    for _ in range(repeats):
        for server, host in hosts.items():
            for pair in ("js-js", "py-py"):
                key = (server, pair)
                if isinstance(best.get(key), BaseException):
                    continue
                room = ctx.room(f"burst-{pair}-{server}")
                try:
                    if pair == "py-py":
                        seconds = await _py_to_py(host, room, count)
                    else:
                        seconds = await _js_to_js(ctx, host, room, count)
                except Exception as error:
                    ctx.log(f"  burst {pair} @ {server} failed: {error!r}")
                    best[key] = error
                    continue
                ctx.log(f"  burst {pair} @ {server}: {count / seconds:,.0f} edits/s")
                # Best of the repeats: background load only ever slows a run down.
                previous = best.get(key)
                best[key] = seconds if previous is None else min(previous, seconds)

    def side(server: str, pair: str) -> Side:
        label = f"{'Py->Py' if pair == 'py-py' else 'JS->JS'} @ {SERVER_LABEL[server]}"
        data = best.get((server, pair))
        if isinstance(data, BaseException):
            return Side(label, error=f"{type(data).__name__}: {data}"[:300])
        return Side(label, value=None if data is None else count / data)

    name = f"burst {count:,} edits"
    return [
        Figure(
            "burst",
            name,
            "edits/s",
            side("partykit", "js-js"),
            side("ours", "py-py"),
            Goal(">=", 10.0),
            "goal row: partywidget's stack vs the reference's",
        ),
        Figure(
            "burst",
            f"{name} (server only)",
            "edits/s",
            side("partykit", "js-js"),
            side("ours", "js-js"),
        ),
        Figure(
            "burst",
            f"{name} (client only)",
            "edits/s",
            side("partykit", "js-js"),
            side("partykit", "py-py"),
        ),
    ]
