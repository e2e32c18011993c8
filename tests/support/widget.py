"""Helpers for the widget tests: a recording comm and condition polling.

The recording comm replaces ``comm.create_comm`` (the hook the ``comm`` package provides for
exactly this), so messages go through ipywidgets' real ``Widget.send`` / ``_handle_msg``
path; we only stand in for the kernel's socket at the very end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import comm
from comm.base_comm import BaseComm

from partywidget.codec import decode_changes, decode_content, encode_changes
from support.waiting import wait_for


class RecordingComm(BaseComm):
    """A comm that keeps every published message (as the kernel would send it)."""

    instances: list[RecordingComm] = []  # noqa: RUF012

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.published: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        super().__init__(*args, **kwargs)
        RecordingComm.instances.append(self)

    def publish_msg(
        self,
        msg_type: str,
        data: Any = None,
        metadata: Any = None,
        buffers: Any = None,
        **keys: Any,
    ) -> None:
        with self.lock:
            self.published.append({"msg_type": msg_type, "data": data, "buffers": buffers or []})

    # -- views of what was sent -------------------------------------------------------------
    def custom(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                m["data"]["content"]
                for m in self.published
                if m["msg_type"] == "comm_msg" and m["data"].get("method") == "custom"
            ]

    def clear(self) -> None:
        with self.lock:
            self.published.clear()

    def bytes_since(self, start: int) -> int:
        with self.lock:
            return sum(
                len(json.dumps(m["data"], separators=(",", ":"))) for m in self.published[start:]
            )

    # -- acting as the front-end --------------------------------------------------------------
    def from_view(self, content: dict[str, Any]) -> None:
        """Deliver a custom message as if the front-end had sent it."""
        self.handle_msg(
            {"content": {"data": {"method": "custom", "content": content}}, "buffers": []}
        )


def install(monkeypatch: Any) -> None:
    monkeypatch.setattr(comm, "create_comm", RecordingComm)


def comm_of(widget: Any) -> RecordingComm:
    c = widget.comm
    assert isinstance(c, RecordingComm)
    return c


def snapshot_content(
    messages: list[dict[str, Any]], view: str
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Reassemble the last complete snapshot sent to ``view``: (tables, values, seq)."""
    parts = [m for m in messages if m["kind"] == "snapshot" and m["to"] == view]
    assert parts, "no snapshot sent"
    sid = parts[-1]["sid"]
    mine = [m for m in parts if m["sid"] == sid]
    assert [m["part"] for m in mine] == list(range(mine[0]["parts"]))
    tables: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for m in mine:
        t, v = decode_content(m["content"])
        for table_id, rows in t.items():
            tables.setdefault(table_id, {}).update(rows)
        if m["part"] == 0:
            values = v
    return tables, values, mine[0]["seq"]


def deltas(messages: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    return [(m["seq"], decode_changes(m["changes"])) for m in messages if m["kind"] == "changes"]


def view_changes(view: str, seq: int, changes: Any) -> dict[str, Any]:
    return {"kind": "changes", "view": view, "seq": seq, "changes": encode_changes(changes)}


# -- blocked-loop scenarios -----------------------------------------------------------------


class KeepaliveServer:
    """The room server on real uvicorn with a short WebSocket keepalive.

    Why not ``run_in_thread``: its uvicorn settings keep the default 20 s ping interval and
    timeout; these tests need the server to drop a client whose loop is blocked within a
    second, as a production server would after its (longer) keepalive.
    """

    def __init__(self, ping_interval: float = 0.3, ping_timeout: float = 0.3) -> None:
        import asyncio

        import uvicorn

        from partywidget.server.app import create_app
        from partywidget.server.thread import bind_socket, uvicorn_config

        self.app = create_app()
        self._sock = bind_socket("127.0.0.1", 0)
        self.port = int(self._sock.getsockname()[1])
        self.host = f"127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn_config(self.app, ws_ping_interval=ping_interval, ws_ping_timeout=ping_timeout)
        )
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self._sock])),
            name="keepalive-server",
            daemon=True,
        )
        self._thread.start()
        wait_for(lambda: self.server.started, 30, "the keepalive server to start")

    def connection_ids(self, room: str, party: str = "main") -> set[str]:
        """Ids (``_pk``) of the sockets the server holds open in ``room`` right now."""
        live = self.app.state.registry.rooms.get((party, room))
        return set(live.connections) if live is not None else set()

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(15)
        self._sock.close()


class LoopThread:
    """An event loop on its own thread: a second client that keeps running while the
    widgets' shared daemon loop is blocked (a widget made on it attaches to it)."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def make(self, factory: Callable[[], Any]) -> Any:
        import asyncio

        async def on_loop() -> Any:
            return factory()

        return asyncio.run_coroutine_threadsafe(on_loop(), self.loop).result(30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(15)
