"""Scenario 6, widget: DataFrame materialisation and bytes to the front-end per remote
cell change.

Why here: these figures have no TinyBase counterpart (TinyBase has no DataFrames or
Jupyter front-end), so they are reported in the partywidget column against their goals
(100k x 5 cells materialised in <= 100 ms; one remote cell change < 1 KB to the page).
The measuring is ``benchmarks/widget_bench.py``, run in a child process (``_widget_child.py``) at sizes that fit the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from benchmarks.harness import ROOT, Context, Figure, Goal, Side, scenario

NO_REFERENCE = "(no TinyBase equivalent)"


def figures_from_report(report: dict[str, Any]) -> list[Figure]:
    """Rows from widget_bench's results (``materialise`` / ``frontend_bytes`` lists)."""
    figures = []

    def row(name: str, unit: str, value: Any, goal: Goal | None = None) -> None:
        ours = (
            Side("partywidget", value=float(value))
            if value is not None
            else Side("partywidget", error="not measured")
        )
        figures.append(Figure("widget", name, unit, Side(NO_REFERENCE), ours, goal))

    for m in report.get("materialise", []):
        n = m["rows"]
        goal = Goal("<=", 100.0, absolute=True, unit="ms") if n >= 100_000 else None
        row(f"DataFrame build {n:,} rows x {m.get('cells', 5)}", "ms", m.get("build_ms"), goal)
        row(f"DataFrame cached {n:,} rows", "ms", m.get("cached_ms"))
        row(f"DataFrame -> Changes, one cell edited, {n:,} rows", "ms", m.get("diff_one_cell_ms"))
    for b in report.get("frontend_bytes", []):
        n = b["rows"]
        row(
            f"front-end bytes per remote cell change ({n:,} rows)",
            "B",
            b.get("bytes_per_remote_cell_change"),
            Goal("<=", 1024, absolute=True, unit="B"),
        )
        row(f"front-end initial snapshot ({n:,} rows)", "B", b.get("snapshot_bytes"))
    return figures


@scenario("widget", "DataFrame materialisation, bytes to the front-end per remote change")
async def run(ctx: Context) -> list[Figure]:
    cfg = ctx.config
    materialise = cfg.size(100_000, 100_000, 1_000)
    frontend = cfg.size(100_000, 1_000, 100)
    sizes = ",".join(str(n) for n in sorted({10_000 if not cfg.tiny else 100, materialise}))
    repeat = cfg.size(7, 3, 1)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), str(ROOT)])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.scenarios._widget_child",
        sizes,
        str(frontend),
        str(repeat),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 900)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"widget benchmark failed: {err.decode(errors='replace')[-800:]}")
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return figures_from_report(report)
