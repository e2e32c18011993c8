"""The benchmark harness: scenario registry, statistics, the comparison table, JSON.

Why one harness: partywidget's performance claims are all *relative* to the reference
(TinyBase 10.0.1 Node clients with partysocket, through ``partykit dev``), and relative
figures only mean something when both sides run on the same machine in the same run,
under the same background load. Every scenario therefore measures both sides itself
and returns :class:`Figure` rows holding the two values; the harness only orders, prints
and saves them. Goals are reported (met / missed), never asserted: tests prove that the
harness runs, benchmarks measure.

Ratios are always ``partywidget / reference`` in the figure's own unit, so a goal reads
the same way for times (``<= 0.5x``: we take at most half the time) and rates
(``>= 10x``: we do ten times as many per second).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_JSON = RESULTS_DIR / "latest.json"

# The harness runs from a checkout: the package (src/) and the test support helpers
# (tests/support: partykit dev, ports) must be importable without `pip install`.
for _path in (ROOT / "src", ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


# -- statistics -------------------------------------------------------------------------
def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks.

    Why not ``statistics.quantiles``: it needs two samples and extrapolates past the
    largest one for high ``q``; a p99 must never exceed the max we observed.
    """
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    if len(ordered) == 1:
        return float(ordered[0])
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = math.ceil(position)
    fraction = position - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


@dataclass(frozen=True)
class Stats:
    """Summary of one sample set (latencies, times): what the table shows."""

    n: int
    p50: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        return cls(
            n=len(samples),
            p50=percentile(samples, 50),
            p99=percentile(samples, 99),
            max=float(max(samples)),
            mean=float(statistics.fmean(samples)),
        )


# -- figures ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Goal:
    """A target for ``ratio = partywidget / reference``: ``op`` is ``"<="`` or ``">="``.

    ``absolute`` goals (e.g. "1M cells + DataFrame <= 5 s") compare the partywidget value
    itself instead of the ratio.
    """

    op: Literal["<=", ">="]
    target: float
    absolute: bool = False
    unit: str = ""

    def text(self) -> str:
        if self.absolute:
            return f"{self.op} {self.target:g} {self.unit}".strip()
        return f"{self.op} {self.target:g}x"

    def met(self, value: float) -> bool:
        return value <= self.target if self.op == "<=" else value >= self.target


@dataclass
class Side:
    """One side of a figure: the value, or why there is none (a recorded failure)."""

    label: str
    value: float | None = None
    error: str | None = None
    samples: list[float] | None = None

    def cell(self, unit: str) -> str:
        if self.error is not None:
            return "FAIL"
        if self.value is None:
            return "-"
        return format_value(self.value, unit)


@dataclass
class Figure:
    """One row of the table: a measurement taken on the reference and on partywidget."""

    scenario: str
    name: str
    unit: str
    reference: Side
    partywidget: Side
    goal: Goal | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        ref, ours = self.reference.value, self.partywidget.value
        if ref is None or ours is None or self.reference.error or self.partywidget.error:
            return None
        if ref == 0:
            return None
        return ours / ref

    @property
    def met(self) -> bool | None:
        """Whether the goal is met (``None``: no goal, or a side is missing)."""
        if self.goal is None:
            return None
        if self.goal.absolute:
            ours = self.partywidget
            if ours.error is not None:
                return False
            return None if ours.value is None else self.goal.met(ours.value)
        if self.partywidget.error is not None:
            return False
        if self.reference.error is not None and self.partywidget.value is not None:
            return True  # the reference cannot do it at all, we can
        ratio = self.ratio
        return None if ratio is None else self.goal.met(ratio)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["met"] = self.met
        data["goal"] = (
            None if self.goal is None else {**asdict(self.goal), "text": self.goal.text()}
        )
        return data


def format_value(value: float, unit: str) -> str:
    if unit in {"ms", "s"}:
        return f"{value:.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    if unit in {"/s", "ops/s", "edits/s"}:
        return f"{value:,.0f} {unit}"
    if unit in {"MiB", "KiB", "B"}:
        return f"{value:,.1f} {unit}" if value < 1000 else f"{value:,.0f} {unit}"
    return f"{value:.4g} {unit}".strip()


def ms(samples_us: Iterable[float]) -> list[float]:
    """Microsecond samples (both clocks' unit) -> milliseconds for the table."""
    return [s / 1000.0 for s in samples_us]


def stat_figures(
    scenario: str,
    name: str,
    reference: tuple[str, Sequence[float] | BaseException | str],
    partywidget: tuple[str, Sequence[float] | BaseException | str],
    *,
    unit: str = "ms",
    stats: Sequence[str] = ("p50", "p99"),
    goals: dict[str, Goal] | None = None,
    note: str = "",
) -> list[Figure]:
    """Rows ``"<name> <stat>"`` for each stat, from two sample sets (or two failures)."""

    def side(label: str, data: Sequence[float] | BaseException | str, stat: str) -> Side:
        if isinstance(data, (BaseException, str)):
            return Side(label, error=describe_error(data))
        if not data:
            return Side(label, error="no samples")
        return Side(label, value=getattr(Stats.of(data), stat), samples=None)

    rows = []
    for stat in stats:
        rows.append(
            Figure(
                scenario,
                f"{name} {stat}",
                unit,
                side(*reference, stat),
                side(*partywidget, stat),
                (goals or {}).get(stat),
                note,
            )
        )
    return rows


