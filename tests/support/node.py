"""Drive real TinyBase clients (``tests/node/peer.mjs``) from asyncio tests.

Why: partywidget's claim is wire compatibility with TinyBase's JavaScript clients, so
tests put real ones (TinyBase 10.0.1 + partysocket 1.3.0 + ``ws``) in the same rooms as
our Python code. One Node process hosts many named clients (cheap enough for ~1000 in
benchmarks); this module is its asyncio driver.

Example::

    async with NodePeers() as peers:
        await peers.connect("a", host=server.host, room=room)
        await peers.call("a", "setCell", "t", "r", "c", 1)
        await peers.wait_for_content("a", ({"t": {"r": {"c": 1}}}, {}))

Content crosses as JSON: Node's ``[tables, values]`` list becomes a Python
``(tables, values)`` tuple (see :func:`content_from_json` / :func:`content_to_json`),
and :func:`js_equal` compares with JavaScript's strictness (``True`` is not ``1``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from partywidget.jsvalue import JSON_MARKER

REPO_ROOT = Path(__file__).resolve().parents[2]
PEER_SCRIPT = REPO_ROOT / "tests" / "node" / "peer.mjs"

#: WebSocket readyState values as partysocket reports them.
CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3

JsonContent = list[dict[str, Any]]
PyContent = tuple[dict[str, Any], dict[str, Any]]

# Lines can carry a whole store or a >1 MiB message: allow big ones.
_LINE_LIMIT = 512 * 1024 * 1024


class NodePeerError(RuntimeError):
    """A peer command failed or timed out; the message includes the peer's stderr tail.

    ``detail`` is the JSON detail the peer attached (e.g. the last content seen by
    ``waitForContent``), already converted like results are.
    """

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.detail = detail


def node_available() -> str | None:
    """Return why Node peers cannot run here, or ``None`` when they can."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    for package in ("tinybase", "partysocket", "ws"):
        if not (REPO_ROOT / "node_modules" / package).exists():
            return f"node_modules/{package} is missing (run npm install at the repo root)"
    return None


# -- content helpers -------------------------------------------------------------------
def content_from_json(obj: Any) -> PyContent:
    """Node's ``[tables, values]`` (a JSON list) -> a Python ``(tables, values)`` tuple."""
    if not (isinstance(obj, (list, tuple)) and len(obj) == 2):
        raise ValueError(f"not a [tables, values] content: {obj!r}")
    tables, values = obj
    if not isinstance(tables, dict) or not isinstance(values, dict):
        raise ValueError(f"not a [tables, values] content: {obj!r}")
    return (tables, values)


def content_to_json(content: Sequence[Any]) -> JsonContent:
    """A Python ``(tables, values)`` content -> the JSON list Node expects."""
    tables, values = content
    return [dict(tables), dict(values)]


def content_from_wire(text: str) -> PyContent | None:
    """Decode a store HTTP body (``GET .../store``) into content; ``None`` when empty.

    Object/array cells travel as ``"\\ufffd" + JSON``; they are decoded here. Kept
    independent of ``partywidget.codec`` on purpose (it is the test oracle): only the
    marker's name is shared.
    """
    if text == "":
        return None
    tables, values = content_from_json(json.loads(text))

    def cell(wire: Any) -> Any:
        if isinstance(wire, str) and wire.startswith(JSON_MARKER):
            return json.loads(wire[1:])
        return wire

    return (
        {
            t: {r: {c: cell(v) for c, v in row.items()} for r, row in table.items()}
            for t, table in tables.items()
        },
        {v: cell(value) for v, value in values.items()},
    )


