"""``partywidget demo`` / ``python -m partywidget.demo``: edits really cross both ways.

The demo's printed lines are checked for both directions, and -- so that the lines cannot
be printed without the edits happening -- a third client loads the room from the server
the test started and finds the demo's final state there.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from partywidget.demo import build_parser, run
from partywidget.server import run_in_thread
from partywidget.widget import PartyStoreWidget
from support.ports import free_port

SRC = Path(__file__).parents[2] / "src"


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = run(build_parser().parse_args(list(argv)), out)
    return code, out.getvalue()


def _assert_crossed(text: str) -> None:
    # alice -> ... then bob <- ..., and the other way round, for each step.
    assert re.search(r"alice -> pets: fido.*\n\s+bob\s+<- pets: fido, felix", text)
    assert re.search(r"bob\s+-> pets/felix/age = 8\n\s+alice <- pets/felix/age = 8", text)
    assert "alice <- pets/polly = (parrot, 1)" in text
    assert "bob   <- pets/fido deleted" in text
    assert "bob   <- owner = 'Ada'" in text
    assert "alice <- visits = 2" in text
    assert "alice and bob agree: True" in text
    assert "the server holds the same (a GET of the room): True" in text
    # bob's final DataFrame: felix is 8, polly arrived, fido is gone.
    assert re.search(r"felix\s+cat\s+8", text)
    assert re.search(r"polly\s+parrot\s+1", text)
    assert not re.search(r"fido\s+dog", text)


def test_demo_embedded_server_shows_edits_crossing() -> None:
    code, text = _run("--pause", "0")
    assert code == 0, text
    assert "Started an embedded room server at http://127.0.0.1:" in text
    _assert_crossed(text)


def test_demo_writes_reach_the_server_for_a_third_client() -> None:
    room = f"demo-{uuid.uuid4().hex[:8]}"
    with run_in_thread() as server:
        code, text = _run("--pause", "0", "--host", server.host, "--room", room)
        assert code == 0, text
        assert f"Using the room server at {server.host}." in text
        _assert_crossed(text)
        third = PartyStoreWidget(room, host=server.host)
        try:
            third.wait_ready(20)
            assert third.get_table("pets") == {
                "felix": {"species": "cat", "age": 8},
                "polly": {"species": "parrot", "age": 1},
            }
            assert third.values == {"owner": "Ada", "visits": 2}
        finally:
            third.close()


def test_demo_fails_cleanly_without_a_server(capsys: object) -> None:
    port = free_port()  # nothing listens there
    code, _ = _run("--pause", "0", "--host", f"127.0.0.1:{port}", "--timeout", "1")
    assert code == 1


def test_python_dash_m_runs_the_demo() -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    done = subprocess.run(
        [sys.executable, "-m", "partywidget.demo", "--pause", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    _assert_crossed(done.stdout)
