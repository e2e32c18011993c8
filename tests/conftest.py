"""Root fixtures shared by every test layer, and the no-silent-skips switch.

With ``PARTYWIDGET_REQUIRE_ALL=1`` (``.ci/run`` sets it) every skipped test, or skipped
module at collection, is reported as a failure with the skip's reason: a CI run passes
only if every test ran. Tests skip only for a missing tool (see ``support/tools.py``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Generator, Iterator

import pytest
from hypothesis import HealthCheck, settings

from partywidget.server import ServerThread, run_in_thread
from support.node import NodePeers, node_available
from support.ports import free_port
from support.tools import REQUIRE_ALL_ENV, require_all

# No verdict may depend on the machine's speed: Hypothesis' per-example deadline and its
# too-slow health check are timing verdicts, so they are off for every property test.
settings.register_profile(
    "partywidget", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("partywidget")


def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Turn a skip report into a failure that still says why it skipped."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = f"skipped, and {REQUIRE_ALL_ENV}=1 forbids skips: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if require_all():
        _fail_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if require_all():
        _fail_skip(report)
    return report


def pytest_report_header() -> str | None:
    return f"{REQUIRE_ALL_ENV}=1: a skipped test fails" if require_all() else None


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    """The default room server (in memory, default limits) on a free loopback port,
    shared by a module's tests: each test uses its own ``room``. Modules that need
    other parties, limits or storage define their own fixture under another name."""
    with run_in_thread() as thread:
        yield thread


@pytest.fixture
def room(request: pytest.FixtureRequest) -> str:
    """A room name no other test (or earlier run against persisted state) uses."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:40]
    return f"{stem}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def node_peers() -> AsyncIterator[NodePeers]:
    """A Node process hosting TinyBase clients; closed (all clients gone) afterwards."""
    reason = node_available()
    if reason is not None:
        pytest.skip(f"Node peers unavailable: {reason}")
    async with NodePeers() as peers:
        yield peers
