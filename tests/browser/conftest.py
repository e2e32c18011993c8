"""JupyterLab + Debian Chromium (via Playwright) fixtures for the widget's browser tests.

Follows docs/browser-testing.md: the system Chromium (Playwright cannot download
browsers here), JupyterLab from this venv with its state in a temp dir, kernels deleted
between tests. Everything skips when Chromium, Playwright or JupyterLab is missing (a
failure under ``PARTYWIDGET_REQUIRE_ALL=1``; see ``tests/support/tools.py``).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.jupyter import delete_sessions
from support.ports import free_port
from support.tools import browser_unavailable, chromium_path

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
STATIC = ROOT / "src" / "partywidget" / "static" / "widget.js"


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    here = pathlib.Path(__file__).parent
    for item in items:
        if pathlib.Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.timeout(300))


def _skip_reason() -> str | None:
    reason = browser_unavailable()
    if reason is not None:
        return reason
    if shutil.which("jupyter", path=str(pathlib.Path(sys.executable).parent)) is None:
        return "jupyter not installed in this environment"
    return None


@pytest.fixture(scope="session", autouse=True)
def _browser_prerequisites() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def built_frontend() -> pathlib.Path:
    """Build the front-end if the bundle is missing or older than its sources."""
    sources = list((ROOT / "js").glob("*"))
    if not STATIC.exists() or any(p.stat().st_mtime > STATIC.stat().st_mtime for p in sources):
        subprocess.run(["npm", "run", "build"], cwd=ROOT, check=True, capture_output=True)
    return STATIC


@pytest.fixture(scope="session")
def artifacts() -> pathlib.Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def jupyter(
    tmp_path_factory: pytest.TempPathFactory, built_frontend: pathlib.Path
) -> Iterator[dict[str, Any]]:
    """A JupyterLab server (no token) on a free port, its state isolated in a temp dir."""
    base = tmp_path_factory.mktemp("jlab")
    notebooks = base / "notebooks"
    notebooks.mkdir()
    env = dict(os.environ)
    for name in ("config", "runtime", "settings", "workspaces"):
        (base / name).mkdir()
    env.update(
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
    )
    # user settings in the isolated dir: no news pop-up, no autosave writes
    settings = base / "settings"
    for plugin, values in {
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"},
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    }.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port = free_port()
    log = open(base / "jupyter.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(pathlib.Path(sys.executable).parent / "jupyter"),
            "lab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.token=",
            "--ServerApp.password=",
            "--ServerApp.ip=127.0.0.1",
            f"--port={port}",
            f"--ServerApp.root_dir={notebooks}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/api/status", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(
                f"jupyter lab did not start: {(base / 'jupyter.log').read_text()[-2000:]}"
            )
        time.sleep(0.2)
    try:
        yield {"url": url, "dir": notebooks, "log": base / "jupyter.log"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped on purpose: Playwright's sync API keeps an asyncio loop marked as
    running in this thread while it is open, which breaks later asyncio tests of the same
    pytest session (pytest-asyncio cannot start its loop)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium_path(),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--no-first-run",
            ],
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, jupyter: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()
        delete_sessions(jupyter["url"])
