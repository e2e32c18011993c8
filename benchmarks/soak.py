"""Soak test: many clients editing steadily for a long time on one server.

``python benchmarks/soak.py`` (full: 200 clients x 10 edits/s for 60 s) or ``--quick``
(20 clients x 10 edits/s for 5 s, run by ``tests/reliability/test_load.py`` in CI).

The server is ``python -m partywidget serve`` as a subprocess on a real SQLite file (so it
has its own core and GIL). Clients are lean raw WebSockets in this one asyncio process,
speaking the real protocol: each owns a row and sends ``s[{"t":{"cN":{"n":seq,
"ts":monotonic_ns}}},{},1]`` on a fixed schedule. Clients are spread over rooms
(``--per-room``, default 10: a class's group) because every edit fans out to the room.

Figures (printed, and written as JSON with ``--json``):

- **lost**: broadcasts a client should have received and did not (must be 0), and rows
  whose stored last value is not the sender's last edit (must be 0);
- **latency** p50/p99/max (ms): edit sent -> a room's observer received the broadcast
  (sender and receiver share ``CLOCK_MONOTONIC``);
- **schedule lag**: how far behind its schedule a sender fell (the client process's own
  overload shows here, not in latency);
- **server RSS** at start (no clients), with all clients connected, and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60.0


# -- shared with idle.py -----------------------------------------------------------------
def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """``partywidget serve`` on an OS-chosen port, in a subprocess we always stop."""

    def __init__(self, db: str, log_level: str = "warning") -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONUNBUFFERED": "1"}
        # Closed in stop(): the log must outlive this constructor.
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        args = ["-m", "partywidget", "serve", "--port", "0", "--db", db]
        self.proc = subprocess.Popen(
            [sys.executable, *args, "--log-level", log_level],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        banner = self.proc.stdout.readline()
        match = re.search(r"http://(\S+)", banner)
        if not match:
            self.stop()
            raise RuntimeError(f"server did not start: {banner!r}")
        self.host = match.group(1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self.log.close()


async def put_room(host: str, room: str, body: str = '[{"t":{"init":{"c":0}}},{}]') -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.put(f"http://{host}/parties/main/{room}/store", content=body)
        response.raise_for_status()


async def get_room(host: str, room: str) -> Any:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(f"http://{host}/parties/main/{room}/store")
        response.raise_for_status()
        return json.loads(response.text)


async def open_socket(host: str, room: str, pk: str) -> ClientConnection:
    return await connect(
        f"ws://{host}/parties/main/{room}?_pk={pk}",
        open_timeout=TIMEOUT,
        max_size=None,
        compression=None,
        max_queue=None,
    )


async def open_many(host: str, rooms_pks: list[tuple[str, str]], batch: int = 50) -> list[Any]:
    sockets: list[Any] = []
    for i in range(0, len(rooms_pks), batch):
        sockets += await asyncio.gather(
            *(open_socket(host, room, pk) for room, pk in rooms_pks[i : i + batch])
        )
    return sockets


_TS = re.compile(r'"ts":(\d+)')


@dataclass
class Receiver:
    """Counts broadcasts; the room's observer also records latencies."""

    ws: ClientConnection
    observe: bool
    received: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    async def run(self) -> None:
        try:
            async for message in self.ws:
                now = time.monotonic_ns()
                self.received += 1
                if self.observe and isinstance(message, str):
                    match = _TS.search(message)
                    if match:
                        self.latencies_ms.append((now - int(match.group(1))) / 1e6)
        except Exception:  # the socket closing ends the count
            return


