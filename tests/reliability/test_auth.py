"""The documented auth pattern (docs/security.md), run verbatim, and room isolation.

The server class is *executed from the documentation's code block*, so the page cannot
drift from what is tested. Real uvicorn on loopback, our client, TinyBase's client in
Node, raw WebSockets and raw HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from partywidget.partykit.socket import PartySocket
from partywidget.server import (
    PartyServer,
    ServerThread,
    TinyBasePartyKitServer,
    create_app,
    run_in_thread,
)
from support.node import NodePeers
from support.reliability import REPO_ROOT, SRC, TIMEOUT, fetch_content, py_peer
from support.waiting import eventually

pytestmark = pytest.mark.timeout(120)

DOC = REPO_ROOT / "docs" / "security.md"


def _doc_namespace() -> dict[str, Any]:
    """Execute the first ``python`` block of docs/security.md and return its globals."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "docs/security.md lost its code block"
    namespace: dict[str, Any] = {"__name__": "security_doc"}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    return namespace


DOC_NS = _doc_namespace()
AuthServer: type[TinyBasePartyKitServer] = DOC_NS["AuthServer"]


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    db = tmp_path_factory.mktemp("auth") / "rooms.sqlite3"
    with run_in_thread(create_app({"main": AuthServer}, storage=db)) as server:
        yield server


def _config(token: str) -> dict[str, Any]:
    return {"store_path": f"/store?token={token}"}


async def test_tokens_are_required_on_every_channel(auth_server: ServerThread) -> None:
    base = f"{auth_server.url}/parties/main/lab-1/store"
    ws = f"{auth_server.ws_url}/parties/main/lab-1?_pk=x"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        for url in (base, base + "?token=wrong", base + "?token=alice-secret&room=lab-1"):
            expected = 200 if "alice" in url else 403
            assert (await client.get(url)).status_code == expected, url
        # A read-only token may read but not initialise (PUT) the room.
        assert (await client.put(base + "?token=bob-secret", content="[{},{}]")).status_code == 403
        # A token for another room gives nothing here.
        other = f"{auth_server.url}/parties/main/lab-3/store?token=alice-secret"
        assert (await client.get(other)).status_code == 403
    for query in ("", "&token=wrong", "&token=bob-secret-not"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws + query, open_timeout=TIMEOUT):
                pass
        assert refused.value.response.status_code == 403


async def test_read_only_connection_loads_listens_and_is_reverted(
    auth_server: ServerThread, node_peers: NodePeers
) -> None:
    host = auth_server.host
    url = f"{auth_server.url}/parties/main/lab-1/store?token=alice-secret"
    alice_q, bob_q = {"token": "alice-secret"}, {"token": "bob-secret"}
    async with py_peer(host, "lab-1", query=alice_q, config=_config("alice-secret")) as alice:
        alice.store.set_row("grades", "ann", {"score": 17})
        await eventually(alice.persister.is_settled)
        async with py_peer(host, "lab-1", query=bob_q, config=_config("bob-secret")) as bob:
            # Bob loads the room and listens...
            assert bob.store.get_row("grades", "ann") == {"score": 17}
            alice.store.set_cell("grades", "ann", "score", 18)
            await eventually(lambda: bob.store.get_cell("grades", "ann", "score") == 18)
            # ...but his writes are refused and he is told: his store reverts.
            bob.store.set_cell("grades", "ann", "score", 20)
            bob.store.set_row("grades", "bob", {"score": 20})
            bob.store.set_value("open", True)

            def reverted() -> bool:
                return bob.store.get_cell("grades", "ann", "score") == 18 and not bob.store.has_row(
                    "grades", "bob"
                )

            await eventually(reverted, what="bob reverted by the server")
            await eventually(lambda: not bob.store.has_value("open"))
            # A table deletion by a reader is refused too.
            bob.store.del_table("grades")
            await eventually(lambda: bob.store.get_row("grades", "ann") == {"score": 18})

            # The same with TinyBase's JavaScript client: query + storePath.
            await node_peers.connect(
                "carol",
                host=host,
                room="lab-1",
                query=bob_q,
                config={"storeProtocol": "http", "storePath": "/store?token=bob-secret"},
            )
            await node_peers.call("carol", "setCell", "grades", "ann", "score", 0)
            await node_peers.wait_for_content("carol", alice.store.get_content())

            alice.store.set_cell("grades", "ann", "score", 19)
            await eventually(lambda: bob.store.get_cell("grades", "ann", "score") == 19)
            content = await fetch_content(url)
            assert content == alice.store.get_content() == bob.store.get_content()
            assert content == ({"grades": {"ann": {"score": 19}}}, {})
            assert bob.socket.ready_state == PartySocket.OPEN


