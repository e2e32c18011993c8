"""Store micro-benchmarks: ``partywidget.Store`` versus TinyBase 10 in Node.

Run ``python -m benchmarks.store_ops [--ops N] [--rounds R]`` from the repository root
(with ``src`` importable). Both sides run the same two loops in the same session, so the
ratio is meaningful even on a busy machine:

- ``set_cell_with_listener``: ``set_cell`` calls, each its own transaction, one wildcard
  cell listener registered: the cost per call users see.
- ``set_cell_in_transaction``: the same calls inside one transaction: bookkeeping cost,
  with the listener fired once per changed cell at the end.

Prints a table and writes ``benchmarks/results/store_ops.json``. Best of R rounds, since
noise from other processes only ever adds time.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NODE_SCRIPT = ROOT / "benchmarks" / "node" / "store_ops.mjs"
RESULTS = ROOT / "benchmarks" / "results" / "store_ops.json"

try:
    from partywidget.store import Store, create_store
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT / "src"))
    from partywidget.store import Store, create_store


def _fresh_store() -> tuple[Store, list[int]]:
    """A Store with one wildcard cell listener that counts its calls."""
    store = create_store()
    calls = [0]

    def on_cell(*_args: Any) -> None:
        calls[0] += 1

    store.add_cell_listener(None, None, None, on_cell)
    return store, calls


def _set_cell_with_listener(store: Store, n: int) -> None:
    set_cell = store.set_cell
    for i in range(n):
        set_cell("t", f"r{i % 100}", "c", i)


def _set_cell_in_transaction(store: Store, n: int) -> None:
    def actions() -> None:
        set_cell = store.set_cell
        for i in range(n):
            set_cell("t", f"r{i % 100}", "c", i)

    store.transaction(actions)


FIGURES: dict[str, Callable[[Store, int], None]] = {
    "set_cell_with_listener": _set_cell_with_listener,
    "set_cell_in_transaction": _set_cell_in_transaction,
}


def measure_python(ops: int, rounds: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for name, body in FIGURES.items():
        body(_fresh_store()[0], min(ops, 1000))  # warm caches
        best = float("inf")
        listener_calls = 0
        for _ in range(rounds):
            store, calls = _fresh_store()
            start = time.perf_counter()
            body(store, ops)
            best = min(best, time.perf_counter() - start)
            listener_calls = calls[0]
        results[name] = {
            "ops": ops,
            "seconds": best,
            "ops_per_s": ops / best,
            "listener_calls": listener_calls,
        }
    return results


def measure_node(ops: int, rounds: int) -> dict[str, dict[str, float]] | None:
    node = shutil.which("node")
    if node is None:
        return None
    out = subprocess.run(
        [node, str(NODE_SCRIPT), str(ops), str(rounds)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result: dict[str, dict[str, float]] = json.loads(out.stdout)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=50_000, help="Python set_cell calls per round")
    parser.add_argument("--node-ops", type=int, default=200_000, help="Node calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    node = measure_node(args.node_ops, args.rounds)
    python = measure_python(args.ops, args.rounds)

    rows = []
    for name in FIGURES:
        py = python[name]["ops_per_s"]
        js = node[name]["ops_per_s"] if node else None
        rows.append(
            {
                "figure": name,
                "node_ops_per_s": js,
                "python_ops_per_s": py,
                "node_over_python": (js / py) if js else None,
            }
        )
    print(f"{'figure':<26} {'node ops/s':>14} {'python ops/s':>14} {'node/python':>12}")
    for row in rows:
        js_text = f"{row['node_ops_per_s']:>14,.0f}" if row["node_ops_per_s"] else f"{'n/a':>14}"
        ratio = f"{row['node_over_python']:>11.1f}x" if row["node_over_python"] else f"{'n/a':>12}"
        print(f"{row['figure']:<26} {js_text} {row['python_ops_per_s']:>14,.0f} {ratio}")

    report = {
        "benchmark": "store_ops",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rounds": args.rounds,
        "figures": rows,
        "raw": {"python": python, "node": node},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return report


if __name__ == "__main__":
    main()
