"""Root fixtures shared by every test layer."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import pytest

from support.node import NodePeers, node_available
from support.ports import free_port


@pytest.fixture
def port() -> int:
    return free_port()


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
