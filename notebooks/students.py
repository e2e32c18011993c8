"""Simulate a class: N students, each its own client, answering the teacher's questions.

Each student is a separate :class:`~partywidget.PartyStoreWidget` (its own Store and
WebSocket), as if 30 notebooks were open in the room. The script

1. waits for the teacher to publish the ``questions`` table and the ``schema`` value,
2. opens one client per student with that schema (typed columns, defaults filled in),
3. for each question, lets every student add one row to ``answers`` (right or wrong
   at random, seeded so runs are repeatable), a little apart in time,
4. waits until each student's answers have *settled*: the server stored them, or
   refused them (room locked) and sent the current cells back so the student's Store
   dropped them; then prints how many were accepted and refused.

Usage (``03_classroom.ipynb`` runs it for you)::

    python notebooks/students.py --host 127.0.0.1:1999 --room classroom --students 30
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from partywidget import PartyStoreWidget
from partywidget.codec import decode_content

ANSWERS = "answers"
QUESTIONS = "questions"


def wait_until(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def room_content(client: PartyStoreWidget) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the *server* holds now (an HTTP GET of the room's store), not our Store."""
    text = httpx.get(client.persister.store_url, timeout=10).text  # type: ignore[attr-defined]
    return decode_content(text) if text else ({}, {})


def student_rows(tables: dict[str, Any], student: str) -> set[str]:
    return {
        row_id for row_id, row in tables.get(ANSWERS, {}).items() if row.get("student") == student
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default=os.environ.get("PARTYWIDGET_HOST") or "127.0.0.1:1999")
    parser.add_argument("--room", default="classroom")
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between answers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--attempt", type=int, default=1, help="tags row ids of a re-run")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    # 1. The teacher's questions and schema (read with a listen-only client).
    probe = PartyStoreWidget(args.room, host=args.host, read_only=True).wait_ready(args.timeout)
    try:
        wait_until(
            "the teacher's questions and schema",
            lambda: bool(probe.get_table(QUESTIONS)) and probe.get_value("schema") is not None,
            args.timeout,
        )
        questions: dict[str, dict[str, Any]] = probe.get_table(QUESTIONS)
        schema: dict[str, Any] = probe.get_value("schema")
    finally:
        probe.close()

    # 2. One client per student.
    names = [f"s{i + 1:02d}" for i in range(args.students)]
    skill = {name: rng.uniform(0.3, 0.95) for name in names}
    clients = {
        name: PartyStoreWidget(args.room, host=args.host, tables_schema=schema) for name in names
    }
    try:
        for client in clients.values():
            client.wait_ready(args.timeout)
        print(f"{len(clients)} students joined room {args.room!r}", flush=True)

        # 3. Answer every question; the schema fills in cells we leave out.
        sent = 0
        for question_id, question in sorted(questions.items()):
            order = list(names)
            rng.shuffle(order)
            for name in order:
                right = rng.random() < skill[name]
                answer = question["answer"] if right else question["answer"] + rng.randint(1, 9)
                row = {
                    "student": name,
                    "question": question_id,
                    "answer": answer,
                    "seconds": round(rng.uniform(5, 60), 1),
                }
                clients[name].set_row(ANSWERS, f"{name}-{question_id}-{args.attempt}", row)
                sent += 1
                if args.interval > 0:
                    time.sleep(args.interval)

        # 4. Settle: each student's Store agrees with the server about its own rows.
        def settled() -> bool:
            on_server = room_content(clients[names[0]])[0]
            return all(
                student_rows({ANSWERS: client.get_table(ANSWERS)}, name)
                == student_rows(on_server, name)
                for name, client in clients.items()
            )

        wait_until("answers to settle", settled, args.timeout)
        stored = room_content(clients[names[0]])[0].get(ANSWERS, {})
        accepted = sum(
            1
            for name in names
            for question_id in questions
            if f"{name}-{question_id}-{args.attempt}" in stored
        )
        print(f"answers sent: {sent}, accepted: {accepted}, refused: {sent - accepted}", flush=True)
    finally:
        for client in clients.values():
            client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
