"""The benchmark scenarios, one module each; importing this package registers them.

Order here is the order of the table. Modules import optional dependencies (pandas,
the widget, the other benchmark modules) inside their ``run`` so that one missing
piece fails one scenario, recorded in the results, not the whole harness.
"""

from __future__ import annotations

from benchmarks.scenarios import bulk, burst, fanout, latency, memory, store, widget

ORDER = ("latency", "fanout", "burst", "bulk", "store", "widget", "memory")

__all__ = ["ORDER", "bulk", "burst", "fanout", "latency", "memory", "store", "widget"]
