"""Our PartyKit persister in real rooms, next to real TinyBase clients.

Servers: partywidget's own (``partywidget.server.run_in_thread``, real uvicorn) and
``partykit dev`` running TinyBase's own ``TinyBasePartyKitServer`` (real workerd). The
other client in the room is TinyBase 10.0.1's ``createPartyKitPersister`` over
partysocket 1.3.0 in Node (``tests/support/node.py``). Bad input comes from small real
servers on loopback written here (Starlette + uvicorn) and from raw WebSocket clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import websockets

from partywidget.changes import ChangesTooLargeError
from partywidget.codec import CodecError, decode_changes
from partywidget.partykit.persister import (
    ForeignMessageError,
    create_partykit_persister,
)
from partywidget.partykit.socket import PartySocket
from partywidget.persister import Status
from partywidget.server import (
    ServerThread,
    TinyBasePartyKitServer,
    TinyBaseServerConfig,
    create_app,
    run_in_thread,
)
from partywidget.store import create_store
from support.clients import (
    RoomServer,
    get_store,
    new_room,
    py_client,
    store_url,
)
from support.evil_room import EvilRoom
from support.node import NodePeers, js_equal, node_available
from support.partykit import REPO_ROOT, PartykitDev, partykit_available
from support.ports import free_port
from support.proxy import TcpProxy
from support.waiting import eventually

pytestmark = [pytest.mark.node, pytest.mark.timeout(120)]

CUSTOM_PATH = "/db"
CUSTOM_PREFIX = "pw\u00e9:"


# -- servers ------------------------------------------------------------------------------
class CustomConfigServer(TinyBasePartyKitServer):
    config = TinyBaseServerConfig(store_path=CUSTOM_PATH, message_prefix=CUSTOM_PREFIX)


CUSTOM_TEMPLATE_TS = f"""
import {{TinyBasePartyKitServer}} from 'tinybase/persisters/persister-partykit-server';
export default class CustomRoom extends TinyBasePartyKitServer {{
  constructor(room) {{
    super(room);
    this.config.storePath = {json.dumps(CUSTOM_PATH)};
    this.config.messagePrefix = {json.dumps(CUSTOM_PREFIX)};
  }}
  async onRequest(request) {{
    // support.partykit's readiness probe asks for /store in this room: say yes.
    if (this.party.id === '__partywidget_ready_probe__') {{
      return new Response('');
    }}
    return super.onRequest(request);
  }}
}}
"""


def _require_node() -> None:
    reason = node_available() or partykit_available()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def custom_python_server() -> Iterator[ServerThread]:
    server = run_in_thread(create_app({"main": CustomConfigServer}))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def custom_partykit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartykitDev]:
    """``partykit dev`` with TinyBase's server configured for a custom path and prefix.

    The template lives in a temporary directory whose ``node_modules`` is a symlink to the
    repository's, so partykit's bundler finds ``tinybase`` there.
    """
    _require_node()
    template = tmp_path_factory.mktemp("custom-template")
    (template / "src").mkdir()
    (template / "src" / "server.ts").write_text(CUSTOM_TEMPLATE_TS)
    (template / "partykit.json").write_text(
        json.dumps(
            {"name": "pw-custom", "main": "src/server.ts", "compatibilityDate": "2024-07-18"}
        )
    )
    os.symlink(REPO_ROOT / "node_modules", template / "node_modules")
    with PartykitDev(template_dir=template) as dev:
        yield dev


@pytest.fixture(params=["python", "partykit"])
def custom_server(request: pytest.FixtureRequest) -> RoomServer:
    server: RoomServer = request.getfixturevalue(f"custom_{request.param}_server")
    return server


@contextlib.contextmanager
def capture_loop_errors() -> Iterator[list[dict[str, Any]]]:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


# -- sharing a room with TinyBase -----------------------------------------------------------
async def exercise_room(host: str, room: str, node_peers: NodePeers, url: str) -> bytes:
    """Both clients edit in turn; after each step both equal the other. Returns GET body."""
    await node_peers.connect("node", host=host, room=room)
    async with py_client(host, room) as py:
        store = py.store

        async def py_then_node(action: Callable[[], Any]) -> None:
            action()
            await node_peers.wait_for_content("node", store.get_content())

        async def node_then_py(method: str, *args: Any) -> None:
            await node_peers.call("node", method, *args)
            expected = await node_peers.content("node")
            await eventually(lambda: js_equal(store.get_content(), expected), what=method)

        await py_then_node(lambda: store.set_cell("pets", "fido", "species", "dog"))
        await py_then_node(
            lambda: store.set_row(
                "pets", "felix", {"species": "cat", "tags": ["black", "white"], "age": 4}
            )
        )
        await py_then_node(lambda: store.set_cell("pets", "fido", "meta", {"a": {"b": [1, None]}}))
        await py_then_node(lambda: store.set_cell("таблица", "行", "🙂", "ünïcødé"))
        await py_then_node(lambda: store.set_values({"open": True, "n": 1.5, "z": 0}))
        await node_then_py("setCell", "pets", "rex", "species", "dog")
        await node_then_py("setCell", "pets", "rex", "info", {"x": [True, False]})
        await node_then_py("setValue", "motto", "¡hola!")
        await node_then_py("delCell", "pets", "felix", "age")
        await py_then_node(lambda: store.del_cell("pets", "fido", "meta"))
        await py_then_node(lambda: store.del_row("pets", "felix"))
        await node_then_py("delRow", "pets", "fido")
        await py_then_node(lambda: store.del_value("n"))
        await node_then_py("delValue", "z")
        await node_then_py("setTable", "other", {"1": {"c": 1}, "0": {"c": 0}})
        await py_then_node(lambda: store.del_table("таблица"))
        await node_then_py("delTable", "other")
        await py_then_node(lambda: store.set_table("last", {"r": {"n": 10**15, "f": 1e-7}}))

        await eventually(py.persister.is_settled, what="python settled")
        body, server_content = await get_store(url)
        node_content = await node_peers.content("node")
        assert js_equal(server_content, store.get_content())
        assert js_equal(server_content, node_content)
        assert py.errors == []
        assert await node_peers.errors("node") == []
        return body


async def test_python_and_tinybase_clients_share_a_room(
    each_server: RoomServer, node_peers: NodePeers
) -> None:
    room = new_room("share")
    await exercise_room(each_server.host, room, node_peers, store_url(each_server, room))


async def test_both_servers_end_with_the_same_bytes(
    server: ServerThread, partykit_dev: PartykitDev, node_peers: NodePeers
) -> None:
    room = new_room("bytes")
    ours = await exercise_room(server.host, room, node_peers, store_url(server, room))
    await node_peers.disconnect("node")
    theirs = await exercise_room(partykit_dev.host, room, node_peers, store_url(partykit_dev, room))
    assert ours == theirs


async def test_message_prefix_and_store_path(
    custom_server: RoomServer, node_peers: NodePeers
) -> None:
    room = new_room("custom")
    node_config = {
        "storeProtocol": "http",
        "storePath": CUSTOM_PATH,
        "messagePrefix": CUSTOM_PREFIX,
    }
    await node_peers.connect("node", host=custom_server.host, room=room, config=node_config)
    config = {"store_path": CUSTOM_PATH, "message_prefix": CUSTOM_PREFIX}
    async with py_client(custom_server.host, room, config) as py:
        assert py.persister.store_url.endswith(f"/parties/main/{room}{CUSTOM_PATH}")
        py.store.set_cell("t", "r", "c", "from python")
        await node_peers.wait_for_content("node", py.store.get_content())
        await node_peers.call("node", "setValue", "v", "from node")
        await eventually(lambda: py.store.get_value("v") == "from node")
        received = await node_peers.received("node")
        assert received and all(m.startswith(CUSTOM_PREFIX + "s") for m in received)
        await eventually(py.persister.is_settled)
        _, content = await get_store(store_url(custom_server, room, CUSTOM_PATH))
        assert js_equal(content, py.store.get_content())
        assert py.errors == []


async def test_initial_content_and_loading_an_existing_room(
    each_server: RoomServer, node_peers: NodePeers
) -> None:
    room = new_room("initial")
    async with py_client(each_server.host, room, initial_content=({"t": {"r": {"c": 1}}}, {})) as a:
        assert a.store.get_tables() == {"t": {"r": {"c": 1}}}
        await eventually(a.persister.is_settled)
        result = await node_peers.connect("node", host=each_server.host, room=room)
        assert js_equal(result["content"], a.store.get_content())
        # A second Python client loads the room; its initial content is not used.
        async with py_client(each_server.host, room, initial_content=({}, {"ignored": 1})) as b:
            assert b.store.get_content() == ({"t": {"r": {"c": 1}}}, {})
            assert b.persister.get_status() is Status.IDLE


async def test_edit_during_initial_save_is_sent(
    each_server: RoomServer, node_peers: NodePeers
) -> None:
    """The reference never sends an edit made while its initial PUT is in flight."""
    room = new_room("race")
    target_host, target_port = each_server.host.rsplit(":", 1)
    await node_peers.connect("node", host=each_server.host, room=room)
    with TcpProxy(target_host, int(target_port)) as proxy:
        proxy.set_delay(0.15)  # slow network: the PUT stays in flight a while
        async with py_client(proxy.host, room, start=False) as py:
            statuses: list[Status] = []
            py.persister.add_status_listener(lambda _p, s: statuses.append(s))
            starting = asyncio.ensure_future(py.persister.start_auto_persisting())
            await eventually(lambda: py.persister.is_auto_loading() and Status.SAVING in statuses)
            assert not starting.done()
            py.store.set_cell("t", "r", "c", "made during the PUT")
            await starting
            await node_peers.wait_for_content(
                "node", ({"t": {"r": {"c": "made during the PUT"}}}, {})
            )


async def test_big_change_set_is_split(each_server: RoomServer, node_peers: NodePeers) -> None:
    """>1 MiB in one transaction reaches the other client intact, in several messages."""
    room = new_room("split")
    await node_peers.connect("node", host=each_server.host, room=room)
    async with py_client(each_server.host, room) as py:
        big = "é" * 2500  # 5000 bytes of UTF-8 per cell
        with py.store.transaction():
            for i in range(300):
                py.store.set_cell("big", f"r{i}", "text", f"{i}:{big}")
            py.store.set_value("count", 300)
        await node_peers.wait_for_content("node", py.store.get_content(), timeout=30)
        assert py.persister.messages_sent >= 2
        received = await node_peers.received("node")
        assert len(received) >= 2
        assert all(len(m.encode()) < 1024 * 1024 for m in received)
        # The connection survived (PartyKit closes it on a frame over 1 MiB).
        assert py.socket.ready_state == PartySocket.OPEN
        assert (await node_peers.status("node"))["closes"] == 0
        await eventually(py.persister.is_settled)
        _, content = await get_store(store_url(each_server, room))
        assert js_equal(content, py.store.get_content())
        assert py.errors == []


async def test_single_cell_over_the_limit_is_reported(server: ServerThread) -> None:
    room = new_room("toolarge")
    async with py_client(server.host, room, {"max_message_bytes": 1000}) as py:
        py.store.set_cell("t", "r", "small", "ok")
        py.store.set_cell("t", "r", "huge", "x" * 2000)
        await eventually(lambda: any(isinstance(e, ChangesTooLargeError) for e in py.errors))
        _, content = await get_store(store_url(server, room))
        assert content == ({"t": {"r": {"small": "ok"}}}, {})
        assert py.store.get_cell("t", "r", "huge") == "x" * 2000  # kept locally


async def test_loop_of_edits_is_one_message(each_server: RoomServer, node_peers: NodePeers) -> None:
    room = new_room("coalesce")
    await node_peers.connect("node", host=each_server.host, room=room)
    async with py_client(each_server.host, room) as py:
        await eventually(py.persister.is_settled)
        before = py.persister.messages_sent
        for i in range(500):
            py.store.set_cell("t", str(i), "c", i)  # 500 transactions, one loop turn
        await node_peers.wait_for_content("node", py.store.get_content())
        assert py.persister.messages_sent - before == 1
        assert len(await node_peers.received("node")) == 1


# -- bad input ------------------------------------------------------------------------------
async def test_malformed_and_foreign_messages_are_reported(
    evil: tuple[EvilRoom, ServerThread],
) -> None:
    room, server = evil
    room.frames = [
        "x[{},{},1]",  # a type we do not know
        "s[{",  # broken JSON
        "s[{},{},2]",  # not Changes
        's[{"t":{"r":{"c":NaN}}},{},1]',  # not JSON
        's[{"t":{"r":{"c":"\ufffd{bad"}}},{},1]',  # a JSON cell that is not JSON
        "s" + "[" * 500 + "]" * 500,  # too deep
        b"s[{},{},1]",  # binary frame
        "s",  # type, no payload
        's[{"t":{"r":{"d":2}}},{},1]',  # finally, a good one
    ]
    with capture_loop_errors() as loop_errors:
        async with py_client(server.host, "evil") as py:
            await eventually(lambda: py.store.get_cell("t", "r", "d") == 2)
            assert py.store.get_content() == ({"t": {"r": {"c": 1, "d": 2}}}, {})
            kinds = [type(e) for e in py.errors]
            assert kinds.count(ForeignMessageError) == 1
            assert kinds.count(CodecError) == 7, py.errors
    assert loop_errors == []


async def test_http_500_is_reported_and_store_kept(evil: tuple[EvilRoom, ServerThread]) -> None:
    room, server = evil
    room.get_status = 500
    async with py_client(server.host, "e500", initial_content=({}, {"mine": 1})) as py:
        assert py.store.get_content() == ({}, {"mine": 1})
        assert any(
            isinstance(e, httpx.HTTPStatusError) and e.response.status_code == 500
            for e in py.errors
        )
        assert py.persister.is_auto_saving()


async def test_refused_connection_is_reported() -> None:
    host = f"127.0.0.1:{free_port()}"  # nobody listens there
    with capture_loop_errors() as loop_errors:
        async with py_client(
            host, "refused", {"resync": {"open_timeout": 0.2}}, initial_content=({}, {"v": 1})
        ) as py:
            py.store.set_value("w", 2)
            assert py.store.get_content() == ({}, {"v": 1, "w": 2})
            assert any(isinstance(e, httpx.ConnectError) for e in py.errors)
            assert py.persister.get_status() is Status.IDLE
    assert loop_errors == []


async def test_server_that_never_answers_times_out(evil: tuple[EvilRoom, ServerThread]) -> None:
    room, server = evil
    room.hang = True
    config = {"http_timeout": 0.3}
    async with py_client(server.host, "hang", config, initial_content=({}, {"v": 1})) as py:
        assert py.store.get_content() == ({}, {"v": 1})
        assert any(isinstance(e, httpx.TimeoutException) for e in py.errors)


async def test_garbage_sent_to_a_real_room_changes_nothing(
    each_server: RoomServer, node_peers: NodePeers
) -> None:
    room = new_room("garbage")
    async with py_client(
        each_server.host, room, initial_content=({"t": {"r": {"c": 1}}}, {})
    ) as py:
        await eventually(py.persister.is_settled)
        url = f"ws://{each_server.host}/parties/main/{room}?_pk=raw-garbage"
        async with websockets.connect(url, close_timeout=0.2) as raw:
            for frame in ["x", "s[", "s[{},{}", 's[{"t":{"r":{"c":NaN}}},{},1]', "zzz"]:
                await raw.send(frame)
            await raw.send('s[{"t":{"r":{"raw":true}}},{},1]')
            await eventually(lambda: py.store.get_cell("t", "r", "raw") is True)
        assert py.store.get_content() == ({"t": {"r": {"c": 1, "raw": True}}}, {})
        assert py.errors == []


async def test_destroy_closes_everything(server: ServerThread) -> None:
    room = new_room("destroy")
    async with py_client(server.host, room) as py:
        py.store.set_cell("t", "r", "c", 1)
        await eventually(py.persister.is_settled)
        http = py.persister._http
        assert http is not None
        await py.persister.destroy()
        assert http.is_closed
        assert not py.persister.is_auto_loading() and not py.persister.is_auto_saving()
        py.store.set_cell("t", "r", "c", 2)
        await asyncio.sleep(0.05)
        _, content = await get_store(store_url(server, room))
        assert content == ({"t": {"r": {"c": 1}}}, {})


WIRE_VECTORS = json.loads((REPO_ROOT / "tests" / "wire-vectors.json").read_text())


async def test_sent_messages_match_the_reference_byte_for_byte(
    evil: tuple[EvilRoom, ServerThread],
) -> None:
    """Replay the captured reference operations: our client sends the same bytes."""
    room, server = evil
    room.get_body = WIRE_VECTORS["initial_put"]["body"].encode()
    async with py_client(server.host, "vectors") as py:
        assert room.requests == ["GET", "PUT"]
        for case in WIRE_VECTORS["cases"]:
            before = len(room.received)
            if case["messages"]:
                for message in case["messages"]:
                    py.store.apply_changes(decode_changes(message[1:]))
            else:  # "setCell same value (no change)": no message (the next case would see it)
                current = py.store.get_cell("pets", "fido", "species")
                py.store.set_cell("pets", "fido", "species", current)
            await eventually(py.persister.is_settled)

            def arrived(count: int = before + len(case["messages"])) -> bool:
                return len(room.received) >= count

            await eventually(arrived)
            assert room.received[before:] == case["messages"], case["name"]
            assert js_equal(py.store.get_content(), tuple(case["content_after"])), case["name"]
        assert py.errors == []


@pytest.mark.parametrize("case", WIRE_VECTORS["incoming"], ids=lambda c: c["message"][:30])
async def test_received_messages_apply_like_the_reference(
    evil: tuple[EvilRoom, ServerThread], case: dict[str, Any]
) -> None:
    room, server = evil
    room.get_body = json.dumps(case["before"], ensure_ascii=False).encode()
    room.frames = [case["message"], 's[{},{"__done__":true},1]']
    async with py_client(server.host, "incoming") as py:
        await eventually(lambda: py.store.get_value("__done__") is True)
        py.store.del_value("__done__")
        assert js_equal(py.store.get_content(), tuple(case["content_after"]))
        if not js_equal(tuple(case["before"]), tuple(case["content_after"])):
            assert py.errors == []  # else the message was bad and is reported


def test_config_validation() -> None:
    store = create_store()
    socket = PartySocket("127.0.0.1:1", "r", start_closed=True)
    with pytest.raises(ValueError, match="unknown"):
        create_partykit_persister(store, socket, {"store_protocoll": "http"})
    camel = create_partykit_persister(
        store, socket, {"storeProtocol": "http", "storePath": "/db", "messagePrefix": "p"}
    )
    assert camel.store_url == "http://127.0.0.1:1/parties/main/r/db"
    with pytest.raises(ValueError, match="unknown resync"):
        create_partykit_persister(store, socket, {"resync": {"nope": 1}})
    persister = create_partykit_persister(store, socket, "http")
    assert persister.store_url == "http://127.0.0.1:1/parties/main/r/store"
    assert persister.get_connection() is socket
