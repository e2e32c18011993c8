"""A short coverage-guided run of ``atheris_server.py`` (atheris is in the dev extras; it
skips without it, which fails under ``PARTYWIDGET_REQUIRE_ALL=1``).

The long run: ``PYTHONPATH=src .venv/bin/python tests/fuzz/atheris_server.py
-runs=100000``. Any oracle failure or exception makes libFuzzer exit non-zero and save
the input as ``crash-*`` (here in a temporary directory shown in the failure).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RUNS = int(os.environ.get("PARTYWIDGET_ATHERIS_RUNS", "2000"))

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("atheris") is None,
        reason="atheris is not installed (pip install -e '.[dev]')",
    ),
    pytest.mark.timeout(max(120, RUNS // 100)),
]


def test_atheris_finds_no_crash(tmp_path: Path) -> None:
    src = HERE.parents[1] / "src"
    proc = subprocess.run(
        [sys.executable, str(HERE / "atheris_server.py"), f"-runs={RUNS}", "-seed=1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
        },
        timeout=max(110, RUNS // 100),
        check=False,
    )
    tail = "\n".join(proc.stderr.splitlines()[-40:])
    assert proc.returncode == 0, f"{tail}\ncrash inputs: {sorted(tmp_path.glob('crash-*'))}"
    assert f"Done {RUNS} runs" in proc.stderr, tail
