"""The one event loop a PartySocket lives on, and the tasks it runs there.

Why: a socket may be created where no loop runs (a notebook's main thread, with the
loop on a daemon thread) and used from any thread. All its state changes happen on one
loop; calls from other threads are handed over with ``call_soon_threadsafe``, which
keeps the order of calls made from one thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["LoopBinding"]

_log = logging.getLogger("partywidget.partykit.socket")


class LoopBinding:
    """A loop bound on first use, and a strong reference to every task spawned on it
    (asyncio keeps only weak ones; a task that fails unexpectedly is logged)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def bind_if_running(self) -> bool:
        """Bind to the loop running in this thread, if any; True if bound now."""
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def bind_running(self) -> None:
        """Bind to the running loop; RuntimeError if bound to another one."""
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        elif self.loop is not loop:
            raise RuntimeError("PartySocket is bound to another event loop")

    def on_loop_thread(self) -> bool:
        """True if the caller may act directly (on the bound loop, or none bound)."""
        if self.loop is None:
            return True
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def call(self, fn: Callable[..., object], *args: object) -> bool:
        """Run ``fn`` on the loop from another thread; False if the caller should run it
        itself (already on the loop, no loop bound, or the loop is closed)."""
        if self.on_loop_thread():
            return False
        assert self.loop is not None
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            return False
        return True

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        assert self.loop is not None
        task: asyncio.Task[Any] = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("PartySocket internal task failed", exc_info=task.exception())
