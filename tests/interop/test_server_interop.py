"""Our room server with real TinyBase clients, and against TinyBase's own server.

Node hosts real TinyBase 10.0.1 clients (``createPartyKitPersister`` + partysocket
1.3.0). The same deterministic scenario runs on our server and on ``partykit dev``
running TinyBase's ``TinyBasePartyKitServer`` (``deploy/partykit/``): the clients must
converge on both, and the two ``GET .../store`` bodies must be byte-identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from partywidget.model import Content
from partywidget.server import ServerThread, TinyBasePartyKitServer, create_app, run_in_thread
from support.node import NodePeers
from support.partykit import PartykitDev

pytestmark = pytest.mark.node

CLIENTS = ("a", "b", "c")

INITIAL = (
    {
        "pets": {"fido": {"species": "dog", "age": 4}, "10": {"n": 1}, "2": {"n": 2}},
        "a b": {"r": {"c": "space sorts before quote"}},
        "a": {"r": {"c": 1.5}},
        "é": {"😀": {"ünï": True}},
    },
    {"open": True, "z": None, "1": "one"},
)

# (client, ops inside one transaction)
STEPS: Sequence[tuple[str, list[list[Any]]]] = [
    ("a", [["setCell", "pets", "fido", "age", 5]]),
    ("b", [["setCell", "pets", "felix", "species", "cat"], ["setValue", "count", 2]]),
    ("c", [["setCell", "pets", "fido", "meta", {"tags": ["good", "boy"], "n": 1}]]),
    ("a", [["delRow", "pets", "2"], ["setCell", "pets", "3", "n", 3]]),
    ("b", [["setCell", "\uff01", "r", "c", "fullwidth"], ["setCell", "x", "y", "arr", [1, 2, 3]]]),
    ("c", [["delTable", "a"], ["delValue", "z"], ["setValue", "0", 0]]),
    ("a", [["setCell", "pets", "felix", "age", 1e21], ["setCell", "pets", "felix", "w", -0.0]]),
    ("b", [["delCell", "pets", "fido", "species"], ["setValue", "open", False]]),
    # Storage order is by UTF-8 bytes: U+FF01 sorts before an astral character
    # (UTF-16 code unit order would put the emoji first).
    (
        "c",
        [
            ["setCell", "é", "\uff01", "x", 1],
            ["setValue", "\U0001f600", 1],
            ["setValue", "\uff01", 2],
        ],
    ),
]


async def run_scenario(peers: NodePeers, host: str, room: str) -> None:
    await peers.connect("a", host=host, room=room, initial_content=INITIAL)
    for name in CLIENTS[1:]:
        await peers.connect(name, host=host, room=room)
    for name in CLIENTS:
        await peers.wait_for_content(name, INITIAL)
    for client, ops in STEPS:
        await peers.transaction(client, ops)
        expected = await peers.content(client)
        for name in CLIENTS:
            await peers.wait_for_content(name, expected, timeout=20)


async def test_clients_converge_and_get_body_matches_partykit(
    node_peers: NodePeers, partykit_dev: PartykitDev, server: ServerThread, room: str
) -> None:
    await run_scenario(node_peers, server.host, room)
    ours = httpx.get(f"{server.url}/parties/main/{room}/store", timeout=30)
    final = await node_peers.content("a")

    async with NodePeers() as reference_peers:
        await run_scenario(reference_peers, partykit_dev.host, room)
        assert await reference_peers.content("a") == final
    theirs = httpx.get(partykit_dev.store_url(room), timeout=30)
    assert ours.status_code == theirs.status_code == 200
    assert ours.content == theirs.content
    assert ours.content.startswith(b'[{"')


async def test_initial_put_body_matches_partykit(
    node_peers: NodePeers, partykit_dev: PartykitDev, server: ServerThread, room: str
) -> None:
    await node_peers.connect("a", host=server.host, room=room, initial_content=INITIAL)
    await node_peers.connect("p", host=partykit_dev.host, room=room, initial_content=INITIAL)
    ours = httpx.get(f"{server.url}/parties/main/{room}/store", timeout=30).content
    theirs = httpx.get(partykit_dev.store_url(room), timeout=30).content
    assert ours == theirs


class Locked(TinyBasePartyKitServer):
    """Rejects every change to table ``locked`` after the initial save."""

    async def can_set_cell(
        self, table_id: str, row_id: str, cell_id: str, cell: Any, initial: bool, *rest: Any
    ) -> bool:
        return initial or table_id != "locked"

    async def can_del_table(self, table_id: str, connection: Any) -> bool:
        return table_id != "locked"


async def test_rejected_change_reconverges_a_tinybase_client(
    node_peers: NodePeers, room: str
) -> None:
    initial: Content = ({"locked": {"r": {"c": 1}}, "open": {"r": {"c": 1}}}, {})
    with run_in_thread(create_app(parties={"main": Locked})) as server:
        await node_peers.connect("a", host=server.host, room=room, initial_content=initial)
        await node_peers.connect("b", host=server.host, room=room)
        await node_peers.transaction(
            "a",
            [
                ["setCell", "locked", "r", "c", 2],
                ["setCell", "locked", "r", "new", 1],
                ["setCell", "open", "r", "c", 2],
            ],
        )
        expected: Content = ({"locked": {"r": {"c": 1}}, "open": {"r": {"c": 2}}}, {})
        await node_peers.wait_for_content("b", expected)
        await node_peers.wait_for_content("a", expected)  # the `s` reply undid the rest
        await node_peers.call("a", "delTable", "locked")
        await node_peers.wait_for_content("a", expected)
        assert await node_peers.content("b") == expected
        body = httpx.get(f"{server.url}/parties/main/{room}/store", timeout=30).text
        assert body == '[{"locked":{"r":{"c":1}},"open":{"r":{"c":2}}},{}]'
