"""One ``async for message in socket`` consumer of a PartySocket: its own buffer.

Why a buffer per iterator: each one gets every message that arrives after it was
created, even before its first ``await``, without slowing the socket or its listeners.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from .events import Data

__all__ = ["END", "MessageIterator"]


class _End:
    """Sentinel ending the iteration when the socket is closed for good."""


END: Final = _End()


class MessageIterator:
    """Yields the messages ``push``-ed to it until :data:`END` is pushed.

    ``start`` is awaited before the first message (it starts the socket); ``is_done``
    tells whether the socket is already closed for good; ``on_end`` is called once the
    iteration ended, so the socket stops feeding it.
    """

    def __init__(
        self,
        start: Callable[[], Awaitable[None]],
        is_done: Callable[[], bool],
        on_end: Callable[[MessageIterator], None],
    ) -> None:
        self._start = start
        self._is_done = is_done
        self._on_end = on_end
        self._queue: asyncio.Queue[Data | _End] = asyncio.Queue()
        self._started = False
        self._ended = False

    def push(self, item: Data | _End) -> None:
        if not self._ended:
            self._queue.put_nowait(item)

    def __aiter__(self) -> MessageIterator:
        return self

    async def __anext__(self) -> Data:
        if self._ended:
            raise StopAsyncIteration
        if not self._started:
            self._started = True
            await self._start()
            if self._is_done() and self._queue.empty():
                self._end()
                raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _End):
            self._end()
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self._end()

    def _end(self) -> None:
        self._ended = True
        self._on_end(self)
