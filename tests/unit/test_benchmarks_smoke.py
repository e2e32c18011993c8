"""The benchmark harness works end to end (``python -m benchmarks --tiny``).

Why: benchmarks are only run by hand, so without a test they rot silently. This runs
every scenario at minimal sizes against the real servers (``partywidget serve`` and
``partykit dev``) and real Node TinyBase clients, then checks the shape of the results
and that no process the harness started outlives it - also when it is interrupted.
No timing is asserted: the figures are whatever this machine measured.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from support.node import node_available
from support.partykit import partykit_available

ROOT = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(ROOT))
from benchmarks.harness import percentile  # noqa: E402

pytestmark = [pytest.mark.node, pytest.mark.timeout(240)]


def _require_node() -> None:
    reason = node_available() or partykit_available()
    if reason is not None:
        pytest.skip(reason)


def _processes_with(token: str) -> list[str]:
    """Command lines of live processes whose environment carries ``token``."""
    found = []
    needle = f"BENCH_SMOKE_TOKEN={token}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(f"{entry.name}: {cmdline}")
        except OSError:
            continue
    return found


def _wait_gone(token: str, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    left = _processes_with(token)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _processes_with(token)
    return left


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env(token: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env["BENCH_SMOKE_TOKEN"] = token
    return env


def test_percentile_interpolates_and_stays_within_samples() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 0) == 1.0
    assert percentile(samples, 100) == 100.0
    assert percentile(samples, 99) <= max(samples)
    assert percentile([7.0], 99) == 7.0


def test_tiny_run_reports_every_scenario_and_leaves_no_process(tmp_path: Path) -> None:
    _require_node()
    token = uuid.uuid4().hex
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny", "--json", str(out)],
        cwd=ROOT,
        env=_env(token),
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    report = json.loads(out.read_text())
    assert report["errors"] == {}
    figures = report["figures"]
    scenarios = {fig["scenario"] for fig in figures}
    assert scenarios == {"latency", "fanout", "burst", "bulk", "store", "widget", "memory"}

    for fig in figures:
        for side in ("reference", "partywidget"):
            data = fig[side]
            assert data["label"]
            if data["value"] is not None:
                assert data["value"] >= 0, fig
        if fig["reference"]["value"] and fig["partywidget"]["value"]:
            assert fig["ratio"] == pytest.approx(
                fig["partywidget"]["value"] / fig["reference"]["value"]
            )

    # Both stacks really ran: every latency and fan-out figure has both values, and the
    # goal rows carry a verdict.
    for fig in figures:
        if fig["scenario"] in {"latency", "fanout", "burst", "store"}:
            assert fig["reference"]["value"] is not None, fig
            assert fig["partywidget"]["value"] is not None, fig
        if fig["goal"] is not None and fig["partywidget"]["value"] is not None:
            assert fig["met"] in (True, False), fig
    # The table went to stdout with every scenario's section.
    for name in scenarios:
        assert f"== {name}" in proc.stdout
    assert _wait_gone(token) == []


def test_interrupt_stops_every_started_process(tmp_path: Path) -> None:
    _require_node()
    token = uuid.uuid4().hex
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--tiny",
            "--only",
            "latency",
            "--json",
            str(tmp_path / "r.json"),
        ],
        cwd=ROOT,
        env=_env(token),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and an
        # ignored SIGINT is inherited: give the harness the disposition a terminal would.
        preexec_fn=_default_sigint,
    )
    try:
        # Wait until servers and the Node driver are up (their own processes exist).
        assert proc.stderr is not None
        for line in proc.stderr:
            if "node driver ready" in line:
                break
        else:
            pytest.fail("the harness never started its Node driver")
        assert len(_processes_with(token)) >= 3  # harness + servers + node
        proc.send_signal(signal.SIGINT)
        proc.stderr.read()
        assert proc.wait(timeout=90) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _wait_gone(token) == []
