"""A loopback TCP proxy that tests own, to cut, stall and slow real connections.

Why: reconnection and resync behaviour can only be tested honestly by breaking a real
TCP connection between a real client and a real server, at a moment the test chooses.
Put the proxy between them (``client -> proxy.host -> target``) and then:

- :meth:`TcpProxy.drop_all` closes every current connection abruptly (RST), both sides;
- :meth:`TcpProxy.pause` stops forwarding while keeping the sockets open (a stalled
  network: bytes wait, or are discarded with ``discard=True``), :meth:`resume` lets
  held bytes flow again;
- :meth:`TcpProxy.set_delay` adds latency to every chunk (order kept, no throughput cap);
- :meth:`TcpProxy.refuse` makes new connections close as soon as they are accepted.

The proxy runs its own asyncio loop on a daemon thread, so its (synchronous, thread-safe)
methods work the same from sync tests, async tests and code that blocks the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

_CHUNK = 64 * 1024


@dataclass(eq=False)
class _Link:
    """One proxied connection: the accepted client side and the upstream side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1"):
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._flowing: asyncio.Event | None = None
        self._discard = False
        self._delay = 0.0
        self._refuse = False
        self._port: int | None = None
        #: Connections accepted (and forwarded or refused) since start.
        self.accepted = 0
        #: Connections closed immediately because of :meth:`refuse`.
        self.refused = 0

    # -- properties ----------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("proxy is not started")
        return self._port

    @property
    def host(self) -> str:
        """``"127.0.0.1:PORT"``: give this to clients instead of the target's host."""
        return f"{self.listen_host}:{self.port}"

    @property
    def connections(self) -> int:
        """Connections currently open through the proxy."""
        return len(self._links)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> TcpProxy:
        if self._thread is not None:
            return self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"TcpProxy->{self.target_port}", daemon=True
        )
        self._thread.start()
        self._run(self._start())
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then end the proxy's thread."""
        if self._loop is None or self._thread is None:
            return
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None
        self._thread = None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------
    def drop_all(self) -> int:
        """Abort every open connection (RST to both ends); returns how many."""
        return self._run(self._drop_all())

    def pause(self, *, discard: bool = False) -> None:
        """Stop forwarding in both directions but keep every socket open.

        Held bytes are delivered on :meth:`resume` (a stall); with ``discard=True`` they
        are thrown away instead (a black hole: a WebSocket stream that lost bytes is
        corrupt, so follow it with :meth:`drop_all`). New connections are still
        accepted and connected upstream, but carry nothing until resumed.
        """

        def apply() -> None:
            assert self._flowing is not None
            self._discard = discard
            self._flowing.clear()

        self._call(apply)

    def resume(self) -> None:
        def apply() -> None:
            assert self._flowing is not None
            self._discard = False
            self._flowing.set()

        self._call(apply)

    def set_delay(self, seconds: float) -> None:
        """Deliver each chunk ``seconds`` after it arrived (both directions)."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")

        def apply() -> None:
            self._delay = seconds

        self._call(apply)

    def refuse(self, refuse: bool = True) -> None:
        """While on, accept new connections only to close them at once (RST)."""

        def apply() -> None:
            self._refuse = refuse

        self._call(apply)

    def wait_for_connections(self, count: int, timeout: float = 10.0) -> None:
        """Block until at least ``count`` connections are open through the proxy."""
        deadline = time.monotonic() + timeout
        while self.connections < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"proxy has {self.connections} connections, wanted {count} in {timeout}s"
                )
            time.sleep(0.02)

    # -- loop-thread internals --------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("proxy is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _call(self, fn: Any) -> None:
        async def wrapper() -> None:
            fn()

        self._run(wrapper())

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, self.listen_host, 0)
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop_all()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _drop_all(self) -> int:
        links = list(self._links)
        for link in links:
            self._abort(link)
        for link in links:
            for task in link.tasks:
                task.cancel()
        for link in links:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        return len(links)

    def _abort(self, link: _Link) -> None:
        self._links.discard(link)
        for writer in (link.client, link.upstream):
            if writer is not None:
                _reset(writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refuse:
            self.refused += 1
            _reset(writer)
            return
        link = _Link(client=writer)
        self._links.add(link)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            self._abort(link)
            return
        if link not in self._links:  # dropped while connecting upstream
            _reset(up_writer)
            return
        link.upstream = up_writer
        link.tasks = [
            asyncio.create_task(self._pipe(link, reader, up_writer)),
            asyncio.create_task(self._pipe(link, up_reader, writer)),
        ]

    async def _pipe(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Copy one direction; a reader task stamps chunks, a writer task delays them."""
        assert self._flowing is not None
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def deliver() -> None:
            assert self._flowing is not None
            while True:
                item = await queue.get()
                if item is None:
                    with contextlib.suppress(OSError, RuntimeError):
                        writer.write_eof()
                    return
                arrived, data = item
                wait = arrived + self._delay - asyncio.get_running_loop().time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        deliverer = asyncio.create_task(deliver())
        try:
            while True:
                # While paused, stop reading: the kernel buffers fill and TCP flow
                # control stalls the sender, like a dead network path.
                if not self._flowing.is_set() and not self._discard:
                    await self._flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    await queue.put(None)
                    await deliverer
                    break
                if not self._flowing.is_set():
                    if self._discard:
                        continue
                    await self._flowing.wait()
                await queue.put((asyncio.get_running_loop().time(), data))
        except (OSError, asyncio.IncompleteReadError):
            self._abort(link)
        finally:
            if not deliverer.done():
                deliverer.cancel()
                await asyncio.wait([deliverer])
            elif deliverer.exception() is not None:
                self._abort(link)
        # Both directions finished: forget the link once both pipes are done.
        if link in self._links and all(t.done() or t is asyncio.current_task() for t in link.tasks):
            self._links.discard(link)
            for w in (link.client, link.upstream):
                if w is not None:
                    w.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0 so the peer sees a reset, not a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
