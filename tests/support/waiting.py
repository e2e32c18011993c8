"""The suite's two polling helpers: wait on a positive condition, never judge time.

``wait_for`` blocks the calling thread (for widgets, subprocesses, threads);
``eventually`` yields to the running event loop. Both take the same arguments in the same
order, poll until ``condition()`` is truthy and fail after a generous ``timeout`` with an
``AssertionError`` naming ``what``. The timeout only bounds a hung test: it is never a
verdict on speed.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT = 30.0
"""Default bound on a wait, generous for a loaded two-core machine."""


def _failure(what: str, condition: object, timeout: float) -> AssertionError:
    return AssertionError(f"timed out after {timeout}s waiting for {what or condition!r}")


def wait_for(
    condition: Callable[[], T], timeout: float = TIMEOUT, what: str = "", interval: float = 0.02
) -> T:
    """Block until ``condition()`` is truthy and return that value."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise _failure(what, condition, timeout)
        time.sleep(interval)


async def eventually(
    condition: Callable[[], object | Awaitable[object]],
    timeout: float = TIMEOUT,
    what: str = "",
    interval: float = 0.01,
) -> None:
    """Yield to the loop until ``condition()`` (plain or a coroutine) is truthy."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = condition()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(interval)
    except TimeoutError:
        raise _failure(what, condition, timeout) from None
