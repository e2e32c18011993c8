"""Scenario 1, latency: sequential single-cell edits A -> B, B sees each before A edits.

Why sequential: it isolates the per-edit path (client encode, socket, server validate /
store / broadcast, client decode / apply / listener) from any throughput effect. Each
client pair runs on both servers: the reference stack is JS<->JS on ``partykit dev``,
partywidget's is Py<->Py on ``partywidget serve``; the other rows split the ratio into
server and client effects. Py<->JS is half Py->JS and half JS->Py, pooled.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from benchmarks.harness import Context, Figure, Goal, ms, scenario, stat_figures
from benchmarks.scenarios._env import (
    CELL,
    SERVER_LABEL,
    NodeBench,
    NodeSeen,
    PyClient,
    node,
    now_us,
    servers,
)

EDIT_TIMEOUT = 30.0
PAIR_LABEL = {"py-py": "Py\u2194Py", "js-js": "JS\u2194JS", "py-js": "Py\u2194JS"}


async def _py_to_py(host: str, room: str, count: int, warmup: int) -> list[float]:
    a = await PyClient.connect(host, room)
    b = await PyClient.connect(host, room)
    try:
        b.watch()
        samples = []
        for i in range(warmup + count):
            seen = b.expect(i)
            t0 = now_us()
            a.store.set_cell(*CELL, i)
            t1 = await asyncio.wait_for(seen, EDIT_TIMEOUT)
            if i >= warmup:
                samples.append(float(t1 - t0))
        return samples
    finally:
        await a.close()
        await b.close()


async def _js_to_js(bench: NodeBench, host: str, room: str, count: int, warmup: int) -> list[float]:
    a, b = f"{room}-a", f"{room}-b"
    try:
        await bench.call("connect", client=a, host=host, room=room)
        await bench.call("connect", client=b, host=host, room=room)
        await bench.call("latency", writer=a, reader=b, count=warmup, timeout=600)
        result = await bench.call(
            "latency", writer=a, reader=b, count=count, start=warmup, timeout=600
        )
        return [float(s) for s in result["samples"]]
    finally:
        for name in (a, b):
            with contextlib.suppress(Exception):
                await bench.call("disconnect", client=name)


async def _py_to_js(
    bench: NodeBench, seen: NodeSeen, host: str, room: str, count: int, warmup: int
) -> list[float]:
    reader = f"{room}-js"
    py = await PyClient.connect(host, room)
    try:
        await bench.call("connect", client=reader, host=host, room=room)
        await bench.call("watchCell", client=reader, notify=True)
        samples = []
        for i in range(warmup + count):
            future = seen.expect(reader, i)
            t0 = now_us()
            py.store.set_cell(*CELL, i)
            t1 = await asyncio.wait_for(future, EDIT_TIMEOUT)
            if i >= warmup:
                samples.append(float(t1 - t0))
        return samples
    finally:
        await py.close()
        with contextlib.suppress(Exception):
            await bench.call("disconnect", client=reader)


async def _js_to_py(bench: NodeBench, host: str, room: str, count: int, warmup: int) -> list[float]:
    writer = f"{room}-js"
    py = await PyClient.connect(host, room)
    try:
        await bench.call("connect", client=writer, host=host, room=room)
        py.watch()
        samples = []
        for i in range(warmup + count):
            future = py.expect(i)
            t0 = (await bench.call("setCell", client=writer, value=i))["t"]
            t1 = await asyncio.wait_for(future, EDIT_TIMEOUT)
            if i >= warmup:
                samples.append(float(t1 - t0))
        return samples
    finally:
        await py.close()
        with contextlib.suppress(Exception):
            await bench.call("disconnect", client=writer)


async def measure_pair(
    ctx: Context, bench: NodeBench, seen: NodeSeen, server: str, host: str, pair: str, count: int
) -> list[float]:
    warmup = max(2, min(20, count // 10))
    if pair == "py-py":
        return await _py_to_py(host, ctx.room(f"lat-pp-{server}"), count, warmup)
    if pair == "js-js":
        return await _js_to_js(bench, host, ctx.room(f"lat-jj-{server}"), count, warmup)
    half = count // 2
    there = await _py_to_js(bench, seen, host, ctx.room(f"lat-pj-{server}"), half, warmup)
    back = await _js_to_py(bench, host, ctx.room(f"lat-jp-{server}"), count - half, warmup)
    return there + back


@scenario("latency", "500 sequential single-cell edits A->B, p50/p99 (Py/JS pairs, both servers)")
async def run(ctx: Context) -> list[Figure]:
    count = ctx.config.size(500, 500, 6)
    repeats = 1 if ctx.config.quick or ctx.config.tiny else ctx.config.repeats
    hosts = await servers(ctx)
    bench = await node(ctx)
    seen = NodeSeen(bench)
    samples: dict[tuple[str, str], list[float] | BaseException] = {}
    for rep in range(repeats):
        for server, host in hosts.items():
            for pair in PAIR_LABEL:
                key = (server, pair)
                previous = samples.get(key, [])
                if isinstance(previous, BaseException):
                    continue
                try:
                    got = await measure_pair(ctx, bench, seen, server, host, pair, count)
                except Exception as error:  # recorded as that side's failure
                    ctx.log(f"  latency {pair} on {server} failed: {error!r}")
                    samples[key] = error
                    continue
                samples[key] = previous + got
                ctx.log(
                    f"  rep {rep + 1}/{repeats} {pair:5} @ {server:8}: "
                    f"p50 {sorted(got)[len(got) // 2] / 1000:.2f} ms"
                )

    def side(server: str, pair: str) -> tuple[str, Any]:
        data = samples.get((server, pair), "not measured")
        label = f"{PAIR_LABEL[pair]} @ {SERVER_LABEL[server]}"
        return label, (ms(data) if isinstance(data, list) else data)

    goal = Goal("<=", 0.5)
    figures = stat_figures(
        "latency",
        "latency (goal row)",
        side("partykit", "js-js"),
        side("ours", "py-py"),
        goals={"p50": goal, "p99": goal},
        note="partywidget's clients and server vs the reference's",
    )
    for pair in ("js-js", "py-js", "py-py"):
        figures += stat_figures(
            "latency",
            f"latency {PAIR_LABEL[pair]}",
            side("partykit", pair),
            side("ours", pair),
            note="same clients, the server differs",
        )
    return figures
