"""Where the widget's asyncio work runs: the kernel's loop, or a daemon-thread loop.

Inside a Jupyter kernel (ipykernel 6 and 7) synchronous cell code runs *on* the kernel's
event loop thread while that loop is running (verified in a real ipykernel 7.4 kernel:
``asyncio.get_running_loop()`` in a plain cell returns the kernel's running selector loop
on the main thread, and tasks created there keep running between cells). The widget then
schedules its socket and persister tasks on that loop, so Store changes, traitlet changes
and comm messages all happen on the kernel's thread, and ``await w.ready()`` works with
top-level await.

Outside a kernel (a script, a test, a plain REPL) there is no running loop, so the widget
starts a shared daemon thread running its own loop and marshals every Store call onto it
(:meth:`LoopRunner.call`): the Store is not thread-safe and remote changes are applied on
that thread. The synchronous API (``wait_ready``, ``set_cell``, ``df``) then blocks the
caller until the loop thread did the work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = [
    "LoopRunner",
    "StallWatch",
    "attachable_loop",
    "background_loop",
    "in_kernel",
    "stall_watch",
]

T = TypeVar("T")

_background: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None
_background_lock = threading.Lock()
_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StallWatch] = (
    weakref.WeakKeyDictionary()
)


def in_kernel() -> bool:
    """True inside an IPython kernel (ipykernel), where the kernel's loop runs cells."""
    ipython_mod = sys.modules.get("IPython")
    if ipython_mod is None:
        return False
    get_ipython = getattr(ipython_mod, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return getattr(shell, "kernel", None) is not None


def attachable_loop() -> asyncio.AbstractEventLoop | None:
    """The running loop of this thread if the widget may live on it, else None.

    A loop counts only if we are inside one of its tasks (a coroutine, or a kernel cell:
    ipykernel 7 runs cells inside its ``shell_main`` task) or inside a kernel. A loop
    that merely *looks* running with no current task -- Playwright's sync API drives
    one through greenlets -- only runs while its owner calls into it, so the widget would
    stall there; it gets the daemon-thread loop instead.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    if asyncio.current_task(loop) is not None or in_kernel():
        return loop
    return None


def background_loop() -> asyncio.AbstractEventLoop:
    """The process-wide daemon-thread loop, started on first use (never stopped: daemon)."""
    global _background
    with _background_lock:
        if _background is not None and _background[1].is_alive():
            return _background[0]
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name="partywidget-loop", daemon=True)
        thread.start()
        started.wait()
        _background = (loop, thread)
        return loop


class StallWatch:
    """Notices that a loop was blocked: a heartbeat timer that did not run on time.

    Why: user code blocks the widget's loop (a long cell in a kernel, a slow callback on
    the daemon loop). While it is blocked no keepalive pong goes out, and a server may
    drop the connection; the loop only learns that when it reads the socket again. Edits
    made around the block would be written *before* that read, into a connection the
    server already closed, and be lost. A widget asks :meth:`stalled_for` just before its
    edits go out and reconnects first when the loop was blocked longer than the
    keepalive. One watch per loop, shared by its widgets (:func:`stall_watch`); the
    heartbeat runs only while a widget holds it. Loop thread only.
    """

    #: Seconds between heartbeats: :meth:`stalled_for` underestimates a block by at most
    #: this much. A beat costs microseconds; ten a second per loop is negligible.
    INTERVAL = 0.1

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.last_beat = loop.time()
        self.users = 0
        self._handle: asyncio.TimerHandle | None = None

    def acquire(self) -> None:
        self.users += 1
        if self._handle is None:
            self._beat()

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0 and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _beat(self) -> None:
        self.last_beat = self.loop.time()
        self._handle = self.loop.call_later(self.INTERVAL, self._beat)

    def stalled_for(self) -> float:
        """Seconds the loop ran no timers beyond the heartbeat's own period (0 normally)."""
        if self._handle is None:
            return 0.0
        return max(0.0, self.loop.time() - self.last_beat - self.INTERVAL)


def stall_watch(loop: asyncio.AbstractEventLoop) -> StallWatch:
    """The :class:`StallWatch` of ``loop`` (created on first use; loop thread only)."""
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = StallWatch(loop)
    return watch


class LoopRunner:
    """One widget's handle on its event loop: spawn tasks, run calls on the loop thread.

    ``attached`` is True when the loop is the caller's running loop (a kernel, or an
    asyncio program), False for the daemon-thread loop. Tasks are kept in a set (the event
    loop only holds weak references to tasks) and cancelled by :meth:`close`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if loop is None:
            loop = attachable_loop()
        self.attached = loop is not None
        self.loop: asyncio.AbstractEventLoop = loop if loop is not None else background_loop()
        self._thread_id: int | None = threading.get_ident() if self.attached else None
        self._tasks: set[asyncio.Future[Any] | concurrent.futures.Future[Any]] = set()
        self._closed = False
        if self._thread_id is None:
            self._thread_id = self.call(threading.get_ident)

    def in_loop_thread(self) -> bool:
        """True when called on the thread that runs the loop."""
        return threading.get_ident() == self._thread_id

    def spawn(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T] | asyncio.Task[T]:
        """Run ``coro`` on the loop from any thread, keeping a strong reference to it."""
        if self.in_loop_thread():
            task: asyncio.Task[T] = self.loop.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return task
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)
        return future

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` on the loop thread: now if already there, else soon."""
        if self.in_loop_thread():
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = 60.0) -> T:
        """Call ``fn(*args)`` on the loop thread and return its result (or raise its error).

        On the loop thread it is a plain call; from another thread it blocks until the loop
        ran it, which is what makes the background-loop facade synchronous.
        """
        if self.in_loop_thread():
            return fn(*args)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args))
            except BaseException as error:
                future.set_exception(error)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout)

    def run(self, awaitable: Awaitable[T], timeout: float | None = None) -> T:
        """Wait synchronously for ``awaitable`` on the loop (only from another thread)."""
        if self.in_loop_thread():
            raise RuntimeError(
                "cannot block the event loop's own thread waiting for it; "
                "use `await` (in a notebook: `await widget.ready()`)"
            )

        async def wrapper() -> T:
            return await awaitable

        future = asyncio.run_coroutine_threadsafe(wrapper(), self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"not done within {timeout} s") from None

    def close(self) -> None:
        """Cancel the tasks this runner started (the shared loop itself keeps running)."""
        self._closed = True
        for task in list(self._tasks):
            if isinstance(task, asyncio.Task):
                if self.in_loop_thread():
                    task.cancel()
                else:
                    self.loop.call_soon_threadsafe(task.cancel)
            else:
                task.cancel()
        self._tasks.clear()
