"""``PARTYWIDGET_REQUIRE_ALL=1`` turns every kind of skip into a failure (CI relies on it),
and without it a skip stays a skip. Runs pytest on a probe file in a child process with
the root conftest loaded as a plugin, so the hooks under test are the real ones."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

PROBE = """
import pytest

def test_runs():
    pass

def test_skip_in_body():
    pytest.skip("no frobnicator")

@pytest.mark.skipif(True, reason="marker says no")
def test_skip_marker():
    pass

@pytest.fixture(scope="session")
def tool():
    pytest.skip("tool missing")

def test_skip_in_fixture(tool):
    pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_failure():
    assert False
"""

PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "conftest", "-q", "-rA"]
PYTEST += ["-o", "asyncio_default_fixture_loop_scope=function"]

MODULE_SKIP = 'import pytest\npytest.importorskip("partywidget_no_such_module")\n'


def run_probe(tmp_path: Path, require_all: str | None, files: dict[str, str]) -> str:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "PARTYWIDGET_REQUIRE_ALL"}
    if require_all is not None:
        env["PARTYWIDGET_REQUIRE_ALL"] = require_all
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [*PYTEST, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    return done.stdout + done.stderr


def summary(output: str) -> str:
    lines = [line for line in output.splitlines() if re.search(r"\bin [\d.]+s\b", line)]
    assert lines, output
    return lines[-1]


@pytest.mark.parametrize("value", [None, "0"])
def test_without_the_switch_skips_stay_skips(tmp_path: Path, value: str | None) -> None:
    output = run_probe(tmp_path, value, {"test_probe.py": PROBE})
    assert "1 passed, 3 skipped, 1 xfailed" in summary(output), output


def test_with_the_switch_every_skip_fails_and_says_why(tmp_path: Path) -> None:
    output = run_probe(tmp_path, "1", {"test_probe.py": PROBE})
    assert "1 failed, 1 passed, 1 xfailed, 2 errors" in summary(output), output
    for reason in ("no frobnicator", "marker says no", "tool missing"):
        assert f"PARTYWIDGET_REQUIRE_ALL=1 forbids skips: {reason}" in output, output


def test_with_the_switch_a_module_skipped_at_collection_fails(tmp_path: Path) -> None:
    output = run_probe(tmp_path, "1", {"test_modskip.py": MODULE_SKIP})
    assert "1 error" in summary(output), output
    assert "forbids skips: could not import 'partywidget_no_such_module'" in output, output
