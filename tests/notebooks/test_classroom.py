"""03_classroom.ipynb: simulated students answer, the teacher aggregates, then locks.

The classroom server runs in this process (``PARTYWIDGET_HOST`` + the teacher key), so
the test can also look at the server's own state. A second client in this process plays
a student trying to write while the room is locked, and after it is unlocked.

The last tests run the class without a notebook, the way the docstring of
``classroom_server.py`` tells a teacher to: ``partywidget serve --party
notebooks/classroom_server.py:ClassroomServer`` with ``CLASSROOM_TEACHER_KEY``, a
teacher client, ``students.py`` twice (open, then locked) and a hand-driven student.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from partywidget.server import ServerThread, run_in_thread
from partywidget.widget import PartyStoreWidget
from support.notebooks import NOTEBOOKS, SRC, NotebookRun
from support.waiting import wait_for

sys.path.insert(0, str(NOTEBOOKS))
from classroom_server import ClassroomServer, classroom_app

STUDENTS, QUESTIONS = 6, 5
KEY = "teacher-" + uuid.uuid4().hex

STATE = """
_pw_dump({
    "rows": len(teacher.df("answers")),
    "per_student": _pw_json.loads(per_student.to_json(orient="index")),
    "correct_total": int(marked["correct"].sum()),
    "values": {k: v for k, v in teacher.values.items() if k != "schema"},
    "schema": teacher.get_value("schema") == SCHEMA,
    "dtypes": {c: str(t) for c, t in teacher.df("answers").dtypes.items()},
    "answers": teacher.get_table("answers"),
})
"""


@pytest.fixture
def classroom() -> Iterator[ServerThread]:
    with run_in_thread(classroom_app(KEY)) as server:
        yield server


def classroom_instance(server: ServerThread, room: str) -> ClassroomServer:
    """The party instance serving ``room``, to look at its state directly."""
    instance: Any = server.app.state.registry.rooms[("main", room)].server
    assert isinstance(instance, ClassroomServer)
    return instance


def test_classroom_answers_aggregate_and_lock(
    kernel_env: None, classroom: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTYWIDGET_HOST", classroom.host)
    monkeypatch.setenv("CLASSROOM_TEACHER_KEY", KEY)
    room = f"class-{uuid.uuid4().hex[:8]}"
    total = STUDENTS * QUESTIONS
    with NotebookRun("03_classroom.ipynb", f"ROOM = {room!r}\nSTUDENTS = {STUDENTS}") as run:
        run.run_until_cleanup()
        printed = run.own_cells_stdout()
        assert f"classroom server at {classroom.host}" in printed
        assert f"answers sent: {total}, accepted: {total}, refused: 0" in printed
        assert f"answers sent: {total}, accepted: 0, refused: {total}" in printed
        assert f"answers before: {total} after: {total}" in printed

        state = run.json(STATE)
        assert state["rows"] == total
        assert len(state["per_student"]) == STUDENTS
        assert all(s["answered"] == QUESTIONS for s in state["per_student"].values())
        assert sum(s["correct"] for s in state["per_student"].values()) == state["correct_total"]
        assert 0 < state["correct_total"] < total  # seeded: some right, some wrong
        assert state["values"] == {"locked": True}
        assert state["schema"] is True
        assert state["dtypes"]["answer"] == "Float64"
        # the schema's defaults filled the cells students left out
        assert all(row["note"] == "" for row in state["answers"].values())

        server = classroom_instance(classroom, room)
        assert server.locked is True
        assert server.refused >= total
        assert len(server.get_content()[0]["answers"]) == total

        student = PartyStoreWidget(room, host=classroom.host).wait_ready(30)
        try:
            wait_for(
                lambda: student.get_value("locked") is True, what="the student to load the room"
            )
            # Locked: the server refuses and sends the current cells back, so the
            # student's own Store drops the edits again.
            student.set_row("answers", "intruder-q1", {"student": "intruder", "answer": 1})
            student.set_cell("questions", "q1", "answer", 0)
            student.set_value("locked", False)
            wait_for(
                lambda: (
                    "intruder-q1" not in student.get_table("answers")
                    and student.get_cell("questions", "q1", "answer") == 56
                    and student.get_value("locked") is True
                ),
                what="the refused edits to be reverted in the student's Store",
            )
            assert "intruder-q1" not in server.get_content()[0]["answers"]
            locked_view = run.json(
                '_pw_dump([teacher.store.has_row("answers", "intruder-q1"), '
                'teacher.get_cell("questions", "q1", "answer"), teacher.get_value("locked")])'
            )
            assert locked_view == [False, 56, True]

            run.run_rest()  # the teacher unlocks
            wait_for(
                lambda: student.get_value("locked") is False, what="the unlock to reach the student"
            )
            student.set_row(
                "answers", "late-q1", {"student": "late", "question": "q1", "answer": 56}
            )
            late = run.json(
                """
