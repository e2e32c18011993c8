"""``python -m benchmarks [--quick] [--only NAME ...] [--json PATH]``: the whole comparison.

Starts what it needs (``partywidget serve`` as a subprocess, ``partykit dev`` with
TinyBase's own server, one Node process of TinyBase clients), runs the scenarios, prints
the table (figure | reference | partywidget | ratio | goal) and writes JSON
(``benchmarks/results/latest.json`` by default). Every process it started is stopped at
the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from benchmarks.harness import (
    DEFAULT_JSON,
    REGISTRY,
    RunConfig,
    format_table,
    run_scenarios,
    sigterm_as_interrupt,
    write_json,
)
from benchmarks.scenarios import ORDER


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="partywidget vs the TinyBase reference (Node clients + partykit dev), "
        "side by side in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="a ~2-minute version")
    parser.add_argument(
        "--tiny", action="store_true", help="minimal sizes: proves the harness works (tests)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=ORDER,
        metavar="NAME",
        help=f"run only these: {', '.join(ORDER)}",
    )
    parser.add_argument("--repeats", type=int, default=3, help="repeats in the full run (3)")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write results ({DEFAULT_JSON})"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = RunConfig(quick=args.quick, tiny=args.tiny, repeats=max(1, args.repeats))
    names = [name for name in ORDER if args.only is None or name in args.only]
    assert all(name in REGISTRY for name in names)
    began = time.monotonic()
    with sigterm_as_interrupt():
        try:
            result = asyncio.run(run_scenarios(names, config))
        except KeyboardInterrupt:
            print("interrupted: every started process was stopped", file=sys.stderr)
            return 130
    print()
    print(format_table(result))
    path = write_json(result, config, args.json)
    print(
        f"\n{time.monotonic() - began:.0f} s; results in {path}. Figures are noisy on a "
        "shared machine: compare ratios within one run, not across runs."
    )
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
