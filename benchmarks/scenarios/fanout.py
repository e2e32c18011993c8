"""Scenario 2, fan-out: one writer, 100 and 1000 readers; time until *all* see an edit.

Why: a classroom notebook is one writer and many readers, so the broadcast path of the
server (serialise once, send N times) is what scales or not. The same Node TinyBase
clients (one process, like one busy browser tab per reader would be cheaper) run against
both servers, so the ratio is the servers'. Per edit we record the slowest reader
("all", p50 and max over edits) and every reader's own latency ("each", p50).
"""

from __future__ import annotations

import contextlib
from typing import Any

from benchmarks.harness import Context, Figure, Goal, ms, scenario, stat_figures
from benchmarks.scenarios._env import SERVER_LABEL, node, servers


async def _measure(
    ctx: Context, server: str, host: str, readers: int, edits: int
) -> dict[str, list[float]]:
    bench = await node(ctx)
    room = ctx.room(f"fan{readers}-{server}")
    prefix, writer = f"{room}-r", f"{room}-w"
    try:
        await bench.call("connect", client=writer, host=host, room=room)
        await bench.call(
            "connectMany",
            prefix=prefix,
            count=readers,
            host=host,
            room=room,
            concurrency=50,
            watchCell=["t", "r", "c"],
            timeout=600,
        )
        await bench.call("fanout", writer=writer, prefix=prefix, edits=2, timeout=600)  # warm-up
        result = await bench.call(
            "fanout", writer=writer, prefix=prefix, edits=edits, start=2, timeout=600
        )
        return {"all": ms(result["all"]), "each": ms(result["each"])}
    finally:
        with contextlib.suppress(Exception):
            await bench.call("disconnectPrefix", prefix=room, timeout=300)


@scenario("fanout", "1 writer -> 100 / 1000 Node readers, p50/max until all see the edit")
async def run(ctx: Context) -> list[Figure]:
    cfg = ctx.config
    sizes = [
        (cfg.size(100, 100, 5), cfg.size(50, 20, 3)),
        (cfg.size(1000, 1000, 20), cfg.size(20, 5, 2)),
    ]
    hosts = await servers(ctx)
    figures: list[Figure] = []
    for readers, edits in sizes:
        figures += await _one_size(ctx, hosts, readers, edits)
    return figures


async def _one_size(ctx: Context, hosts: dict[str, str], readers: int, edits: int) -> list[Figure]:
    goal = Goal("<=", 1.0)
    figures: list[Figure] = []
    results: dict[str, Any] = {}
    for server, host in hosts.items():
        try:
            results[server] = await _measure(ctx, server, host, readers, edits)
            ctx.log(
                f"  {readers} readers @ {server}: all-seen max {max(results[server]['all']):.1f} ms"
            )
        except Exception as error:
            ctx.log(f"  fan-out {readers} @ {server} failed: {error!r}")
            results[server] = error

    def side(server: str, key: str) -> tuple[str, Any]:
        data = results[server]
        label = f"JS clients @ {SERVER_LABEL[server]}"
        return label, (data[key] if isinstance(data, dict) else data)

    figures += stat_figures(
        "fanout",
        f"fan-out 1->{readers} all seen",
        side("partykit", "all"),
        side("ours", "all"),
        stats=("p50", "max"),
        goals={"p50": goal, "max": goal},
    )
    figures += stat_figures(
        "fanout",
        f"fan-out 1->{readers} each reader",
        side("partykit", "each"),
        side("ours", "each"),
        stats=("p50",),
    )
    return figures