def js_equal(a: Any, b: Any) -> bool:
    """Deep equality as JavaScript's ``===`` on leaves: ``True != 1``, ``4 == 4.0``.

    Tuples and lists are interchangeable (a Python content tuple equals Node's list);
    dict key order is ignored.
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(js_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(js_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _to_json_arg(value: Any) -> Any:
    # Tuples (Python content/changes) travel as JSON arrays anyway; this only makes
    # the intent explicit and rejects what JSON cannot carry early.
    json.dumps(value, allow_nan=False)
    return value


# -- the driver ----------------------------------------------------------------------
class NodePeers:
    """One ``node tests/node/peer.mjs`` process and the clients it hosts.

    All methods are coroutines except :meth:`events`/:meth:`stderr_tail`. Every request
    has a timeout (``timeout`` argument or ``default_timeout``); when it elapses, or
    the process dies, :class:`NodePeerError` says what was asked and shows stderr.
    """

    def __init__(
        self,
        *,
        script: str | os.PathLike[str] = PEER_SCRIPT,
        default_timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        stderr_lines: int = 200,
    ) -> None:
        self.script = Path(script)
        self.default_timeout = default_timeout
        self._env = dict(env) if env is not None else None
        self._proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._events_changed = asyncio.Event()
        self._stderr: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self._tasks: list[asyncio.Task[None]] = []
        self._exit_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> NodePeers:
        reason = node_available()
        if reason is not None:
            raise NodePeerError(reason)
        env = dict(os.environ)
        if self._env:
            env.update(self._env)
        self._proc = await asyncio.create_subprocess_exec(
            shutil.which("node") or "node",
            str(self.script),
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            limit=_LINE_LIMIT,
        )
        self._tasks = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]
        await self.request("ping")
        return self

    async def close(self) -> None:
        """Ask the peer to disconnect everyone and exit; kill it if it does not."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(NodePeerError, ConnectionError):
                await self.request("exit", timeout=10)
            if proc.stdin is not None:
                with contextlib.suppress(Exception):
                    proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._tasks:
            # asyncio.wait: neither raises the tasks' own errors nor swallows a
            # cancellation of this task (suppress(CancelledError) would).
            done, pending = await asyncio.wait(list(self._tasks), timeout=5)
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: ends of readers are expected here
        self._proc = None

    async def __aenter__(self) -> NodePeers:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    # -- low level -----------------------------------------------------------------
    async def request(self, cmd: str, *, timeout: float | None = None, **fields: Any) -> Any:
        """Send one command and return its ``result`` (raises :class:`NodePeerError`)."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise NodePeerError("NodePeers is not started")
        if self._exit_error is not None:
            raise NodePeerError(self._exit_error + self._stderr_suffix())
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        line = json.dumps({"id": request_id, "cmd": cmd, **fields}, allow_nan=False)
        try:
            proc.stdin.write(line.encode() + b"\n")
            await proc.stdin.drain()
            limit = self.default_timeout if timeout is None else timeout
            try:
                reply = await asyncio.wait_for(future, limit)
            except TimeoutError:
                raise NodePeerError(
                    f"peer command {cmd} {_brief(fields)} timed out after {limit}s"
                    + self._stderr_suffix()
                ) from None
        finally:
            self._pending.pop(request_id, None)
        if not reply.get("ok"):
            raise NodePeerError(
                f"peer command {cmd} {_brief(fields)} failed: {reply.get('error')}"
                + (
                    f"\n--- detail ---\n{json.dumps(reply['detail'], ensure_ascii=False)[:4000]}"
                    if "detail" in reply
                    else ""
                )
                + self._stderr_suffix(),
                reply.get("detail"),
            )
        return reply.get("result")

    def events(self, client: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Socket events seen so far (``open``/``close``/``error``), optionally filtered."""
        return [
            e
            for e in self._events
            if (client is None or e.get("client") == client)
            and (kind is None or e.get("event") == kind)
        ]

    async def wait_for_event(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Wait for an event (past or future) matching ``predicate``."""

        async def wait() -> dict[str, Any]:
            while True:
                for event in self._events:
                    if predicate(event):
                        return event
                self._events_changed.clear()
                await self._events_changed.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise NodePeerError(
                f"no matching peer event within {timeout}s; events: {self._events[-20:]}"
                + self._stderr_suffix()
            ) from None

    def stderr_tail(self, lines: int = 40) -> str:
        return "\n".join(list(self._stderr)[-lines:])

    # -- commands ----------------------------------------------------------------
    async def connect(
        self,
        client: str,
        *,
        host: str,
        room: str,
        party: str | None = None,
        socket_id: str | None = None,
        query: Mapping[str, str] | None = None,
        protocol: str | None = None,
        config: Mapping[str, Any] | str | None = None,
        initial_content: Sequence[Any] | None = None,
        store_content: Sequence[Any] | None = None,
        auto_load: bool = True,
        auto_save: bool = True,
        wait_open: bool = True,
        socket_options: Mapping[str, Any] | None = None,
        record: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Create a TinyBase client: PartySocket + store + PartyKit persister.

        ``socket_id`` is PartySocket's ``id`` (the ``_pk`` connection id; random if
        omitted).
        ``config`` defaults to ``{"storeProtocol": "http"}`` (loopback servers); a
        string is TinyBase's ``storeProtocol`` shorthand. ``timeout`` bounds the wait
        for the socket to open (the peer's default is 10 s). Returns ``{"socketId",
        "content"}`` with content as a Python tuple, once auto-load/auto-save started.
        """
        fields: dict[str, Any] = {
            "client": client,
            "host": host,
            "room": room,
            "autoLoad": auto_load,
            "autoSave": auto_save,
            "waitOpen": wait_open,
            "record": record,
        }
        if party is not None:
            fields["party"] = party
        if socket_id is not None:
            fields["socketId"] = socket_id
        if query is not None:
            fields["query"] = dict(query)
        if protocol is not None:
            fields["protocol"] = protocol
        if config is not None:
            fields["config"] = config if isinstance(config, str) else dict(config)
        if initial_content is not None:
            fields["initialContent"] = content_to_json(initial_content)
        if store_content is not None:
            fields["storeContent"] = content_to_json(store_content)
        if socket_options is not None:
            fields["socketOptions"] = dict(socket_options)
        if timeout is not None:
            fields["openTimeoutMs"] = int(timeout * 1000)
        # The peer fails first (with its own message) when the socket does not open;
        # the request gets extra time for loading and saving after that.
        result: dict[str, Any] = await self.request(
            "connect", timeout=None if timeout is None else timeout + 10, **fields
        )
        result["content"] = content_from_json(result["content"])
        return result

    async def call(self, client: str, method: str, *args: Any, target: str = "store") -> Any:
        """Call ``store.<method>(*args)`` (or the persister's/socket's) in the client."""
        return await self.request(
            "call",
            client=client,
            method=method,
            args=[_to_json_arg(a) for a in args],
            target=target,
        )

    async def transaction(self, client: str, ops: Iterable[Sequence[Any]]) -> Any:
        """Run ``[(method, *args), ...]`` inside one ``store.transaction()``."""
        return await self.call(client, "transaction", [list(op) for op in ops])

    async def content(self, client: str) -> PyContent:
        return content_from_json(await self.request("content", client=client))

    async def wait_for_content(
        self, client: str, expected: Sequence[Any], timeout: float = 10.0
    ) -> PyContent:
        """Wait until the client's store content equals ``expected`` (JS equality).

        On timeout, :class:`NodePeerError` shows the last content; ``.detail`` holds
        it as a Python tuple.
        """
        try:
            result = await self.request(
                "waitForContent",
                timeout=timeout + 5,
                client=client,
                content=content_to_json(expected),
                timeoutMs=int(timeout * 1000),
            )
        except NodePeerError as error:
            if isinstance(error.detail, list):
                error.detail = content_from_json(error.detail)
            raise
        return content_from_json(result)

    async def messages(self, client: str, *, clear: bool = False) -> list[dict[str, Any]]:
        """Raw WebSocket messages: ``[{"dir": "out"|"in", "data": str, "open": bool}]``."""
        result: list[dict[str, Any]] = await self.request("messages", client=client, clear=clear)
        return result

    async def sent(self, client: str) -> list[str]:
        """Just the text of the messages the client sent, in order."""
        return [m["data"] for m in await self.messages(client) if m["dir"] == "out"]

    async def received(self, client: str) -> list[str]:
        """Just the text of the messages the client received, in order."""
        return [m["data"] for m in await self.messages(client) if m["dir"] == "in"]

    async def errors(self, client: str, *, clear: bool = False) -> list[str]:
        """What the persister passed to ``onIgnoredError``, described as strings."""
        result: list[str] = await self.request("errors", client=client, clear=clear)
        return result

    async def status(self, client: str) -> dict[str, Any]:
        """``{readyState, opens, closes, socketId, persisterStatus, stats}``."""
        result: dict[str, Any] = await self.request("status", client=client)
        return result

    async def wait_for_socket(
        self,
        client: str,
        *,
        opens: int | None = None,
        closes: int | None = None,
        ready_state: int | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Wait until the socket opened/closed at least N times and/or is in a state."""
        fields: dict[str, Any] = {"client": client, "timeoutMs": int(timeout * 1000)}
        if opens is not None:
            fields["opens"] = opens
        if closes is not None:
            fields["closes"] = closes
        if ready_state is not None:
            fields["readyState"] = ready_state
        result: dict[str, Any] = await self.request("waitForSocket", timeout=timeout + 5, **fields)
        return result

    async def socket(
        self, client: str, action: str, *, code: int | None = None, reason: str | None = None
    ) -> None:
        """``action`` is ``"close"`` (no reconnect) or ``"reconnect"``."""
        fields: dict[str, Any] = {"client": client, "action": action}
        if code is not None:
            fields["code"] = code
        if reason is not None:
            fields["reason"] = reason
        await self.request("socket", **fields)

    async def disconnect(self, client: str) -> None:
        """Destroy the persister and close the socket; the name can be reused."""
        await self.request("disconnect", client=client)

    async def clients(self) -> list[str]:
        result: list[str] = await self.request("clients")
        return result

    async def http(
        self,
        method: str,
        url: str,
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Node's ``fetch``: ``{"status", "headers", "body"}`` (body as text)."""
        fields: dict[str, Any] = {"method": method, "url": url}
        if body is not None:
            fields["body"] = body
        if headers is not None:
            fields["headers"] = dict(headers)
        result: dict[str, Any] = await self.request("http", **fields)
        return result

    # -- internals ---------------------------------------------------------------
    async def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        while True:
            try:
                line = await stdout.readline()
            except (ValueError, asyncio.LimitOverrunError) as error:
                self._exit_error = f"peer stdout line too long: {error}"
                break
            if not line:
                break
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                self._stderr.append(f"[non-JSON stdout] {line[:500]!r}")
                continue
            if "event" in message and "id" not in message:
                self._events.append(message)
                self._events_changed.set()
                continue
            future = self._pending.get(message.get("id"))
            if future is not None and not future.done():
                future.set_result(message)
        # The process is gone (or unreadable): fail everything still waiting.
        returncode = await self._proc.wait() if self._exit_error is None else None
        if self._exit_error is None:
            self._exit_error = f"peer process exited with code {returncode}"
        for future in self._pending.values():
            if not future.done():
                future.set_result({"ok": False, "error": self._exit_error})

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while True:
            line = await self._proc.stderr.readline()
            if not line:
                break
            self._stderr.append(line.decode("utf-8", "replace").rstrip("\n"))

    def _stderr_suffix(self) -> str:
        tail = self.stderr_tail()
        return f"\n--- peer stderr tail ---\n{tail}" if tail else ""


#: ARCHITECTURE.md calls the driver ``NodePeer``; both names work.
NodePeer = NodePeers


def _brief(fields: Mapping[str, Any], limit: int = 300) -> str:
    text = json.dumps(fields, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"
