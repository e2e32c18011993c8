"""Scenario 5, store ops: ``set_cell`` per second with a listener, and inside one
transaction - partywidget's ``Store`` vs TinyBase 10 in Node.

Why: every edit and every remote change goes through the Store, so its per-call cost
bounds everything above it. The measuring itself is ``benchmarks/store_ops.py`` (and its
``node/store_ops.mjs``); this scenario calls its
``measure_python`` / ``measure_node`` entry points and reports ops/s side by side
(goal: Python >= 1.0x Node).
"""

from __future__ import annotations

import asyncio

from benchmarks.harness import Context, Figure, Goal, Side, describe_error, scenario


@scenario("store", "Store.set_cell ops/s with a listener and in one transaction (Py vs Node)")
async def run(ctx: Context) -> list[Figure]:
    from benchmarks import store_ops

    cfg = ctx.config
    # The same number of calls on both sides: per-call cost depends on how long the
    # loop runs (JIT warm-up in Node, allocator state in Python).
    py_ops = node_ops = cfg.size(50_000, 20_000, 500)
    rounds = cfg.size(5, 3, 1)
    try:
        node = await asyncio.to_thread(store_ops.measure_node, node_ops, rounds)
        node_error = None if node is not None else "node is not on PATH"
    except Exception as error:
        node, node_error = None, describe_error(error)
    # In this thread: the Python loop must not compete with another thread for the GIL.
    python = store_ops.measure_python(py_ops, rounds)
    figures = []
    for name in store_ops.FIGURES:
        ref = (
            Side("TinyBase (Node)", error=node_error)
            if node is None
            else Side("TinyBase (Node)", value=node[name]["ops_per_s"])
        )
        ours = Side("partywidget.Store", value=python[name]["ops_per_s"])
        figures.append(Figure("store", name, "ops/s", ref, ours, Goal(">=", 1.0)))
    return figures
