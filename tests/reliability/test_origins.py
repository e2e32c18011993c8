"""Web pages from foreign origins, and DNS rebinding, cannot reach a loopback server.

Real uvicorn on loopback, real HTTP and WebSocket clients sending the headers a browser
would (``Origin``, a rebinding ``Host``). Clients without ``Origin`` (Python, Node) pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from partywidget.server.app import create_app
from partywidget.server.thread import ServerThread, run_in_thread
from support.reliability import TIMEOUT
from support.waiting import eventually

pytestmark = pytest.mark.timeout(120)

EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def open_server() -> Iterator[ServerThread]:
    app = create_app(allow_origins=["https://app.example.org", "http://lab.test:*"])
    with run_in_thread(app) as thread:
        yield thread


def _store(server: ServerThread, room: str) -> str:
    return f"{server.url}/parties/main/{room}/store"


def test_a_foreign_page_can_neither_write_nor_read(server: ServerThread) -> None:
    url = _store(server, "foreign")
    with httpx.Client(timeout=TIMEOUT) as client:
        # A text/plain PUT needs no preflight: the server itself must refuse it.
        put = client.put(
            url, content=b'[{},{"v":1}]', headers={"Origin": EVIL, "Content-Type": "text/plain"}
        )
        assert put.status_code == 403
        assert "access-control-allow-origin" not in put.headers
        assert client.get(url).content == b""  # nothing stored
        assert client.put(url, content=b'[{},{"v":2}]').status_code == 201  # no Origin
        assert client.get(url, headers={"Origin": EVIL}).status_code == 403
        assert client.get(url, headers={"Origin": "null"}).status_code == 403
        preflight = client.options(
            url, headers={"Origin": EVIL, "Access-Control-Request-Method": "PUT"}
        )
        assert preflight.status_code == 403


def test_a_loopback_page_gets_its_origin_echoed(server: ServerThread) -> None:
    url = _store(server, "loopback-page")
    with httpx.Client(timeout=TIMEOUT) as client:
        for origin in ["http://localhost:5173", "http://127.0.0.1:8888", "http://[::1]:3000"]:
            response = client.get(url, headers={"Origin": origin})
            assert response.status_code == 200, origin
            assert response.headers["access-control-allow-origin"] == origin
            assert "Origin" in response.headers["vary"]
        preflight = client.options(
            url,
            headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "PUT"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_dns_rebinding_is_refused_by_the_host_check(server: ServerThread) -> None:
    """A hostile name resolved to 127.0.0.1 makes the page same-origin (no Origin header
    on a GET): the Host header still names the hostile name."""
    url = _store(server, "rebinding")
    with httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(url, headers={"Host": f"evil.example:{server.port}"})
        assert response.status_code == 403
        assert client.get(url, headers={"Host": f"localhost:{server.port}"}).status_code == 200


async def test_websockets_from_foreign_origins_or_hosts_are_refused(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="partywidget.server")
    ws = f"{server.ws_url}/parties/main/ws-origin"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws, origin=EVIL, open_timeout=TIMEOUT):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    rebinding = f"ws://evil.example:{server.port}/parties/main/ws-origin"
    with pytest.raises(InvalidStatus) as rebound:  # evil.example resolved to 127.0.0.1
        async with connect(rebinding, host="127.0.0.1", open_timeout=TIMEOUT):
            pass
    assert rebound.value.response.status_code == 403
    assert any("evil.example" in r.getMessage() for r in caplog.records)
    async with connect(ws, origin="http://localhost:8888", open_timeout=TIMEOUT) as page:  # type: ignore[arg-type]
        await page.send('s[{},{"v":1},1]')
    async with connect(ws, open_timeout=TIMEOUT) as script:  # no Origin: not a browser
        await script.send('s[{},{"v":1},1]')


async def test_allowed_origins_extend_the_default(open_server: ServerThread) -> None:
    url = _store(open_server, "allowed")
    with httpx.Client(timeout=TIMEOUT) as client:
        ok = client.get(url, headers={"Origin": "https://app.example.org"})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://app.example.org"
        assert client.get(url, headers={"Origin": "http://lab.test:8080"}).status_code == 200
        assert client.get(url, headers={"Origin": "http://app.example.org"}).status_code == 403
        assert client.get(url, headers={"Origin": "http://localhost:1"}).status_code == 200
        # The allowed origin's host may name the server (a local reverse proxy).
        assert client.get(url, headers={"Host": "app.example.org"}).status_code == 200
    ws = f"{open_server.ws_url}/parties/main/allowed"
    async with connect(ws, origin="https://app.example.org", open_timeout=TIMEOUT):  # type: ignore[arg-type]
        pass


def test_wildcard_allows_every_origin_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="partywidget.server")
    with run_in_thread(create_app(allow_origins=["*"])) as thread, httpx.Client() as client:
        response = client.get(_store(thread, "any"), headers={"Origin": EVIL})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "*"
    assert any("every web origin" in r.getMessage() for r in caplog.records)


def test_a_bad_allowed_origin_is_refused_at_creation() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        create_app(allow_origins=["app.example.org/path"])


async def test_client_supplied_ids_cannot_forge_log_lines(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="partywidget.server")
    pk = "a%0AERROR%20forged%1B%5B31m"
    ws = f"{server.ws_url}/parties/main/log-forgery?_pk={pk}"
    async with connect(ws, open_timeout=TIMEOUT) as client:
        await client.send("no prefix")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "log-forgery" in r.getMessage()]

    await eventually(
        lambda: any("close main/log-forgery" in line for line in lines()), TIMEOUT, "the close log"
    )
    logged = lines()
    assert any("\\nERROR forged\\x1b[31m" in line for line in logged), logged
    assert not [line for line in logged if "\n" in line or "\x1b" in line]
