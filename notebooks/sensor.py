"""A simulated sensor hub: another client appending readings to a room.

Why a separate process: it is what a real deployment looks like (a Raspberry Pi, a lab
instrument, a scraper...) and it proves the dashboard in ``02_live_dashboard.ipynb``
reacts to *remote* changes arriving over the room, not to its own writes.

Every ``--interval`` seconds it adds one row per sensor to the ``readings`` table, in one
transaction (so one WebSocket message per tick)::

    row id "s1-000042": {"sensor": "s1", "n": 42, "t": <unix seconds>,
                         "temperature": 21.37, "humidity": 44.2}

Values follow a seeded random walk, so runs are repeatable. Before exiting it calls
:meth:`~partywidget.PartyStoreWidget.flush`: it returns once every reading was written to
the socket *and* a GET of the room equals the hub's Store. Without it the last ticks
could still sit in the process's buffers when it exits (the protocol has no acks), and
the dashboard would never see them. Exit code 1 if the server did not confirm in time.

Usage::

    python notebooks/sensor.py --host 127.0.0.1:1999 --room sensors --count 200
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Sequence

from partywidget import PartyStoreWidget

TABLE = "readings"


def row_id(sensor: str, n: int) -> str:
    return f"{sensor}-{n:06d}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Simulated sensors appending readings.")
    parser.add_argument("--host", default=os.environ.get("PARTYWIDGET_HOST") or "127.0.0.1:1999")
    parser.add_argument("--room", default="sensors")
    parser.add_argument("--sensors", type=int, default=3, help="number of sensors")
    parser.add_argument("--count", type=int, default=100, help="readings per sensor")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between ticks")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    sensors = [f"s{i + 1}" for i in range(args.sensors)]
    temperature = {s: rng.uniform(18, 24) for s in sensors}
    humidity = {s: rng.uniform(35, 55) for s in sensors}

    client = PartyStoreWidget(args.room, host=args.host).wait_ready(args.timeout)
    print(f"sensor hub: {len(sensors)} sensors -> room {args.room!r} at {args.host}", flush=True)
    try:
        for n in range(args.count):
            now = time.time()
            rows = {}
            for s in sensors:
                temperature[s] += rng.gauss(0, 0.15)
                humidity[s] = min(100.0, max(0.0, humidity[s] + rng.gauss(0, 0.5)))
                rows[row_id(s, n)] = {
                    "sensor": s,
                    "n": n,
                    "t": round(now, 3),
                    "temperature": round(temperature[s], 2),
                    "humidity": round(humidity[s], 1),
                }

            def write(rows: dict[str, dict[str, object]] = rows) -> None:
                for rid, row in rows.items():
                    client.set_row(TABLE, rid, row)

            client.transaction(write)  # one transaction, one message per tick
            if args.interval > 0:
                time.sleep(args.interval)
        try:
            client.wait_flush(args.timeout)  # written, and a GET of the room equals our Store
        except TimeoutError:
            print("sensor hub: the server did not confirm the readings in time", flush=True)
            return 1
        print(f"sensor hub: sent {args.count * len(sensors)} readings", flush=True)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