# -- soak --------------------------------------------------------------------------------
async def soak(
    clients: int, per_room: int, rate: float, duration: float, db: str
) -> dict[str, Any]:
    server = Server(db)
    try:
        await asyncio.sleep(0.2)
        rss_start = server.rss()
        rooms = [f"soak{r}" for r in range((clients + per_room - 1) // per_room)]
        for room in rooms:
            await put_room(server.host, room)
        placement = [(rooms[i // per_room], f"c{i}") for i in range(clients)]
        sockets = await open_many(server.host, placement)
        rss_connected = server.rss()
        receivers = [Receiver(ws, observe=(i % per_room == 0)) for i, ws in enumerate(sockets)]
        tasks = [asyncio.create_task(r.run()) for r in receivers]
        sent = [0] * clients
        lags_ms: list[float] = []
        start = time.monotonic() + 0.5
        interval = 1.0 / rate
        cpu_server0, cpu_client0, wall0 = server.cpu(), time.process_time(), time.monotonic()

        async def sender(i: int) -> None:
            ws = sockets[i]
            offset = (i / clients) * interval  # spread clients over the interval
            seq = 0
            while True:
                due = start + offset + seq * interval
                if due > start + duration:
                    return
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    lags_ms.append(-delay * 1000)
                ts = time.monotonic_ns()
                await ws.send(f's[{{"t":{{"c{i}":{{"n":{seq},"ts":{ts}}}}}}},{{}},1]')
                sent[i] = seq + 1
                seq += 1

        await asyncio.gather(*(sender(i) for i in range(clients)))
        send_end = time.monotonic()
        by_room: dict[str, list[int]] = {}
        for i, (room, _) in enumerate(placement):
            by_room.setdefault(room, []).append(i)
        expected = [
            sum(sent[j] for j in by_room[placement[i][0]] if j != i) for i in range(clients)
        ]
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and any(
            r.received < e for r, e in zip(receivers, expected, strict=True)
        ):
            await asyncio.sleep(0.1)
        drain_s = time.monotonic() - send_end
        wall = time.monotonic() - wall0
        cpu_server = (server.cpu() - cpu_server0) / wall * 100
        cpu_client = (time.process_time() - cpu_client0) / wall * 100
        lost = sum(max(0, e - r.received) for r, e in zip(receivers, expected, strict=True))
        extra = sum(max(0, r.received - e) for r, e in zip(receivers, expected, strict=True))
        rss_end = server.rss()
        wrong_rows = 0
        for room in rooms:
            _tables, _ = await get_room(server.host, room)
            rows = _tables.get("t", {})
            for i in by_room[room]:
                if sent[i] and rows.get(f"c{i}", {}).get("n") != sent[i] - 1:
                    wrong_rows += 1
        for ws in sockets:
            await ws.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        latencies = [x for r in receivers for x in r.latencies_ms]
        log = server.log_text()
        return {
            "scenario": "soak",
            "clients": clients,
            "per_room": per_room,
            "rooms": len(rooms),
            "rate_per_client": rate,
            "duration_s": duration,
            "edits_sent": sum(sent),
            "broadcasts_expected": sum(expected),
            "broadcasts_lost": lost,
            "broadcasts_extra": extra,
            "rows_wrong": wrong_rows,
            "drain_s": round(drain_s, 3),
            "latency_ms": {
                "samples": len(latencies),
                "p50": round(percentile(latencies, 50), 2),
                "p99": round(percentile(latencies, 99), 2),
                "max": round(max(latencies, default=float("nan")), 2),
            },
            "cpu_percent": {"server": round(cpu_server), "clients": round(cpu_client)},
            "schedule_lag_ms_p99": round(percentile(lags_ms, 99), 2) if lags_ms else 0.0,
            "server_rss_mib": {
                "start": round(rss_start / 2**20, 1),
                "connected": round(rss_connected / 2**20, 1),
                "end": round(rss_end / 2**20, 1),
            },
            "server_errors": log.count("ERROR") + log.count("Traceback"),
        }
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 clients for 5 s (CI)")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--per-room", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0, help="edits/s per client")
    parser.add_argument("--duration", type=float)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    clients = args.clients or (20 if args.quick else 200)
    duration = args.duration or (5.0 if args.quick else 60.0)
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(
            soak(clients, args.per_room, args.rate, duration, str(Path(tmp) / "soak.sqlite3"))
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    ok = result["broadcasts_lost"] == 0 and result["rows_wrong"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
