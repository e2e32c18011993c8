"""03_classroom.ipynb: simulated students answer, the teacher aggregates, then locks.

The classroom server runs in this process (``PARTYWIDGET_HOST`` + the teacher key), so
the test can also look at the server's own state. A second client in this process plays
a student trying to write while the room is locked, and after it is unlocked.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from nb_support import NOTEBOOKS, NotebookRun, wait_for

from partywidget.server import ServerThread, run_in_thread
from partywidget.widget import PartyStoreWidget

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


def room_server(server: ServerThread, room: str) -> ClassroomServer:
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

        server = room_server(classroom, room)
        assert server.locked is True
        assert server.refused >= total
        assert len(server.get_content()[0]["answers"]) == total

        student = PartyStoreWidget(room, host=classroom.host).wait_ready(30)
        try:
            wait_for("the student to load the room", lambda: student.get_value("locked") is True)
            # Locked: the server refuses and sends the current cells back, so the
            # student's own Store drops the edits again.
            student.set_row("answers", "intruder-q1", {"student": "intruder", "answer": 1})
            student.set_cell("questions", "q1", "answer", 0)
            student.set_value("locked", False)
            wait_for(
                "the refused edits to be reverted in the student's Store",
                lambda: (
                    "intruder-q1" not in student.get_table("answers")
                    and student.get_cell("questions", "q1", "answer") == 56
                    and student.get_value("locked") is True
                ),
            )
            assert "intruder-q1" not in server.get_content()[0]["answers"]
            locked_view = run.json(
                '_pw_dump([teacher.store.has_row("answers", "intruder-q1"), '
                'teacher.get_cell("questions", "q1", "answer"), teacher.get_value("locked")])'
            )
            assert locked_view == [False, 56, True]

            run.run_rest()  # the teacher unlocks
            wait_for(
                "the unlock to reach the student", lambda: student.get_value("locked") is False
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