async def test_alice_reads_only_where_granted(auth_server: ServerThread) -> None:
    """Alice writes lab-1 but only reads lab-2 (per-room roles, same token)."""
    host = auth_server.host
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        # lab-2 initialised by nobody: only a writer may PUT; alice is a reader there.
        url2 = f"{auth_server.url}/parties/main/lab-2/store?token=alice-secret"
        assert (await client.put(url2, content="[{},{}]")).status_code == 403
    q = {"token": "alice-secret"}
    async with py_peer(host, "lab-1", query=q, config=_config("alice-secret")) as writer:
        writer.store.set_value("x", 1)
        await eventually(writer.persister.is_settled)
        content = await fetch_content(
            f"{auth_server.url}/parties/main/lab-1/store?token=alice-secret"
        )
        assert content is not None and content[1]["x"] == 1


# -- isolation --------------------------------------------------------------------------
class Echo(PartyServer):
    """A second party type: echoes to its room, to see nothing leaks across parties."""

    async def on_message(self, message: str, connection: Any) -> None:
        self.party.broadcast(f"echo:{message}", [connection.id])


TRICKY_ROOMS = [
    "a",
    "b",
    "ab",
    "a/b",  # sent encoded as a%2Fb: one room, not a sub-path
    "../a",
    "a/../b",
    'a","b',
    't"a","r',
    "%2e%2e",
    "é𝄞",
    "a b",
    "a?b",
    "a#b",
]


@pytest.fixture
def iso_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, Path]]:
    db = tmp_path_factory.mktemp("iso") / "rooms.sqlite3"
    app = create_app({"main": TinyBasePartyKitServer, "other": TinyBasePartyKitServer}, db)
    with run_in_thread(app) as server:
        yield server, db


def _path(party: str, room: str) -> str:
    return f"/parties/{party}/{quote(room, safe='')}"


async def test_nothing_crosses_rooms_or_parties(iso_server: tuple[ServerThread, Path]) -> None:
    server, db = iso_server
    targets = [(p, r) for p in ("main", "other") for r in TRICKY_ROOMS]
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        for party, room in targets:
            body = _js([{"t": {"r": {"room": room, "party": party}}}, {}])
            response = await client.put(f"{server.url}{_path(party, room)}/store", content=body)
            assert response.status_code == 201, (party, room, response.text)

    # One listener per room; each room gets one edit; each listener must see only its own.
    listeners = {
        t: await connect(f"{server.ws_url}{_path(*t)}?_pk=listener", open_timeout=TIMEOUT)
        for t in targets
    }
    writers = {
        t: await connect(f"{server.ws_url}{_path(*t)}?_pk=writer", open_timeout=TIMEOUT)
        for t in targets
    }
    try:
        for (party, room), ws in writers.items():
            await ws.send(_edit(party, room))
        for (party, room), ws in listeners.items():
            message = await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert message == _edit(party, room)
        # The probe: a second edit per room; if anything had crossed, it would arrive
        # before this (per-connection order), so the next message must be our probe.
        for (party, room), ws in writers.items():
            await ws.send(_probe(party, room))
        for (party, room), ws in listeners.items():
            message = await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert message == _probe(party, room)
    finally:
        for ws in [*listeners.values(), *writers.values()]:
            await ws.close()

    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        for party, room in targets:
            got = await fetch_content(f"{server.url}{_path(party, room)}/store")
            assert got == (
                {"t": {"r": {"room": room, "party": party, "edit": f"{party}|{room}"}}},
                {"probe": party + room},
            ), (party, room)
    # Storage: every stored row belongs to exactly the room that wrote it.
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT party, room, key, value FROM kv").fetchall()
    finally:
        conn.close()
    for party, room, key, value in rows:
        if key.startswith('t"t","r","room"'):
            assert value == _js(room), (party, room, key, value)
        if key.startswith('t"t","r","party"'):
            assert value == f'"{party}"'
    stored = {(p, r) for p, r, _, _ in rows}
    assert set(targets) <= stored


