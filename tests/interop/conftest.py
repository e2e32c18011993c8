"""Fixtures for interop tests: the reference server, Node TinyBase peers, a TCP proxy.

- ``partykit_dev`` (session): one ``partykit dev`` serving ``deploy/partykit/`` (TinyBase's
  own ``TinyBasePartyKitServer``), shared by all tests because it takes ~1 s to start.
  Tests isolate themselves by room: use the ``room`` fixture.
- ``fresh_partykit_dev`` (function): a private instance, for tests that stop/restart it.
- ``each_server``: parametrized, runs a test against our ``server`` (root conftest) and
  against ``partykit_dev``.
- ``evil``: a room server that misbehaves on demand, with its thread.
- ``room``: a unique room name per test (readable prefix from the test name).
- ``node_peers`` (async, function): a started :class:`support.node.NodePeers`.
- ``make_proxy`` (function): ``make_proxy(port, host="127.0.0.1") -> TcpProxy``
  (started; stopped at teardown); ``partykit_proxy``: one in front of ``partykit_dev``.

Tests that need Node mark themselves ``@pytest.mark.node``; everything here skips when
Node or the root ``node_modules`` are missing (a failure under
``PARTYWIDGET_REQUIRE_ALL=1``, as in CI).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from partywidget.server import ServerThread, run_in_thread
from support.clients import RoomServer
from support.evil_room import EvilRoom
from support.partykit import PartykitDev, partykit_available
from support.proxy import TcpProxy


def _skip_unless_partykit() -> None:
    reason = partykit_available()
    if reason is not None:
        pytest.skip(f"partykit dev unavailable: {reason}")


@pytest.fixture(scope="session")
def partykit_dev() -> Iterator[PartykitDev]:
    """A ``partykit dev`` shared by the session (do not stop or restart it)."""
    _skip_unless_partykit()
    with PartykitDev() as server:
        yield server


@pytest.fixture
def fresh_partykit_dev() -> Iterator[PartykitDev]:
    """A private ``partykit dev`` that the test may stop, kill or restart."""
    _skip_unless_partykit()
    with PartykitDev() as server:
        yield server


@pytest.fixture
def make_proxy() -> Iterator[Callable[..., TcpProxy]]:
    """Factory for started :class:`TcpProxy` instances, all stopped at teardown."""
    proxies: list[TcpProxy] = []

    def make(port: int, host: str = "127.0.0.1") -> TcpProxy:
        proxy = TcpProxy(host, port).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def partykit_proxy(partykit_dev: PartykitDev, make_proxy: Callable[..., TcpProxy]) -> TcpProxy:
    """A proxy in front of the shared ``partykit_dev``: connect via ``.host``."""
    return make_proxy(partykit_dev.port)


@pytest.fixture(params=["server", "partykit_dev"], ids=["python", "partykit"])
def each_server(request: pytest.FixtureRequest) -> RoomServer:
    """Each test runs against our server and against the reference server."""
    server: RoomServer = request.getfixturevalue(request.param)
    return server


@pytest.fixture
def evil() -> Iterator[tuple[EvilRoom, ServerThread]]:
    room = EvilRoom()
    server = run_in_thread(room.app)
    try:
        yield room, server
    finally:
        room.release.set()
        server.stop()
