"""Simulate a class: N students, each its own client, answering the teacher's questions.

Each student is a separate :class:`~partywidget.PartyStoreWidget` (its own Store and
WebSocket), as if 30 notebooks were open in the room. The script

1. waits for the teacher to publish the ``questions`` table and the ``schema`` value,
2. opens one client per student with that schema (typed columns, defaults filled in),
3. for each question, lets every student add one row to ``answers`` (right or wrong
   at random, seeded so runs are repeatable), a little apart in time,
4. flushes every student (:meth:`~partywidget.PartyStoreWidget.flush`): it returns once
   the student's edits are written and a GET of the room equals the student's Store.
   An answer the server refused (room locked) is not stored, and the server sends the
   refusing student the current cells back, so the student's Store drops it too: after
   the flush, each Store *is* the server's content, accepted and refused answers settled.
   Then it prints how many answers the server holds (accepted) and how many it refused.

Usage (``03_classroom.ipynb`` runs it for you)::

    python notebooks/students.py --host 127.0.0.1:1999 --room classroom --students 30
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

from partywidget import PartyStoreWidget

ANSWERS = "answers"
QUESTIONS = "questions"


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (``time.monotonic()``), never below one: every
    wait gets a fair chance even when earlier ones used most of the budget."""
    return max(1.0, deadline - time.monotonic())


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
        # The predicate runs on the widget's loop: Store reads only, nothing blocking.
        probe.wait_until(
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
        deadline = time.monotonic() + args.timeout
        for client in clients.values():
            client.wait_ready(remaining(deadline))
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

        # 4. Settle: each student's Store equals the server (refused rows dropped again).
        deadline = time.monotonic() + args.timeout
        for client in clients.values():
            client.wait_flush(remaining(deadline))
        stored = clients[names[0]].wait_server_content()[0].get(ANSWERS, {})
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
