"""The outgoing side of a PartySocket: messages not yet written, and their writer.

Why its own object: partysocket drops what it had not written when a connection dies;
here a message leaves the queue only when it is handed to an open connection, so a
drop leaves the rest, in order, for the next connection. One writer task per open
connection empties the queue; while that task is idle and the queue empty, a message is
written at once from the caller (``_wsinternals.write_now``), saving the task switch
that is most of a local edit's way out, without ever reordering.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from . import _wsinternals
from .events import Data

__all__ = ["Outbox"]


class Outbox:
    """Messages accepted by ``send()`` and not yet written to any connection."""

    def __init__(self) -> None:
        self.queue: deque[Data] = deque()
        self._wake = asyncio.Event()
        #: The task writing to the open connection (None while disconnected).
        self.writer: asyncio.Task[None] | None = None
        # The connection whose writer is idle (waiting for the wake event): only then
        # may a message be written directly without reordering messages.
        self._idle_ws: ClientConnection | None = None

    @property
    def buffered_amount(self) -> int:
        """Characters/bytes queued."""
        return sum(len(m) for m in self.queue)

    def drain(self) -> list[Data]:
        """Remove and return every queued message."""
        messages = list(self.queue)
        self.queue.clear()
        return messages

    def hold(self, message: Data, limit: float) -> None:
        """Queue ``message`` for the next connection, unless ``limit`` messages wait."""
        if len(self.queue) < limit:
            self.queue.append(message)

    def send(self, ws: ClientConnection, message: Data) -> None:
        """Write ``message`` to the open ``ws`` now if nothing is ahead of it, else queue
        it behind the others for the writer."""
        if self._idle_ws is ws and not self.queue and _wsinternals.write_now(ws, message):
            return
        self.queue.append(message)
        self._wake.set()

    def start(
        self, ws: ClientConnection, spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]
    ) -> None:
        """Start writing the queue to the newly open ``ws``."""
        self._idle_ws = None
        self.writer = spawn(self._write(ws))
        self._wake.set()

    def stop(self) -> None:
        """Stop the writer (the connection is gone); what it had not written stays."""
        if self.writer is not None:
            self.writer.cancel()
            self.writer = None

    async def _write(self, ws: ClientConnection) -> None:
        queue = self.queue
        wake = self._wake
        try:
            while True:
                while queue:
                    if ws.state is not State.OPEN:
                        return
                    message = queue.popleft()
                    await ws.send(message)
                wake.clear()
                self._idle_ws = ws
                try:
                    await wake.wait()
                finally:
                    if self._idle_ws is ws:
                        self._idle_ws = None
        except ConnectionClosed:
            return
