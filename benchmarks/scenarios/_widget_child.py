"""Child process for the widget scenario: runs ``benchmarks/widget_bench.py``'s
measurements at the sizes it is given and prints their results as one JSON object.

``python -m benchmarks.scenarios._widget_child MATERIALISE_ROWS BYTES_ROWS REPEAT``
(row counts comma-separated). Why a child: the widget starts its own background loop
and an in-thread room server and blocks on ``wait_ready``; in its own interpreter it
neither fights the harness's event loop nor leaves widgets to be collected after it.
"""

from __future__ import annotations

import json
import sys

from benchmarks.widget_bench import bench_frontend_bytes, bench_materialise


def main(argv: list[str]) -> None:
    materialise = [int(n) for n in argv[0].split(",") if n]
    frontend = [int(n) for n in argv[1].split(",") if n]
    repeat = int(argv[2])
    results = {
        "materialise": bench_materialise(materialise, repeat),
        "frontend_bytes": bench_frontend_bytes(frontend),
    }
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
