"""A room server for a classroom: students may only add answers, the teacher can lock.

Why a custom server: TinyBase's PartyKit server lets every client write anything. A class
needs rules enforced *on the server*, where students cannot bypass them, and TinyBase's
server offers exactly that through its ``can_set_*`` / ``can_del_*`` hooks, which
partywidget's :class:`~partywidget.server.TinyBasePartyKitServer` runs the same way.

Rules of :class:`ClassroomServer`:

* The teacher is the connection whose WebSocket URL carries ``?key=<teacher key>``
  (``PartyStoreWidget(room, query={"key": KEY})``). The teacher may write anything.
* Students may only write the ``answers`` table, and not at all while the room's
  ``locked`` value is true. The questions and every value (``locked``, ``schema``) are
  the teacher's.
* A refused change is not stored nor broadcast; the server sends the refusing student
  the current cells back, so the student's Store drops the refused edit too.

Run it for a real class (students on other machines point at it), either with the
stock command line, which loads this class for party ``main``::

    CLASSROOM_TEACHER_KEY=... partywidget serve \
        --party notebooks/classroom_server.py:ClassroomServer --db classroom.sqlite3

(``partywidget serve`` adds its options: ``--host``/``--public``, message limits, log
level; the key comes from ``$CLASSROOM_TEACHER_KEY``, read when a room starts: without
it nobody is the teacher and every write but answers is refused) or with this script::

    python notebooks/classroom_server.py --port 1999 --db classroom.sqlite3

which generates a teacher key when ``$CLASSROOM_TEACHER_KEY`` is not set and prints it,
with the lines the teacher and the students need. ``03_classroom.ipynb`` starts one in
the kernel with :func:`start_in_thread` when no ``PARTYWIDGET_HOST`` is set.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any, ClassVar

from partywidget.server import ServerThread, TinyBasePartyKitServer, create_app, run_in_thread

__all__ = [
    "ANSWERS",
    "TEACHER_KEY_ENV",
    "ClassroomServer",
    "classroom_app",
    "classroom_server_class",
    "main",
    "start_in_thread",
]

log = logging.getLogger("classroom")

ANSWERS = "answers"
"""The one table students may write."""

TEACHER_KEY_ENV = "CLASSROOM_TEACHER_KEY"
"""Where the teacher key comes from when the class does not set one (``serve --party``)."""


class ClassroomServer(TinyBasePartyKitServer):
    """TinyBase's PartyKit server plus the classroom rules (see the module docstring).

    ``teacher_key`` is a class attribute so that one class serves every room of a server;
    :func:`classroom_server_class` makes a subclass with a given key. Left empty (as when
    ``partywidget serve --party ...:ClassroomServer`` loads this class itself), each room
    takes ``$CLASSROOM_TEACHER_KEY`` when it starts; with neither, nobody is the teacher
    (fail closed: students still cannot write anything but answers). ``locked`` mirrors
    the room's ``locked`` value (kept up to date by the hooks, so checking it costs
    nothing per cell); ``refused`` counts refused student edits (for logs and tests).
    """

    teacher_key: ClassVar[str] = ""

    def __init__(self, party: Any) -> None:
        super().__init__(party)
        self._key = self.teacher_key or os.environ.get(TEACHER_KEY_ENV, "")
        if not self._key:
            log.warning("no teacher key (set %s): nobody can teach in this room", TEACHER_KEY_ENV)
        self.locked = False
        self.refused = 0

    async def on_start(self) -> None:
        await super().on_start()
        self.locked = self.get_content()[1].get("locked") is True

    # -- who is who ----------------------------------------------------------------

    def is_teacher(self, who: Any) -> bool:
        """True for a connection (or HTTP request) that carries the teacher key."""
        key = str(getattr(who, "query_params", {}).get("key", ""))
        return bool(self._key) and hmac.compare_digest(key, self._key)

    def _student_may_write(self, table_id: str, who: Any) -> bool:
        if self.is_teacher(who):
            return True
        if table_id == ANSWERS and not self.locked:
            return True
        self.refused += 1
        reason = "the room is locked" if table_id == ANSWERS else f"{table_id!r} is read-only"
        log.info("refused a student edit (%s)", reason)
        return False

    # -- TinyBase's hooks ----------------------------------------------------------

    async def can_set_table(self, table_id: str, initial_save: bool, who: Any) -> bool:
        return self._student_may_write(table_id, who)

    async def can_del_table(self, table_id: str, who: Any) -> bool:
        return self._student_may_write(table_id, who)

    async def can_set_row(self, table_id: str, row_id: str, initial_save: bool, who: Any) -> bool:
        return self._student_may_write(table_id, who)

    async def can_del_row(self, table_id: str, row_id: str, who: Any) -> bool:
        return self._student_may_write(table_id, who)

    async def can_del_cell(self, table_id: str, row_id: str, cell_id: str, who: Any) -> bool:
        return self._student_may_write(table_id, who)

    async def can_set_value(
        self, value_id: str, value: Any, initial_save: bool, who: Any, old_value: Any
    ) -> bool:
        if not self.is_teacher(who):
            self.refused += 1
            log.info("refused a student edit (value %r is the teacher's)", value_id)
            return False
        if value_id == "locked":
            self.locked = value is True
            log.info("room %s", "locked" if self.locked else "unlocked")
        return True

    async def can_del_value(self, value_id: str, who: Any) -> bool:
        if not self.is_teacher(who):
            self.refused += 1
            return False
        if value_id == "locked":
            self.locked = False
        return True


def classroom_server_class(teacher_key: str) -> type[ClassroomServer]:
    """A :class:`ClassroomServer` subclass whose teacher key is ``teacher_key``."""
    if not teacher_key:
        raise ValueError("the teacher key must not be empty")
    return type("Classroom", (ClassroomServer,), {"teacher_key": teacher_key})


def classroom_app(teacher_key: str, storage: Any = None) -> Any:
    """The Starlette app: every room of party ``main`` is a classroom."""
    return create_app(parties={"main": classroom_server_class(teacher_key)}, storage=storage)


def start_in_thread(
    teacher_key: str | None = None, host: str = "127.0.0.1", port: int = 0
) -> tuple[ServerThread, str]:
    """Start a classroom server on a background thread (in a notebook, say).

    Returns the running server (``.host`` for ``PartyStoreWidget(host=...)``) and the
    teacher key (random unless given).
    """
    key = teacher_key or secrets.token_urlsafe(12)
    return run_in_thread(classroom_app(key), host=host, port=port), key


def main(argv: Sequence[str] | None = None) -> int:
    """Serve classrooms in the foreground until Ctrl+C (like ``partywidget serve``)."""
    import uvicorn

    from partywidget.server.thread import bind_socket, format_host, uvicorn_config

    parser = argparse.ArgumentParser(description="Run a classroom room server.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=1999, help="port (1999; 0: any)")
    parser.add_argument("--db", default=":memory:", help="SQLite file, or :memory:")
    parser.add_argument(
        "--teacher-key",
        default=os.environ.get(TEACHER_KEY_ENV, ""),
        help="the teacher's key (default: $CLASSROOM_TEACHER_KEY, else a random one)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    key = args.teacher_key or secrets.token_urlsafe(12)
    sock = bind_socket(args.host, args.port)
    shown = format_host(args.host, sock.getsockname()[1])
    print(f"classroom server on http://{shown}", flush=True)
    print(f"  teacher: PartyStoreWidget(room, host={shown!r}, query={{'key': {key!r}}})")
    print(f"  students: python notebooks/students.py --host {shown} --room ROOM", flush=True)
    server = uvicorn.Server(uvicorn_config(classroom_app(key, args.db), log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