def _js(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _edit(party: str, room: str) -> str:
    return "s" + _js([{"t": {"r": {"edit": f"{party}|{room}"}}}, {}, 1])


def _probe(party: str, room: str) -> str:
    return "s" + _js([{}, {"probe": party + room}, 1])


def _raw_http(host: str, request_line: str) -> tuple[int, str]:
    """An HTTP/1.1 request with the path sent byte for byte (no client normalisation)."""
    name, port = host.rsplit(":", 1)
    with socket.create_connection((name, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(f"{request_line}\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, body.decode("utf-8", "replace")


@pytest.mark.parametrize(
    "path",
    [
        "/parties/main/a/../b/store",
        "/parties/main/a/%2e%2e/b/store",
        "/parties/main/..%2Fb/store",
        "/parties/main/a%2F..%2Fb/store",
        "/party/a/../../parties/other/b/store",
        "/parties/main/a/store/../../b/store",
    ],
)
async def test_paths_cannot_escape_their_room(
    iso_server: tuple[ServerThread, Path], path: str
) -> None:
    """Whatever the path says after the room segment, the answer is that room's (or a
    refusal), never room ``b``'s of party ``main``/``other``."""
    server, _ = iso_server
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        for party in ("main", "other"):
            for room in ("a", "b"):
                body = _js([{"t": {"r": {"room": room, "edit": f"{party}|{room}"}}}, {}])
                response = await client.put(f"{server.url}{_path(party, room)}/store", content=body)
                assert response.status_code in (201, 205)
    status, body = await asyncio.to_thread(_raw_http, server.host, f"GET {path} HTTP/1.1")
    assert '"edit":"main|b"' not in body and '"edit":"other|b"' not in body, body
    assert '"room":"b"' not in body, (status, body)


# -- binding ------------------------------------------------------------------------------
def _serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "partywidget", "serve", "--port", "0", "--db", ":memory:", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )


def _non_loopback_address() -> str | None:
    """This machine's outward IPv4 address (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.connect(("10.254.254.254", 1))
        except OSError:
            return None
        address: str = udp.getsockname()[0]
    return None if address.startswith("127.") else address


def test_serve_binds_loopback_by_default_and_exposing_needs_a_flag() -> None:
    default = _serve()
    try:
        assert default.stdout is not None
        banner = default.stdout.readline()
        assert banner.startswith("partywidget room server on http://127.0.0.1:"), banner
        port = int(banner.rsplit(":", 1)[1].strip())
        # Listening on loopback only: this machine's other address refuses connections.
        address = _non_loopback_address()
        if address is not None:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((address, port), timeout=TIMEOUT).close()
    finally:
        default.terminate()
        default.communicate(timeout=TIMEOUT)

    refused = _serve("--host", "0.0.0.0")
    _, err = refused.communicate(timeout=TIMEOUT)
    assert refused.returncode == 2 and "--public" in err

    exposed = _serve("--host", "0.0.0.0", "--public")
    try:
        assert exposed.stdout is not None
        assert exposed.stdout.readline().startswith("partywidget room server on http://0.0.0.0:")
    finally:
        exposed.terminate()
        _, err = exposed.communicate(timeout=TIMEOUT)
    assert "warning: listening on 0.0.0.0" in err and "anyone" in err


def test_embedded_server_binds_loopback() -> None:
    with run_in_thread() as server:
        assert server.bind_host == "127.0.0.1"
        assert server.host.startswith("127.0.0.1:")