def describe_error(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


# -- scenarios --------------------------------------------------------------------------
@dataclass
class RunConfig:
    """What the run was asked to do; scenarios size themselves from ``quick``/``tiny``.

    ``tiny`` is for the smoke test: every code path, minimal sizes, seconds not minutes.
    """

    quick: bool = False
    tiny: bool = False
    repeats: int = 3

    def size(self, full: int, quick: int, tiny: int) -> int:
        return tiny if self.tiny else quick if self.quick else full


ScenarioFn = Callable[["Context"], Awaitable[list[Figure]]]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    run: ScenarioFn


REGISTRY: dict[str, Scenario] = {}


def scenario(name: str, description: str) -> Callable[[ScenarioFn], ScenarioFn]:
    """Register a scenario coroutine ``async def run(ctx) -> list[Figure]``."""

    def register(fn: ScenarioFn) -> ScenarioFn:
        REGISTRY[name] = Scenario(name, description, fn)
        return fn

    return register


@dataclass
class Context:
    """What a scenario gets: the run config and lazily started shared services.

    Services (our server, ``partykit dev``, the Node driver) are started on first use
    and stopped by :meth:`aclose`, whatever happened, so a failing scenario never leaves
    processes behind and scenarios run with ``--only`` start only what they need.
    """

    config: RunConfig
    log: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr))
    _services: dict[str, Any] = field(default_factory=dict)
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _room_counter: int = 0

    async def service(self, key: str, start: Callable[[], Awaitable[Any]]) -> Any:
        if key not in self._services:
            self.log(f"  starting {key} ...")
            began = time.monotonic()
            self._services[key] = await start()
            self.log(f"  {key} ready in {time.monotonic() - began:.1f} s")
        return self._services[key]

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    def room(self, what: str) -> str:
        """A room name unique in this run (rooms are never reused across measurements)."""
        self._room_counter += 1
        return f"bench-{what}-{os.getpid()}-{self._room_counter}"

    async def aclose(self) -> None:
        interrupted: BaseException | None = None
        while self._closers:
            closer = self._closers.pop()
            try:
                await asyncio.wait_for(closer(), 60)
            except (KeyboardInterrupt, asyncio.CancelledError) as error:
                interrupted = error  # finish closing, then let the interrupt through
            except BaseException as error:  # keep closing the others
                self.log(f"  cleanup error: {describe_error(error)}")
        self._services.clear()
        if interrupted is not None:
            raise interrupted


@dataclass
class RunResult:
    figures: list[Figure]
    errors: dict[str, str]
    seconds: dict[str, float]


async def run_scenarios(
    names: Sequence[str], config: RunConfig, log: Callable[[str], None] | None = None
) -> RunResult:
    """Run the named scenarios in order; one crashing scenario is recorded, not fatal."""
    ctx = Context(config) if log is None else Context(config, log)
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    seconds: dict[str, float] = {}
    try:
        for name in names:
            entry = REGISTRY[name]
            ctx.log(f"[{name}] {entry.description}")
            began = time.monotonic()
            try:
                figures.extend(await entry.run(ctx))
            except (KeyboardInterrupt, asyncio.CancelledError):
                raise
            except Exception as error:
                errors[name] = describe_error(error)
                ctx.log(f"[{name}] crashed: {describe_error(error)}")
                ctx.log(traceback.format_exc())
            seconds[name] = time.monotonic() - began
            ctx.log(f"[{name}] done in {seconds[name]:.1f} s")
    finally:
        await ctx.aclose()
    return RunResult(figures, errors, seconds)


# -- output -----------------------------------------------------------------------------
HEADERS = ("figure", "reference", "partywidget", "ratio", "goal")


def table_rows(figures: Sequence[Figure]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for fig in figures:
        ratio = fig.ratio
        goal = "" if fig.goal is None else fig.goal.text()
        if fig.met is True:
            goal += " ok"
        elif fig.met is False:
            goal += " MISSED"
        rows.append(
            (
                f"{fig.name} [{fig.reference.label} | {fig.partywidget.label}]",
                fig.reference.cell(fig.unit),
                fig.partywidget.cell(fig.unit),
                "n/a" if ratio is None else f"{ratio:.2f}x",
                goal.strip(),
            )
        )
    return rows


def format_table(result: RunResult) -> str:
    rows = table_rows(result.figures)
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(HEADERS)
    ]
    lines = []
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines.append(fmt.format(*HEADERS))
    lines.append("  ".join("-" * w for w in widths))
    current = None
    for fig, row in zip(result.figures, rows, strict=True):
        if fig.scenario != current:
            current = fig.scenario
            lines.append(f"== {current}")
        lines.append(fmt.format(*row))
    failures = [
        (fig, side)
        for fig in result.figures
        for side in (fig.reference, fig.partywidget)
        if side.error is not None
    ]
    if failures:
        lines.append("")
        lines.append("failures (recorded, not crashes):")
        for fig, side in failures:
            lines.append(f"  {fig.name} [{side.label}]: {side.error}")
    if result.errors:
        lines.append("")
        lines.append("scenarios that crashed:")
        for name, error in result.errors.items():
            lines.append(f"  {name}: {error}")
    return "\n".join(lines)


def write_json(result: RunResult, config: RunConfig, path: Path) -> Path:
    """Write the run (figures with raw samples, errors, machine) as JSON to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent == RESULTS_DIR:
        # Results are per machine and per run: keep them out of git without touching
        # the repository's .gitignore.
        (RESULTS_DIR / ".gitignore").write_text("*\n", "utf-8")
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": asdict(config),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_at_end": load,
        },
        "seconds": result.seconds,
        "errors": result.errors,
        "figures": [fig.to_json() for fig in result.figures],
    }
    path.write_text(json.dumps(report, indent=2, allow_nan=False, default=str) + "\n", "utf-8")
    return path


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so ``finally`` blocks stop every process."""

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
