"""Widget benchmarks: DataFrame materialisation, and bytes to the front-end per change.

``python -m benchmarks.widget_bench [--quick] [--json PATH]``

* materialise: ``table_to_frame`` on 10k / 100k rows x 5 cells (cold build), the cached
  ``FrameCache.frame`` call, and ``table_changes_from_frame`` for a one-cell edit;
* front-end bytes: a widget with an attached "view" (its comm records what would go to the
  browser) in a room of 1k / 100k rows on a real room server; a second client changes one
  cell; we count the JSON bytes of every comm message that change caused (and, for scale,
  the initial snapshot).

Goals: 100k x 5 materialised in <= 100 ms; one remote cell < 1 KB to the page.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import comm
from comm.base_comm import BaseComm

from partywidget.frames import FrameCache, table_changes_from_frame, table_to_frame
from partywidget.server import run_in_thread
from partywidget.store import create_store
from partywidget.widget import PartyStoreWidget


def _rows(n: int) -> dict[str, dict[str, Any]]:
    return {
        f"r{i}": {
            "name": f"name {i}",
            "n": i,
            "x": i * 0.25,
            "ok": i % 2 == 0,
            **({"tag": f"t{i % 10}"} if i % 7 else {}),
        }
        for i in range(n)
    }


def _median_ms(
    fn: Callable[[], Any], repeat: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append((clock() - start) * 1000)
    return round(statistics.median(times), 2)


def bench_materialise(sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    out = []
    for n in sizes:
        store = create_store().set_table("t", _rows(n))
        cold = _median_ms(partial(table_to_frame, store, "t"), repeat)
        # CPU time of this thread too: on a shared machine wall time includes waiting for a
        # core; the CPU figure is what the build itself costs
        cold_cpu = _median_ms(partial(table_to_frame, store, "t"), repeat, time.thread_time)
        cache = FrameCache(store)
        cache.frame("t")
        cached = _median_ms(partial(cache.frame, "t"), repeat * 10)
        counter = iter(range(1, 10**9))

        def edit_then_frame(
            store: Any = store, cache: FrameCache = cache, counter: Any = counter
        ) -> None:
            store.set_cell("t", "r5", "n", -next(counter))
            cache.frame("t")

        after_edit = _median_ms(edit_then_frame, repeat)
        df = table_to_frame(store, "t")
        df.loc["r1", "n"] = -1
        diff = _median_ms(partial(table_changes_from_frame, store, "t", df), repeat)
        changes = table_changes_from_frame(store, "t", df)
        assert changes == ({"t": {"r1": {"n": -1}}}, {}, 1), changes
        out.append(
            {
                "rows": n,
                "cells": 5,
                "build_ms": cold,
                "build_cpu_ms": cold_cpu,
                "cached_ms": cached,
                "after_one_cell_change_ms": after_edit,
                "diff_one_cell_ms": diff,
            }
        )
        cache.close()
    return out


class _RecordingComm(BaseComm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sent: list[int] = []
        self.kinds: list[str] = []
        self.lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def publish_msg(
        self,
        msg_type: str,
        data: Any = None,
        metadata: Any = None,
        buffers: Any = None,
        **keys: Any,
    ) -> None:
        with self.lock:
            self.sent.append(len(json.dumps(data, separators=(",", ":"))))
            content = (data or {}).get("content") if isinstance(data, dict) else None
            self.kinds.append(content.get("kind", "?") if isinstance(content, dict) else msg_type)


def _wait(cond: Callable[[], Any], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        time.sleep(0.01)


def _has_rows(widget: PartyStoreWidget, n: int) -> bool:
    return widget.store.get_row_count("t") == n


def _has_cell(widget: PartyStoreWidget, row_id: str, name: str) -> bool:
    return bool(widget.get_cell("t", row_id, "name") == name)


def _has_kind(recorder: _RecordingComm, start: int, kind: str) -> bool:
    return kind in recorder.kinds[start:]


def bench_frontend_bytes(sizes: list[int]) -> list[dict[str, Any]]:
    original = comm.create_comm
    comm.create_comm = _RecordingComm
    server = run_in_thread()
    out = []
    try:
        for n in sizes:
            room = f"bench-bytes-{n}-{time.time_ns()}"
            remote = PartyStoreWidget(room, server.host)
            remote.wait_ready(60)
            remote.set_table("t", _rows(n))
            local = PartyStoreWidget(room, server.host)
            local.wait_ready(120)
            _wait(partial(_has_rows, local, n))
            c = local.comm
            assert isinstance(c, _RecordingComm)
            start = len(c.sent)
            c.handle_msg(
                {
                    "content": {
                        "data": {"method": "custom", "content": {"kind": "snapshot?", "view": "v"}}
                    },
                    "buffers": [],
                }
            )
            snapshot_bytes = sum(c.sent[start:])
            snapshot_parts = len(c.sent) - start
            start = len(c.sent)
            remote.set_cell("t", f"r{n // 2}", "name", "changed")
            _wait(partial(_has_cell, local, f"r{n // 2}", "changed"))
            _wait(partial(_has_kind, c, start, "changes"))
            time.sleep(0.2)  # let anything else this change causes be sent too
            out.append(
                {
                    "rows": n,
                    "bytes_per_remote_cell_change": sum(c.sent[start:]),
                    "messages": c.kinds[start:],
                    "snapshot_bytes": snapshot_bytes,
                    "snapshot_messages": snapshot_parts,
                }
            )
            local.close()
            remote.close()
    finally:
        server.stop()
        comm.create_comm = original
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.widget_bench")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else 7
    results = {
        "materialise": bench_materialise([10_000, 100_000], repeat),
        "frontend_bytes": bench_frontend_bytes([1_000, 100_000]),
    }
    for row in results["materialise"]:
        print(
            f"materialise {row['rows']:>7} rows x 5: build {row['build_ms']:7.1f} ms "
            f"(CPU {row['build_cpu_ms']:.1f} ms; goal <= 100 ms at 100k) | cached {row['cached_ms']:.3f} ms | "
            f"after a one-cell change {row['after_one_cell_change_ms']:.1f} ms | "
            f"one-cell set_table diff {row['diff_one_cell_ms']:.1f} ms"
        )
    for row in results["frontend_bytes"]:
        print(
            f"front-end bytes, {row['rows']:>7} rows: {row['bytes_per_remote_cell_change']} B per "
            f"remote one-cell change (goal < 1024) {row['messages']}; initial snapshot "
            f"{row['snapshot_bytes']} B in {row['snapshot_messages']} messages"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
