"""A room server that misbehaves on demand, to test how our client reports bad input."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


class EvilRoom:
    """A small real room server that misbehaves on demand (Starlette on uvicorn)."""

    def __init__(self) -> None:
        self.get_status = 200
        self.get_body = b'[{"t":{"r":{"c":1}}},{}]'
        self.hang = False
        self.release = threading.Event()  # ends hanging requests (set at teardown)
        self.frames: list[str | bytes] = []
        self.requests: list[str] = []
        self.received: list[str] = []  # frames our client sent, in order

        async def store(request: Request) -> Response:
            self.requests.append(request.method)
            while self.hang and not self.release.is_set():
                await asyncio.sleep(0.02)
            if request.method == "PUT":
                return Response(status_code=205)
            return Response(self.get_body, status_code=self.get_status)

        async def room(websocket: WebSocket) -> None:
            await websocket.accept()
            for frame in self.frames:
                if isinstance(frame, bytes):
                    await websocket.send_bytes(frame)
                else:
                    await websocket.send_text(frame)
            with contextlib.suppress(Exception):
                while True:
                    self.received.append(await websocket.receive_text())

        self.app = Starlette(
            routes=[
                Route("/parties/main/{room}/store", store, methods=["GET", "PUT"]),
                WebSocketRoute("/parties/main/{room}", room),
            ]
        )
