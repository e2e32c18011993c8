"""Scenario 7, memory: RSS of a client holding 1M cells (Python vs Node), and server
RSS per idle connection (``partywidget serve`` vs ``partykit dev``'s workerd).

Why: a notebook holding a big shared table pays for it in kernel memory, and a room
server for a class pays per connected student. Client RSS is read in fresh processes
(``_memory_child.py`` and a fresh Node driver) before and after loading the same room
from our server; server RSS is ``VmRSS`` of the process that holds the connections,
before and after K idle TinyBase clients connect, divided by K.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys

from benchmarks.harness import ROOT, Context, Figure, Side, describe_error, scenario
from benchmarks.scenarios._env import (
    SERVER_LABEL,
    NodeBench,
    OurServer,
    bulk_body,
    node,
    our_server,
    put_content,
    vm_rss_kib,
    workerd_pid,
)
from support.partykit import PartykitDev

COLS = 10


async def _python_client_rss(host: str, room: str, cells: int) -> dict[str, int]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), str(ROOT)])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.scenarios._memory_child",
        host,
        room,
        str(cells),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 900)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed: {err.decode()[-500:]}")
    result: dict[str, int] = json.loads(out)
    return result


async def _node_client_rss(host: str, room: str, cells: int) -> dict[str, int]:
    bench = NodeBench()
    try:
        await bench.start()
        before = (await bench.call("rss"))["rssKiB"]
        await bench.call(
            "load",
            client="mem",
            host=host,
            room=room,
            expectCells=cells,
            timeoutMs=600_000,
            timeout=630,
        )
        after = (await bench.call("rss"))["rssKiB"]
        return {"before_kib": before, "after_kib": after}
    finally:
        await bench.close()


async def _client_figures(ctx: Context, cells: int) -> list[Figure]:
    server = await our_server(ctx)
    room = ctx.room("mem-client")
    status = await put_content(server.host, room, bulk_body(cells // COLS, COLS), 600)
    if status != 201:
        raise RuntimeError(f"PUT answered {status}")
    sides = {}
    for lang, measure in (
        ("Node TinyBase", _node_client_rss),
        ("Python partywidget", _python_client_rss),
    ):
        try:
            sides[lang] = await measure(server.host, room, cells)
            ctx.log(f"  client {lang} holding {cells:,} cells: {sides[lang]}")
        except Exception as error:
            sides[lang] = error  # type: ignore[assignment]

    def side(lang: str, key: str) -> Side:
        data = sides[lang]
        if isinstance(data, BaseException):
            return Side(lang, error=describe_error(data))
        value = data["after_kib"] - data["before_kib"] if key == "delta" else data["after_kib"]
        return Side(lang, value=value / 1024)

    n = f"{cells // 1_000_000}M" if cells >= 1_000_000 else f"{cells // 1000}k"
    return [
        Figure(
            "memory",
            f"client RSS holding {n} cells (data only)",
            "MiB",
            side("Node TinyBase", "delta"),
            side("Python partywidget", "delta"),
        ),
        Figure(
            "memory",
            f"client RSS holding {n} cells (process)",
            "MiB",
            side("Node TinyBase", "total"),
            side("Python partywidget", "total"),
        ),
    ]


async def _server_rss_per_connection(
    ctx: Context, server: str, host: str, pid: int, k: int
) -> float:
    bench = await node(ctx)
    room = ctx.room(f"mem-idle-{server}")
    prefix = f"{room}-c"
    try:
        # A first connection to the room, so the room itself is not counted per client.
        await bench.call("connectMany", prefix=prefix + "w", count=2, host=host, room=room)
        settle = 0.3 if ctx.config.tiny else 2.0
        await asyncio.sleep(settle / 2)
        before = vm_rss_kib(pid)
        await bench.call(
            "connectMany", prefix=prefix, count=k, host=host, room=room, concurrency=50, timeout=600
        )
        await asyncio.sleep(settle)  # let the server finish handshakes and settle
        after = vm_rss_kib(pid)
        if before is None or after is None:
            raise RuntimeError(f"process {pid} is gone")
        return (after - before) / k
    finally:
        with contextlib.suppress(Exception):
            await bench.call("disconnectPrefix", prefix=room, timeout=300)


async def _fresh_servers() -> tuple[OurServer, PartykitDev]:
    ours = await OurServer.start()
    try:
        ref = PartykitDev(persist=False, startup_timeout=120)
        try:
            await asyncio.to_thread(ref.start)
        except BaseException:
            ref.stop()
            raise
    except BaseException:
        await asyncio.to_thread(ours.stop)
        raise
    return ours, ref


@scenario("memory", "client RSS holding 1M cells; server RSS per idle connection")
async def run(ctx: Context) -> list[Figure]:
    cfg = ctx.config
    figures = await _client_figures(ctx, cfg.size(1_000_000, 100_000, 1_000))
    k = cfg.size(1000, 200, 10)
    # Fresh servers: the shared ones carry earlier scenarios' rooms and freed-but-kept
    # allocator arenas, which new connections would reuse without growing RSS.
    ours, ref = await _fresh_servers()
    try:
        hosts = {"partykit": ref.host, "ours": ours.host}
        pids = {"ours": ours.pid, "partykit": workerd_pid(ref)}
        sides = {}
        for server, host in hosts.items():
            label = f"{SERVER_LABEL[server]} ({'workerd' if server == 'partykit' else 'python'})"
            pid = pids[server]
            if pid is None:
                sides[server] = Side(label, error="workerd process not found")
                continue
            try:
                value = await _server_rss_per_connection(ctx, server, host, pid, k)
                sides[server] = Side(label, value=value)
            except Exception as error:
                sides[server] = Side(label, error=describe_error(error))
            ctx.log(f"  server {server}: {sides[server].value} KiB per idle connection")
    finally:
        await asyncio.to_thread(ours.stop)
        await asyncio.to_thread(ref.stop)
    figures.append(
        Figure(
            "memory",
            f"server RSS per idle connection ({k} clients)",
            "KiB",
            sides["partykit"],
            sides["ours"],
            note="fresh servers, K idle Node clients",
        )
    )
    return figures
