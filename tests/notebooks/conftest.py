"""Fixtures for the notebook tests (the runner itself is in ``support/notebooks.py``)."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest

from support.notebooks import SRC


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    here = pathlib.Path(__file__).parent
    for item in items:
        if pathlib.Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.notebook)
            item.add_marker(pytest.mark.timeout(180))


@pytest.fixture
def kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel (a child process) imports partywidget from src/ and finds no
    PARTYWIDGET_HOST unless a test sets it."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(SRC), path) if p))
    monkeypatch.delenv("PARTYWIDGET_HOST", raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
