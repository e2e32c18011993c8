"""Where the suite finds optional tools, and whether a missing one may be skipped.

Tests that need a tool the machine may lack (Node, the npm packages, Chromium,
Playwright, JupyterLab, ``partykit dev``, atheris) skip when it is missing, so that a
partial set-up can still run the rest. CI must not pass that way. With
``PARTYWIDGET_REQUIRE_ALL=1`` (set by ``.ci/run``), ``tests/conftest.py`` turns every
skip into a failure, whatever raised it, and the slow tests run too.

Chromium is found by one rule, shared with the Makefile's ``system-deps``:
``$PARTYWIDGET_CHROMIUM`` if set, else ``/usr/bin/chromium`` (Debian's package).
"""

from __future__ import annotations

import importlib.util
import os

REQUIRE_ALL_ENV = "PARTYWIDGET_REQUIRE_ALL"
SLOW_ENV = "PARTYWIDGET_SLOW"
CHROMIUM_ENV = "PARTYWIDGET_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"


def _flag(name: str) -> bool:
    """Set and not ``0`` (the Makefile reads ``PARTYWIDGET_REQUIRE_ALL`` the same way)."""
    return os.environ.get(name, "") not in ("", "0")


def require_all() -> bool:
    """True when a skip must fail the run (CI): every test has to run."""
    return _flag(REQUIRE_ALL_ENV)


def run_slow() -> bool:
    """True when tests of a minute or more run: asked for, or everything is required."""
    return _flag(SLOW_ENV) or require_all()


def chromium_path() -> str:
    return os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM


def browser_unavailable() -> str | None:
    """Why a Playwright-driven Chromium cannot run here, or ``None`` when it can."""
    chromium = chromium_path()
    if not os.access(chromium, os.X_OK):
        return f"no Chromium at {chromium} (set {CHROMIUM_ENV}, or apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed"
    return None
