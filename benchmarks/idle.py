"""Many idle connections, a few writers: memory per connection and broadcast latency.

``python benchmarks/idle.py`` (full: 1000 idle connections + 10 writers, 1 edit/s each
for 20 s, all in one room so every edit fans out to ~1010 sockets) or ``--quick`` (200
idle + 10 writers for 3 s; run in CI by ``tests/reliability/test_load.py``).

Same setup as ``soak.py``: ``python -m partywidget serve`` subprocess on a real SQLite
file, lean raw-WebSocket clients in this asyncio process speaking the real protocol.

Figures:

- **memory per idle connection**: server RSS after connecting the idle sockets minus
  before, divided by their number (includes uvicorn's and websockets' per-socket state);
- **broadcast latency** p50/p99 (ms): edit sent -> each receiver got it (every delivery);
- **broadcast complete** p50/max (ms): edit sent -> the *last* receiver got it;
- **lost**: deliveries that never arrived (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__:
    from .soak import TIMEOUT, Server, open_many, percentile, put_room
else:  # run as a script: benchmarks/ is on sys.path
    from soak import TIMEOUT, Server, open_many, percentile, put_room  # type: ignore[no-redef,import-not-found,unused-ignore]

_EDIT = re.compile(r'"w(\d+)":\{"n":(\d+),"ts":(\d+)')


async def idle(idle_count: int, writers: int, rate: float, duration: float, db: str) -> Any:
    server = Server(db)
    try:
        room = "idle"
        await put_room(server.host, room)
        await asyncio.sleep(0.2)
        rss_before = server.rss()
        idle_sockets = await open_many(server.host, [(room, f"i{i}") for i in range(idle_count)])
        await asyncio.sleep(0.5)
        rss_idle = server.rss()
        writer_sockets = await open_many(server.host, [(room, f"w{i}") for i in range(writers)])
        sockets = idle_sockets + writer_sockets
        # arrival[(writer, seq)] -> list of arrival times (ns)
        arrivals: dict[tuple[int, int], list[int]] = {}
        sent_at: dict[tuple[int, int], int] = {}
        counts = [0] * len(sockets)

        async def receive(index: int) -> None:
            try:
                async for message in sockets[index]:
                    now = time.monotonic_ns()
                    counts[index] += 1
                    if isinstance(message, str):
                        match = _EDIT.search(message)
                        if match:
                            key = (int(match.group(1)), int(match.group(2)))
                            arrivals.setdefault(key, []).append(now)
            except Exception:  # closing ends the count
                return

        tasks = [asyncio.create_task(receive(i)) for i in range(len(sockets))]
        interval = 1.0 / rate
        start = time.monotonic() + 0.3
        sent = [0] * writers

        async def write(w: int) -> None:
            ws = writer_sockets[w]
            seq = 0
            while True:
                due = start + (w / writers) * interval + seq * interval
                if due > start + duration:
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                ts = time.monotonic_ns()
                sent_at[(w, seq)] = ts
                await ws.send(f's[{{"t":{{"w{w}":{{"n":{seq},"ts":{ts}}}}}}},{{}},1]')
                seq += 1
                sent[w] = seq

        await asyncio.gather(*(write(w) for w in range(writers)))
        receivers_per_edit = len(sockets) - 1
        expected = sum(sent) * receivers_per_edit
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and sum(counts) < expected:
            await asyncio.sleep(0.1)
        rss_end = server.rss()
        for ws in sockets:
            await ws.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        deliveries = [(t - sent_at[key]) / 1e6 for key, times in arrivals.items() for t in times]
        complete = [
            (max(times) - sent_at[key]) / 1e6
            for key, times in arrivals.items()
            if len(times) == receivers_per_edit
        ]
        return {
            "scenario": "idle",
            "idle_connections": idle_count,
            "writers": writers,
            "rate_per_writer": rate,
            "duration_s": duration,
            "edits": sum(sent),
            "deliveries_expected": expected,
            "deliveries_lost": expected - sum(counts),
            "memory_per_idle_connection_kib": round((rss_idle - rss_before) / idle_count / 1024, 1),
            "server_rss_mib": {
                "before": round(rss_before / 2**20, 1),
                "idle_connected": round(rss_idle / 2**20, 1),
                "end": round(rss_end / 2**20, 1),
            },
            "broadcast_latency_ms": {
                "p50": round(percentile(deliveries, 50), 2),
                "p99": round(percentile(deliveries, 99), 2),
            },
            "broadcast_complete_ms": {
                "p50": round(percentile(complete, 50), 2),
                "max": round(max(complete, default=float("nan")), 2),
            },
        }
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 idle for 3 s (CI)")
    parser.add_argument("--idle", type=int)
    parser.add_argument("--writers", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1.0, help="edits/s per writer")
    parser.add_argument("--duration", type=float)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    count = args.idle or (200 if args.quick else 1000)
    duration = args.duration or (3.0 if args.quick else 20.0)
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(
            idle(count, args.writers, args.rate, duration, str(Path(tmp) / "idle.sqlite3"))
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if result["deliveries_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