await _pw_until(lambda: teacher.store.has_row("answers", "late-q1"))
_pw_dump(teacher.get_table("answers")["late-q1"])
"""
            )
            assert late == {
                "student": "late",
                "question": "q1",
                "answer": 56,
                "seconds": 0,
                "note": "",
            }
            assert server.locked is False
        finally:
            student.close()


# --------------------------------------------------------------------------------------
# partywidget serve --party notebooks/classroom_server.py:ClassroomServer
# --------------------------------------------------------------------------------------

SPEC = f"{NOTEBOOKS / 'classroom_server.py'}:ClassroomServer"
SCHEMA = {
    "questions": {"text": {"type": "string"}, "answer": {"type": "number"}},
    "answers": {
        "student": {"type": "string"},
        "question": {"type": "string"},
        "answer": {"type": "number"},
        "seconds": {"type": "number", "default": 0},
        "note": {"type": "string", "default": ""},
    },
}
CLI_QUESTIONS = {"q1": {"text": "7 x 8", "answer": 56}, "q2": {"text": "12 + 30", "answer": 42}}


class Serve:
    """``python -m partywidget serve --party SPEC`` on a free port, with its printed host
    (its log goes to a file: shown when a check fails, never able to fill a pipe)."""

    def __init__(self, log: IO[str], key: str | None) -> None:
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        env.pop("CLASSROOM_TEACHER_KEY", None)
        if key is not None:
            env["CLASSROOM_TEACHER_KEY"] = key
        self.log = log
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "partywidget", "serve"),
                *("--port", "0", "--db", ":memory:", "--party", SPEC),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        banner = [self.proc.stdout.readline() for _ in range(3)]
        match = re.search(r'host="([^"]+)"', banner[2])
        assert match, (banner, self.read_log())
        self.host = match.group(1)

    def read_log(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate(timeout=30)
        return self.proc.returncode


@pytest.fixture
def serve_party(tmp_path: Path) -> Iterator[Any]:
    started: list[Serve] = []

    def start(key: str | None) -> Serve:
        log = open(tmp_path / f"serve-{len(started)}.log", "w")  # noqa: SIM115 (closed below)
        started.append(Serve(log, key))
        return started[-1]

    yield start
    for server in started:
        server.stop()
        server.log.close()


def run_students(host: str, room: str, *options: str) -> str:
    done = subprocess.run(
        [
            *(sys.executable, str(NOTEBOOKS / "students.py"), "--host", host, "--room", room),
            *("--students", "4", "--timeout", "90", *options),
        ],
        capture_output=True,
        text=True,
        timeout=150,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_partywidget_serve_party_runs_the_classroom(serve_party: Any) -> None:
    server = serve_party(KEY)
    room = f"cli-class-{uuid.uuid4().hex[:8]}"
    teacher = PartyStoreWidget(room, host=server.host, query={"key": KEY}, tables_schema=SCHEMA)
    student = PartyStoreWidget(room, host=server.host)
    try:
        teacher.wait_ready(30)
        student.wait_ready(30)
        teacher.set_table("questions", CLI_QUESTIONS)
        teacher.set_values({"schema": SCHEMA, "locked": False})
        teacher.wait_flush(30)  # now the teacher's Store equals the server...
        # ...and still holds its writes: the key was honoured (refused ones are reverted)
        assert teacher.wait_server_content() == (
            {"questions": CLI_QUESTIONS},
            {"schema": SCHEMA, "locked": False},
        )

        out = run_students(server.host, room)
        assert "answers sent: 8, accepted: 8, refused: 0" in out, out
        answers = teacher.wait_server_content()[0]["answers"]
        assert sorted(answers) == sorted(
            f"s{i}-{q}-1" for i in ("01", "02", "03", "04") for q in CLI_QUESTIONS
        )
        assert all(row["note"] == "" for row in answers.values())  # the schema's default

        # A student may not touch the questions nor the values: reverted in its Store.
        student.wait_until(lambda: student.get_value("schema") is not None, 30)
        student.set_cell("questions", "q1", "answer", 0)
        student.set_value("locked", True)
        student.wait_flush(30)  # refused: the corrections make its Store equal the server again
        assert student.get_cell("questions", "q1", "answer") == 56
        assert student.get_value("locked") is False

        teacher.set_value("locked", True)
        teacher.wait_flush(30)
        out = run_students(server.host, room, "--attempt", "2")
        assert "answers sent: 8, accepted: 0, refused: 8" in out, out
        assert len(teacher.wait_server_content()[0]["answers"]) == 8
        assert "refused a student edit (the room is locked)" in server.read_log()
    finally:
        student.close()
        teacher.close()
    assert server.stop() == 0, server.read_log()


def test_serve_party_without_a_teacher_key_has_no_teacher(serve_party: Any) -> None:
    """Fail closed: with no ``CLASSROOM_TEACHER_KEY`` even an empty key is no teacher."""
    server = serve_party(None)
    room = f"cli-nokey-{uuid.uuid4().hex[:8]}"
    client = PartyStoreWidget(room, host=server.host, query={"key": ""}).wait_ready(30)
    try:
        client.set_value("locked", True)
        client.set_row("answers", "a1", {"student": "s", "question": "q1", "answer": 1})
        client.wait_flush(30)
        assert client.get_content() == (
            {"answers": {"a1": {"student": "s", "question": "q1", "answer": 1}}},
            {},
        )
    finally:
        client.close()
    assert "no teacher key (set CLASSROOM_TEACHER_KEY)" in server.read_log()
