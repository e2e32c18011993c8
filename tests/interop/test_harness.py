"""The interop harness itself, run against the reference: ``partykit dev`` + Node TinyBase.

Why: every interop test trusts these fixtures. Here they are proven on the reference
alone (TinyBase's server under workerd, TinyBase's client over partysocket), and the
reference's known weaknesses are pinned as *witnesses*: facts our own client/server
tests contrast with (partywidget must do better where the reference loses data).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.request
from typing import Any

import pytest

from support.node import CLOSED, OPEN, NodePeerError, NodePeers, js_equal
from support.partykit import PartykitDev
from support.proxy import TcpProxy
from support.waiting import wait_for

pytestmark = pytest.mark.node

# partysocket's defaults wait >= 3 s before reconnecting; same code paths, shorter waits.
FAST = {"minReconnectionDelay": 50, "maxReconnectionDelay": 200, "minUptime": 100}

INITIAL: Any = ({"pets": {"fido": {"species": "dog", "legs": 4}}}, {"open": True})


def assert_content(actual: Any, expected: Any) -> None:
    assert js_equal(actual, expected), f"{actual!r} != {expected!r}"


# Each step: which client writes, the store operations (one transaction), and the
# content every client and the server must then have. Written out by hand from
# TinyBase's semantics, so the test checks them rather than copying the writer.
STEPS: list[tuple[str, list[list[Any]], Any]] = [
    (
        "a",
        [["setCell", "pets", "fido", "species", "cat"]],
        ({"pets": {"fido": {"species": "cat", "legs": 4}}}, {"open": True}),
    ),
    (
        "b",
        [["setCell", "pets", "fido", "meta", {"a": 1, "b": [True, None]}]],
        (
            {"pets": {"fido": {"species": "cat", "legs": 4, "meta": {"a": 1, "b": [True, None]}}}},
            {"open": True},
        ),
    ),
    (
        "a",
        [
            ["setCell", "prés", 'ü"r', "c\\1", "é\u2028😀"],
            ["setCell", "pets", "fido", "tags", ["x", 2]],
        ],
        (
            {
                "pets": {
                    "fido": {
                        "species": "cat",
                        "legs": 4,
                        "meta": {"a": 1, "b": [True, None]},
                        "tags": ["x", 2],
                    }
                },
                "prés": {'ü"r': {"c\\1": "é\u2028😀"}},
            },
            {"open": True},
        ),
    ),
    (
        "b",
        [
            ["delCell", "pets", "fido", "meta"],
            ["setRow", "pets", "rex", {"species": "dog", "legs": 3.5}],
        ],
        (
            {
                "pets": {
                    "fido": {"species": "cat", "legs": 4, "tags": ["x", 2]},
                    "rex": {"species": "dog", "legs": 3.5},
                },
                "prés": {'ü"r': {"c\\1": "é\u2028😀"}},
            },
            {"open": True},
        ),
    ),
    (
        "a",
        # setRow replaces the whole row; deleting the last cell deletes row and table.
        [["setRow", "pets", "fido", {"species": "cow"}], ["delCell", "prés", 'ü"r', "c\\1"]],
        (
            {"pets": {"fido": {"species": "cow"}, "rex": {"species": "dog", "legs": 3.5}}},
            {"open": True},
        ),
    ),
    (
        "b",
        [
            ["delRow", "pets", "rex"],
            ["setTable", "species", {"dog": {"price": 5}, "0": {"price": 0}}],
        ],
        (
            {
                "pets": {"fido": {"species": "cow"}},
                "species": {"dog": {"price": 5}, "0": {"price": 0}},
            },
            {"open": True},
        ),
    ),
    (
        "a",
        [
            ["setValue", "open", False],
            ["setValue", "config", {"theme": "dark"}],
            ["setValue", "n", -0.5],
        ],
        (
            {
                "pets": {"fido": {"species": "cow"}},
                "species": {"dog": {"price": 5}, "0": {"price": 0}},
            },
            {"open": False, "config": {"theme": "dark"}, "n": -0.5},
        ),
    ),
    (
        "b",
        [["delValue", "open"], ["delTable", "pets"], ["setValues", {"only": "this"}]],
        ({"species": {"dog": {"price": 5}, "0": {"price": 0}}}, {"only": "this"}),
    ),
    (
        "a",
        [["setTables", {"t": {"r": {"c": None}}}], ["delValues"]],
        ({"t": {"r": {"c": None}}}, {}),
    ),
]


async def test_two_peers_converge_through_partykit_dev(
    partykit_dev: PartykitDev, node_peers: NodePeers, room: str
) -> None:
    peers = node_peers
    first = await peers.connect("a", host=partykit_dev.host, room=room, initial_content=INITIAL)
    assert_content(first["content"], INITIAL)
    second = await peers.connect("b", host=partykit_dev.host, room=room)
    assert_content(second["content"], INITIAL)
    assert_content(partykit_dev.get_store(room), INITIAL)

    for writer, ops, expected in STEPS:
        await peers.transaction(writer, ops)
        for client in ("a", "b"):
            await peers.wait_for_content(client, expected)
        # The server applies before it broadcasts, so the reader having it implies
        # the server's storage has it too.
        assert_content(partykit_dev.get_store(room), expected)

    # The message log records the exact wire text in both directions.
    sent = await peers.sent("a")
    assert sent[0] == 's[{"pets":{"fido":{"species":"cat"}}},{},1]'
    assert sent[0] in await peers.received("b")
    assert await peers.errors("a") == []
    assert await peers.errors("b") == []


async def test_store_http_endpoint_of_the_reference(
    partykit_dev: PartykitDev, node_peers: NodePeers, room: str
) -> None:
    url = partykit_dev.store_url(room)
    empty = await node_peers.http("GET", url)
    assert (empty["status"], empty["body"]) == (200, "")
    assert empty["headers"]["access-control-allow-origin"] == "*"

    assert (await node_peers.http("PUT", url, "not json"))["status"] == 400
    assert (await node_peers.http("PUT", url, '[{"t":{"r":{"c":NaN}}},{}]'))["status"] == 400
    body = '[{"t":{"r":{"c":"\ufffd{\\"x\\":[1]}"}}},{"v":1}]'
    assert (await node_peers.http("PUT", url, body))["status"] == 201
    assert (await node_peers.http("PUT", url, "[{},{}]"))["status"] == 205

    got = await node_peers.http("GET", url)
    assert got["status"] == 200
    assert json.loads(got["body"]) == json.loads(body)
    assert_content(partykit_dev.get_store(room), ({"t": {"r": {"c": {"x": [1]}}}}, {"v": 1}))
    other = await node_peers.http("GET", url.removesuffix("/store") + "/other")
    assert other["status"] == 404


async def test_proxy_drop_all_makes_partysocket_reconnect(
    partykit_dev: PartykitDev, partykit_proxy: TcpProxy, node_peers: NodePeers, room: str
) -> None:
    peers = node_peers
    await peers.connect("a", host=partykit_dev.host, room=room, initial_content=INITIAL)
    await peers.connect("b", host=partykit_proxy.host, room=room, socket_options=FAST)
    partykit_proxy.wait_for_connections(1)

    assert partykit_proxy.drop_all() >= 1
    state = await peers.wait_for_socket("b", closes=1, opens=2, ready_state=OPEN)
    assert state["closes"] >= 1
    close = peers.events("b", "close")[0]
    assert close["code"] == 1006  # abnormal closure: no close frame, the TCP was reset

    # Live again: a's next edit reaches b through a new proxied connection.
    await peers.call("a", "setValue", "after", 1)
    await peers.wait_for_content("b", (INITIAL[0], {**INITIAL[1], "after": 1}))
    assert (await peers.status("a"))["opens"] == 1  # the direct client never noticed


async def test_proxy_pause_stalls_and_resume_delivers(
    partykit_dev: PartykitDev, partykit_proxy: TcpProxy, node_peers: NodePeers, room: str
) -> None:
    peers = node_peers
    await peers.connect("a", host=partykit_dev.host, room=room, initial_content=INITIAL)
    await peers.connect("b", host=partykit_proxy.host, room=room, socket_options=FAST)
    partykit_proxy.wait_for_connections(1)

    partykit_proxy.pause()
    await peers.call("a", "setCell", "pets", "fido", "legs", 3)
    expected = ({"pets": {"fido": {"species": "dog", "legs": 3}}}, {"open": True})
    wait_for(lambda: js_equal(partykit_dev.get_store(room), expected), what="server store")
    # The broadcast is held by the proxy: b cannot have it, and its socket stays open.
    assert_content(await peers.content("b"), INITIAL)
    assert (await peers.status("b"))["readyState"] == OPEN

    partykit_proxy.resume()
    await peers.wait_for_content("b", expected)
    assert (await peers.status("b"))["opens"] == 1


async def test_proxy_refuse_and_delay(
    partykit_dev: PartykitDev, partykit_proxy: TcpProxy, node_peers: NodePeers, room: str
) -> None:
    peers = node_peers
    await peers.connect("a", host=partykit_dev.host, room=room, initial_content=INITIAL)
    await peers.connect("b", host=partykit_proxy.host, room=room, socket_options=FAST)
    partykit_proxy.wait_for_connections(1)

    partykit_proxy.refuse(True)
    partykit_proxy.drop_all()
    await peers.wait_for_socket("b", closes=1)
    refused_before = partykit_proxy.refused
    wait_for(lambda: partykit_proxy.refused >= refused_before + 2, what="refused retries")
    assert (await peers.status("b"))["readyState"] != OPEN

    partykit_proxy.refuse(False)
    partykit_proxy.set_delay(0.2)
    await peers.wait_for_socket("b", opens=2, ready_state=OPEN, timeout=20)
    # Delayed, but in order: the last write wins on b as on the server.
    for legs in range(5):
        await peers.call("a", "setCell", "pets", "fido", "legs", legs)
    expected = ({"pets": {"fido": {"species": "dog", "legs": 4}}}, {"open": True})
    await peers.wait_for_content("b", expected)
    partykit_proxy.set_delay(0)


@pytest.mark.parametrize("cut", ["pause-then-drop", "blackhole-then-drop", "refuse-while-offline"])
async def test_witness_reference_client_does_not_resync_after_reconnect(
    partykit_dev: PartykitDev,
    partykit_proxy: TcpProxy,
    node_peers: NodePeers,
    room: str,
    cut: str,
) -> None:
    """REGRESSION WITNESS of the reference's weakness (see docs/protocol.md).

    A TinyBase client that was cut off misses every broadcast sent meanwhile and never
    reloads after partysocket reconnects: it stays silently divergent from the server.
    partywidget's client must not (its tests contrast with this one).
    """
    peers = node_peers
    await peers.connect("a", host=partykit_dev.host, room=room, initial_content=INITIAL)
    await peers.connect("b", host=partykit_proxy.host, room=room, socket_options=FAST)
    partykit_proxy.wait_for_connections(1)

    missed = ({"pets": {"fido": {"species": "cat", "legs": 4}}}, {"open": True})
    if cut in ("pause-then-drop", "blackhole-then-drop"):
        # The server still thinks b is connected and sends it the broadcast; the
        # bytes die with the connection (held by the proxy, or discarded at once).
        partykit_proxy.pause(discard=cut == "blackhole-then-drop")
        await peers.call("a", "setCell", "pets", "fido", "species", "cat")
        wait_for(lambda: js_equal(partykit_dev.get_store(room), missed), what="server store")
        partykit_proxy.drop_all()
        partykit_proxy.resume()
    else:
        # b is known to be offline (its socket closed) while a edits.
        partykit_proxy.refuse(True)
        partykit_proxy.drop_all()
        await peers.wait_for_socket("b", closes=1)
        await peers.call("a", "setCell", "pets", "fido", "species", "cat")
        wait_for(lambda: js_equal(partykit_dev.get_store(room), missed), what="server store")
        partykit_proxy.refuse(False)
    await peers.wait_for_socket("b", opens=2, ready_state=OPEN, timeout=20)

    # A later edit reaches b: b is live, so the earlier one would have arrived by now
    # if the reference resynced. It did not.
    await peers.call("a", "setValue", "marker", 1)
    server_now = ({"pets": {"fido": {"species": "cat", "legs": 4}}}, {"open": True, "marker": 1})
    b_now = ({"pets": {"fido": {"species": "dog", "legs": 4}}}, {"open": True, "marker": 1})
    await peers.wait_for_content("b", b_now)
    await peers.wait_for_content("a", server_now)
    assert_content(partykit_dev.get_store(room), server_now)
    assert_content(await peers.content("b"), b_now)  # still divergent


async def test_witness_oversized_message_closes_socket_1009(
    partykit_dev: PartykitDev, node_peers: NodePeers, room: str
) -> None:
    """Witness: a WebSocket message over 1 MiB makes workerd close with 1009; the
    change is lost for everyone (sender keeps it), partysocket reconnects."""
    peers = node_peers
    await peers.connect(
        "a", host=partykit_dev.host, room=room, initial_content=INITIAL, socket_options=FAST
    )
    await peers.connect("b", host=partykit_dev.host, room=room)
    await peers.call("a", "setCell", "pets", "fido", "big", "x" * (1024 * 1024))
    close = await peers.wait_for_event(lambda e: e["client"] == "a" and e["event"] == "close")
    assert close["code"] == 1009
    assert "too large" in close["reason"]
    await peers.wait_for_socket("a", opens=2, ready_state=OPEN)

    await peers.call("a", "setValue", "marker", 1)
    without_big = (INITIAL[0], {"open": True, "marker": 1})
    await peers.wait_for_content("b", without_big)
    assert_content(partykit_dev.get_store(room), without_big)
    assert len((await peers.content("a"))[0]["pets"]["fido"]["big"]) == 1024 * 1024


async def test_witness_storage_value_limit_drops_change_silently(
    partykit_dev: PartykitDev, node_peers: NodePeers, room: str
) -> None:
    """Witness: a cell whose stored value exceeds 128 KiB (131072 bytes) is refused by
    Durable Object storage; the server logs a RangeError, stores and broadcasts
    nothing, and the sender is not told (no close, no error)."""
    peers = node_peers
    await peers.connect("a", host=partykit_dev.host, room=room, initial_content=INITIAL)
    await peers.connect("b", host=partykit_dev.host, room=room)
    fits = "y" * (128 * 1024 - 200)
    await peers.call("a", "setCell", "pets", "fido", "ok", fits)
    with_ok = ({"pets": {"fido": {**INITIAL[0]["pets"]["fido"], "ok": fits}}}, INITIAL[1])
    await peers.wait_for_content("b", with_ok)

    await peers.call("a", "setCell", "pets", "fido", "big", "x" * (128 * 1024 + 100))
    await peers.call("a", "setValue", "marker", 1)
    expected = (with_ok[0], {"open": True, "marker": 1})
    await peers.wait_for_content("b", expected)
    assert_content(partykit_dev.get_store(room), expected)
    assert "big" in (await peers.content("a"))[0]["pets"]["fido"]
    assert (await peers.status("a"))["closes"] == 0
    # The error reaches the log through workerd's and node's pipes: wait for it.
    wait_for(
        lambda: "Values cannot be larger than 131072 bytes" in partykit_dev.log_text(),
        what="the storage RangeError in the partykit dev log",
    )


async def test_partykit_dev_restart_keeps_rooms_and_clients_reconnect(
    fresh_partykit_dev: PartykitDev, node_peers: NodePeers, room: str
) -> None:
    server = fresh_partykit_dev
    peers = node_peers
    await peers.connect(
        "a", host=server.host, room=room, initial_content=INITIAL, socket_options=FAST
    )
    port = server.port
    server.restart()
    assert server.port == port
    assert_content(server.get_store(room), INITIAL)  # persisted to the temp dir
    await peers.wait_for_socket("a", opens=2, ready_state=OPEN, timeout=20)
    await peers.call("a", "setValue", "after", "restart")
    expected = (INITIAL[0], {**INITIAL[1], "after": "restart"})
    wait_for(lambda: js_equal(server.get_store(room), expected), what="server store")


def test_partykit_dev_in_memory_forgets_on_restart(room: str) -> None:
    with PartykitDev(persist=False) as server:
        request = urllib.request.Request(
            server.store_url(room), data=b'[{"t":{"r":{"c":1}}},{}]', method="PUT"
        )
        with urllib.request.urlopen(request) as response:
            assert response.status == 201
        assert_content(server.get_store(room), ({"t": {"r": {"c": 1}}}, {}))
        server.restart()
        assert server.get_store(room) is None


async def test_peer_reports_failures_clearly(
    partykit_dev: PartykitDev, partykit_proxy: TcpProxy, node_peers: NodePeers, room: str
) -> None:
    peers = node_peers
    partykit_proxy.refuse(True)
    with pytest.raises(NodePeerError, match="did not open within"):
        await peers.connect("never", host=partykit_proxy.host, room=room, timeout=0.5)
    assert await peers.clients() == []  # the half-made client was removed
    assert partykit_proxy.refused >= 1
    with pytest.raises(NodePeerError, match="no client named"):
        await peers.content("nobody")
    await peers.connect("a", host=partykit_dev.host, room=room)
    with pytest.raises(NodePeerError, match="store has no method") as info:
        await peers.call("a", "noSuchMethod")
    assert "noSuchMethod" in str(info.value)
    with pytest.raises(NodePeerError, match="did not become the expected") as info:
        await peers.wait_for_content("a", ({"t": {"r": {"c": 1}}}, {}), timeout=0.2)
    assert info.value.detail == ({}, {})
    await peers.disconnect("a")
    assert await peers.clients() == []
    await peers.connect("a", host=partykit_dev.host, room=room)  # the name is free again
    await peers.socket("a", "close")
    await peers.wait_for_socket("a", ready_state=CLOSED)


async def test_peer_process_death_fails_pending_requests() -> None:
    async with NodePeers() as peers:
        assert peers.pid is not None
        waiting = asyncio.ensure_future(
            peers.wait_for_event(lambda e: e.get("event") == "never", timeout=30)
        )
        os.kill(peers.pid, signal.SIGKILL)
        with pytest.raises(NodePeerError, match="exited"):
            await peers.request("ping")
        waiting.cancel()
