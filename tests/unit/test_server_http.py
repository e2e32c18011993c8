"""HTTP behaviour of the room server, against real uvicorn on a loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse

from partywidget.server import (
    Limits,
    MemoryStorage,
    ServerThread,
    TinyBasePartyKitServer,
    TinyBaseServerConfig,
    create_app,
    run_in_thread,
)
from partywidget.server.room import Lobby

CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "*",
    "access-control-allow-headers": "*",
}


def assert_cors(response: httpx.Response) -> None:
    for name, value in CORS.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))


class CustomPath(TinyBasePartyKitServer):
    config = TinyBaseServerConfig(store_path="/db", storage_prefix="p_")


class NoSecrets(TinyBasePartyKitServer):
    # A plain (not async) hook on purpose: the server accepts both.
    def can_set_cell(  # type: ignore[override]
        self, table_id: str, row_id: str, cell_id: str, cell: Any, *rest: Any
    ) -> bool:
        return table_id != "secret"

    async def can_set_value(self, value_id: str, value: Any, *rest: Any) -> bool:
        return value_id != "secret"


class TokenAuth(TinyBasePartyKitServer):
    @staticmethod
    def on_before_request(request: HTTPConnection, lobby: Lobby) -> Any:
        token = request.query_params.get("token")
        if token is None:
            return PlainTextResponse("missing token", status_code=401)
        if token != f"ok-{lobby.id}":
            raise HTTPException(403, "bad token")
        return None


class InstanceAuth(TinyBasePartyKitServer):
    async def on_before_request(self, request: HTTPConnection, lobby: Lobby) -> bool:
        assert lobby.id == self.party.id and lobby.name == self.party.name
        return request.headers.get("authorization") == "Bearer yes"


class Broken(TinyBasePartyKitServer):
    async def can_set_table(self, *args: Any) -> bool:
        raise ValueError("hook bug")


@pytest.fixture(scope="module")
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture(scope="module")
def parties_server(storage: MemoryStorage) -> Iterator[ServerThread]:
    parties = {
        "main": TinyBasePartyKitServer,
        "custom": CustomPath,
        "nosecrets": NoSecrets,
        "token": TokenAuth,
        "instance": InstanceAuth,
        "broken": Broken,
    }
    app = create_app(parties=parties, storage=storage, limits=Limits(max_body_size=4096))
    with run_in_thread(app) as thread:
        yield thread


@pytest.fixture
def client(parties_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=parties_server.url, timeout=30) as c:
        yield c


def room_url(request: pytest.FixtureRequest, party: str = "main", suffix: str = "/store") -> str:
    """A fresh room per test, so the module-scoped server needs no reset."""
    return f"/parties/{party}/{request.node.name.replace('[', '-').rstrip(']')}{suffix}"


def test_thread_reports_its_real_port(parties_server: ServerThread) -> None:
    assert parties_server.port > 0
    assert parties_server.host == f"127.0.0.1:{parties_server.port}"
    assert parties_server.url == f"http://127.0.0.1:{parties_server.port}"


def test_get_without_store_is_200_empty_with_cors(
    client: httpx.Client, request: pytest.FixtureRequest
) -> None:
    response = client.get(room_url(request))
    assert response.status_code == 200
    assert response.content == b""
    assert_cors(response)


def test_put_then_205_then_get(client: httpx.Client, request: pytest.FixtureRequest) -> None:
    url = room_url(request)
    body = '[{"pets":{"fido":{"species":"dog","meta":"\ufffd{\\"a\\":1}"}}},{"open":true}]'
    first = client.put(url, content=body.encode())
    assert first.status_code == 201
    assert_cors(first)
    second = client.put(url, content=b"[{},{}]")
    assert second.status_code == 205
    assert_cors(second)
    got = client.get(url)
    assert got.status_code == 200
    assert (
        got.text == '[{"pets":{"fido":{"meta":"\ufffd{\\"a\\":1}","species":"dog"}}},{"open":true}]'
    )


def test_get_body_follows_sorted_storage_keys_and_js_key_order(
    client: httpx.Client, request: pytest.FixtureRequest
) -> None:
    url = room_url(request)
    body = (
        '[{"b":{"a":{"x":3},"10":{"x":2},"2":{"x":1}},"a":{"r":{"c":1}},"a b":{"r":{"c":2}}},'
        '{"z":1,"y":3,"1":2}]'
    )
    assert client.put(url, content=body).status_code == 201
    # Storage keys sort 't"a b",...' before 't"a",...' (space < quote); integer-like
    # keys then come first, as JSON.stringify lists them.
    assert client.get(url).text == (
        '[{"a b":{"r":{"c":2}},"a":{"r":{"c":1}},"b":{"2":{"x":1},"10":{"x":2},"a":{"x":3}}},'
        '{"1":2,"y":3,"z":1}]'
    )


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[{}]",
        b"[{},{},1]",
        b'{"t":{}}',
        b'[{"t":1},{}]',
        b'[{"t":{"r":1}},{}]',
        b'[{"t":{"r":{"c":1}}},{"v":{"deep":1}},{}]',
        b"[[],{}]",
        b'[{"t":{"r":{"c":1e999}}},{}]',
        b"[{},{}" + b"]" * 0,
        b"[" * 200 + b"]" * 200,
        b"\xff\xfe",
    ],
)
def test_put_invalid_is_400(
    client: httpx.Client, request: pytest.FixtureRequest, body: bytes
) -> None:
    url = room_url(request)
    response = client.put(url, content=body)
    assert response.status_code == 400
    assert_cors(response)
    assert client.get(url).content == b""


def test_put_accepts_what_the_reference_accepts(
    client: httpx.Client, request: pytest.FixtureRequest
) -> None:
    # Raw object/array cells and a leading BOM (TextDecoder strips it) are accepted.
    url = room_url(request)
    body = '\ufeff[{"t":{"r":{"o":{"b":1,"a":[1,2]},"n":null,"f":1.5}}},{}]'
    assert client.put(url, content=body.encode()).status_code == 201
    assert client.get(url).text == '[{"t":{"r":{"f":1.5,"n":null,"o":{"b":1,"a":[1,2]}}}},{}]'


def test_put_with_too_long_id_is_400(client: httpx.Client, request: pytest.FixtureRequest) -> None:
    url = room_url(request)
    assert (
        client.put(url, content=f'[{{"{"x" * 1025}":{{"r":{{"c":1}}}}}},{{}}]').status_code == 400
    )
    assert client.put(url, content=f'[{{}},{{"{"x" * 1025}":1}}]').status_code == 400
    assert client.put(url, content=f'[{{}},{{"{"x" * 1024}":1}}]').status_code == 201


def test_other_paths_are_404_with_cors(
    client: httpx.Client, request: pytest.FixtureRequest
) -> None:
    for path in [
        room_url(request, suffix="/other"),
        room_url(request, suffix=""),
        "/",
        "/nothing/here",
        "/parties/unknown/room/store",
        "/parties/main",
    ]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert_cors(response)
    assert client.put(room_url(request, suffix="/x"), content=b"[{},{}]").status_code == 404


def test_any_method_but_put_reads_the_store(
    client: httpx.Client, request: pytest.FixtureRequest
) -> None:
    url = room_url(request)
    client.put(url, content=b'[{},{"v":1}]')
    for method in ["GET", "POST", "DELETE", "PATCH"]:
        response = client.request(method, url, content=b"ignored")
        assert (response.status_code, response.text) == (200, '[{},{"v":1}]')


def test_options_preflight(client: httpx.Client, request: pytest.FixtureRequest) -> None:
    response = client.options(
        room_url(request),
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "PUT"},
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert response.headers["access-control-allow-methods"] == "*"


def test_party_alias(client: httpx.Client, request: pytest.FixtureRequest) -> None:
    name = request.node.name
    assert client.put(f"/party/{name}/store", content=b'[{},{"a":1}]').status_code == 201
    assert client.get(f"/parties/main/{name}/store").text == '[{},{"a":1}]'


def test_rooms_and_parties_are_isolated(
    client: httpx.Client, request: pytest.FixtureRequest
) -> None:
    name = request.node.name
    assert client.put(f"/parties/main/{name}-a/store", content=b'[{},{"a":1}]').status_code == 201
    assert client.get(f"/parties/main/{name}-b/store").content == b""
    assert client.get(f"/parties/nosecrets/{name}-a/store").content == b""
    # Percent-encoded names are one room, decoded; %2F does not split the path.
    assert client.put(f"/parties/main/{name}%2Fx%20y/store", content=b"[{},{}]").status_code == 201
    assert client.get(f"/parties/main/{name}%2Fx%20y/store").text == "[{},{}]"
    assert client.get(f"/parties/main/{name}/store").content == b""


def test_invalid_room_name_is_400(client: httpx.Client) -> None:
    response = client.get("/parties/main/bad%00name/store")
    assert response.status_code == 400
    assert_cors(response)
    assert client.get("/parties/main/" + "r" * 300 + "/store").status_code == 400


def test_custom_store_path_and_storage_prefix(
    client: httpx.Client, storage: MemoryStorage, request: pytest.FixtureRequest
) -> None:
    name = request.node.name
    assert client.put(f"/parties/custom/{name}/store", content=b"[{},{}]").status_code == 404
    body = b'[{"t":{"r":{"c":1}}},{"v":2}]'
    assert client.put(f"/parties/custom/{name}/db", content=body).status_code == 201
    assert client.get(f"/parties/custom/{name}/db").text == body.decode()
    stored = asyncio.run(storage.list(("custom", name)))
    assert stored == {"p_hasStore": 1, 'p_t"t","r","c"': 1, "p_vv": 2}


def test_reference_key_layout(
    client: httpx.Client, storage: MemoryStorage, request: pytest.FixtureRequest
) -> None:
    name = request.node.name
    body = '[{"t\\"1":{"r":{"c":"x"}}},{"é":[1]}]'
    assert client.put(f"/parties/main/{name}/store", content=body.encode()).status_code == 201
    assert asyncio.run(storage.list(("main", name))) == {
        "hasStore": 1,
        't"t\\"1","r","c"': "x",
        "vé": [1],
    }


def test_hooks_filter_initial_save(client: httpx.Client, request: pytest.FixtureRequest) -> None:
    url = room_url(request, party="nosecrets")
    body = b'[{"secret":{"r":{"c":1}},"open":{"r":{"c":2}}},{"secret":1,"v":2}]'
    assert client.put(url, content=body).status_code == 201
    assert client.get(url).text == '[{"open":{"r":{"c":2}}},{"v":2}]'


def test_all_rejected_put_is_201_without_store_like_reference(
    client: httpx.Client, request: pytest.FixtureRequest
) -> None:
    url = room_url(request, party="nosecrets")
    assert client.put(url, content=b'[{"secret":{"r":{"c":1}}},{}]').status_code == 201
    assert client.get(url).content == b""  # hasStore was not set: nothing accepted
    assert client.put(url, content=b'[{},{"v":1}]').status_code == 201


def test_concurrent_first_puts_yield_one_201(
    parties_server: ServerThread, request: pytest.FixtureRequest
) -> None:
    url = parties_server.url + room_url(request)

    async def race() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as c:
            responses = await asyncio.gather(
                *(c.put(url, content=f'[{{}},{{"who":{i}}}]'.encode()) for i in range(24))
            )
        return [r.status_code for r in responses]

    statuses = asyncio.run(race())
    assert sorted(statuses) == [201] + [205] * 23
    winner = statuses.index(201)
    assert httpx.get(url).text == f'[{{}},{{"who":{winner}}}]'


def test_body_over_limit_is_413(client: httpx.Client, request: pytest.FixtureRequest) -> None:
    response = client.put(room_url(request), content=b"[{},{}]" + b" " * 5000)
    assert response.status_code == 413
    assert_cors(response)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(10):
            yield b" " * 1000

    response = client.put(room_url(request), content=chunks())
    assert response.status_code == 413


def test_static_before_request_refuses(
    client: httpx.Client, request: pytest.FixtureRequest
) -> None:
    name = request.node.name
    url = f"/parties/token/{name}/store"
    missing = client.get(url)
    assert (missing.status_code, missing.text) == (401, "missing token")
    assert_cors(missing)
    assert client.get(url, params={"token": "nope"}).status_code == 403
    assert client.get(url, params={"token": f"ok-{name}"}).status_code == 200


def test_instance_before_request_refuses(
    client: httpx.Client, request: pytest.FixtureRequest
) -> None:
    url = room_url(request, party="instance")
    refused = client.get(url)
    assert refused.status_code == 403
    assert_cors(refused)
    assert client.get(url, headers={"Authorization": "Bearer yes"}).status_code == 200


def test_hook_error_is_500_and_server_survives(
    client: httpx.Client, request: pytest.FixtureRequest
) -> None:
    url = room_url(request, party="broken")
    response = client.put(url, content=b'[{"t":{"r":{"c":1}}},{}]')
    assert response.status_code == 500
    assert_cors(response)
    assert client.put(url, content=b"[{},{}]").status_code == 201  # lock was released


def test_stop_and_restart_on_same_storage(storage: MemoryStorage) -> None:
    first = run_in_thread(storage=storage)
    try:
        assert (
            httpx.put(f"{first.url}/parties/main/restart/store", content=b"[{},{}]").status_code
            == 201
        )
    finally:
        first.stop()
    assert not first.running
    with run_in_thread(storage=storage) as second:
        assert httpx.get(f"{second.url}/parties/main/restart/store").text == "[{},{}]"


async def test_idle_rooms_are_evicted_and_reloaded_from_storage() -> None:
    from websockets.asyncio.client import connect

    storage = MemoryStorage()
    app = create_app(storage=storage, room_idle_timeout=0.05)
    rooms = app.state.registry.rooms
    with run_in_thread(app) as parties_server:
        async with httpx.AsyncClient(base_url=parties_server.url, timeout=30) as c:
            assert (await c.put("/parties/main/busy/store", content=b"[{},{}]")).status_code == 201
            async with connect(f"{parties_server.ws_url}/parties/main/busy?_pk=a", open_timeout=30):
                assert (
                    await c.put("/parties/main/idle/store", content=b"[{},{}]")
                ).status_code == 201
                for _ in range(3000):  # wait (up to ~30 s) for the idle room to go
                    if ("main", "idle") not in rooms:
                        break
                    await asyncio.sleep(0.01)
                assert ("main", "idle") not in rooms
                # "busy" was released (after its PUT) before "idle": its timer already
                # fired, but the open socket kept it.
                assert ("main", "busy") in rooms
            # Reloaded from storage on demand.
            assert (await c.get("/parties/main/idle/store")).text == "[{},{}]"
