"""The load scripts' short versions: zero lost messages under steady load.

``benchmarks/soak.py --quick`` (20 clients x 10 edits/s for 5 s) and
``benchmarks/idle.py --quick`` (200 idle connections + 10 writers for 3 s), each against
a ``partywidget serve`` subprocess on a real SQLite file, with raw-WebSocket clients
speaking the real protocol. Figures are printed (``-s``) but never asserted on: only
correctness is (no lost broadcast, every row's stored value is its sender's last).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.reliability import REPO_ROOT, SRC

pytestmark = pytest.mark.timeout(180)


def _run(script: str, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=170,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=False,
    )
    assert out.exists(), proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(out.read_text())
    print(json.dumps(result))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return result


def test_soak_quick_loses_nothing(tmp_path: Path) -> None:
    result = _run("soak.py", tmp_path)
    assert result["broadcasts_lost"] == 0
    assert result["broadcasts_extra"] == 0
    assert result["rows_wrong"] == 0
    assert result["server_errors"] == 0
    assert isinstance(result["edits_sent"], int) and result["edits_sent"] > 0


def test_idle_quick_loses_nothing(tmp_path: Path) -> None:
    result = _run("idle.py", tmp_path)
    assert result["deliveries_lost"] == 0
    assert result["edits"] > 0
