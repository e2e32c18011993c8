"""04_tinybase_web_app.ipynb: npm TinyBase clients and the notebook share one room.

JavaScript clients join the notebook's room on a server the test starts
(``PARTYWIDGET_HOST``): in one test a Node TinyBase peer (``tests/support/node.py``), in
the other the notebook's own web page, built by the notebook with esbuild and opened in
Chromium. Edits cross both ways and are read back from the kernel, the Node peer and
the page's TinyBase Store. The Node half runs wherever Node does; only the page needs
Chromium and Playwright.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import pathlib
import subprocess
import threading
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from partywidget.server import ServerThread
from support.node import NodePeers, node_available
from support.notebooks import NOTEBOOKS, ROOT, NotebookRun
from support.tools import browser_unavailable, chromium_path

T = TypeVar("T")
BUNDLE = NOTEBOOKS / "web" / "dist" / "app.js"

FROM_NOTEBOOK = {
    "t1": {"text": "Buy milk", "done": True},
    "t2": {"text": "Write the report", "done": True},
    "t3": {"text": "Sent from Python", "done": False},
}


class LoopThread:
    """An asyncio loop on a thread, so this synchronous test can drive async Node peers
    while nbclient runs its own loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def node_peers() -> Iterator[tuple[LoopThread, NodePeers]]:
    reason = node_available()
    if reason:
        pytest.skip(reason)
    loop = LoopThread()
    peers = loop.run(_start_peers())
    try:
        yield loop, peers
    finally:
        loop.run(peers.close())
        loop.stop()


async def _start_peers() -> NodePeers:
    return await NodePeers().start()


def drive_page(url: str, run_in_kernel: Any, screenshot: pathlib.Path) -> dict[str, Any]:
    """In Chromium: see the room's todos, add one, and see a Python edit arrive."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.goto(url)
            expect(page.locator("#status")).to_have_text("connected", timeout=30_000)
            expect(page.locator("li[data-row]")).to_have_count(3, timeout=30_000)
            expect(page.locator('li[data-row="t2"] .text')).to_have_text("Write the report")
            expect(page.locator('li[data-row="t1"] input')).to_be_checked()
            page.fill("#text", "Typed in the browser")
            page.click("button[type=submit]")
            expect(page.locator("li[data-row]")).to_have_count(4, timeout=30_000)
            # A Python edit (made now, in the kernel) must reach the page.
            run_in_kernel()
            expect(page.locator('li[data-row="t3"] input')).to_be_checked(timeout=30_000)
            page.screenshot(path=str(screenshot))
            content: dict[str, Any] = page.evaluate("() => window.partyStore.getTables()")
            return content
        finally:
            browser.close()


@contextlib.contextmanager
def notebook_in_room(room: str) -> Iterator[tuple[NotebookRun, str]]:
    """The notebook run up to its cleanup cells, in ``room``: it built the page, wrote
    ``FROM_NOTEBOOK`` and serves the page at the URL returned. The rest runs after."""
    BUNDLE.unlink(missing_ok=True)  # the notebook must build the page itself
    with NotebookRun("04_tinybase_web_app.ipynb", f"ROOM = {room!r}") as run:
        run.run_until_cleanup()
        assert BUNDLE.exists()
        state = run.json('_pw_dump({"url": url, "todos": w.get_table("todos")})')
        assert state["todos"] == FROM_NOTEBOOK
        assert state["url"].startswith("http://127.0.0.1:")
        yield run, state["url"]
        run.run_rest()  # stops the page server


def test_web_app_notebook_shares_the_room_with_a_node_client(
    kernel_env: None,
    server: ServerThread,
    node_peers: tuple[LoopThread, NodePeers],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop, peers = node_peers
    monkeypatch.setenv("PARTYWIDGET_HOST", server.host)
    room = f"todos-{uuid.uuid4().hex[:8]}"
    loop.run(peers.connect("node", host=server.host, room=room))
    with notebook_in_room(room) as (run, _url):
        # The Node TinyBase client holds exactly what the notebook wrote...
        loop.run(peers.wait_for_content("node", ({"todos": FROM_NOTEBOOK}, {}), timeout=30))
        # ...and its edits reach the kernel's DataFrame.
        loop.run(peers.call("node", "setCell", "todos", "t2", "done", False))
        loop.run(
            peers.call(
                "node", "setRow", "todos", "node-1", {"text": "Sent from Node", "done": False}
            )
        )
        frame = run.json(
            """
await _pw_until(lambda: w.store.has_row("todos", "node-1")
                and w.get_cell("todos", "t2", "done") is False)
_pw_dump(_pw_json.loads(w.df("todos").to_json(orient="index")))
"""
        )
        assert frame["node-1"] == {"text": "Sent from Node", "done": False}
        assert frame["t2"] == {"text": "Write the report", "done": False}


def test_web_app_page_shares_the_room_in_a_browser(
    kernel_env: None, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = browser_unavailable() or node_available()
    if reason is not None:
        pytest.skip(reason)
    monkeypatch.setenv("PARTYWIDGET_HOST", server.host)
    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    with notebook_in_room(f"todos-{uuid.uuid4().hex[:8]}") as (run, url):
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # Playwright's sync API in its own thread, away from nbclient's loop.
            page_tables = pool.submit(
                drive_page,
                url,
                lambda: run.execute('w.set_cell("todos", "t3", "done", True)'),
                artifacts / "notebook-04-web-app.png",
            ).result(120)
        typed = [
            r for r, row in page_tables["todos"].items() if row["text"] == "Typed in the browser"
        ]
        assert len(typed) == 1 and typed[0].startswith("web-")
        seen = run.json(
            f"""
await _pw_until(lambda: w.store.has_row("todos", {typed[0]!r}))
_pw_dump(w.get_table("todos"))
"""
        )
        assert seen[typed[0]] == {"text": "Typed in the browser", "done": False}
        assert seen["t3"]["done"] is True
        assert seen == page_tables["todos"]


def test_web_app_source_type_checks() -> None:
    """``app.ts`` against the installed TinyBase/partysocket typings (strict tsc)."""
    tsc = ROOT / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        pytest.skip("node_modules/.bin/tsc missing")
    done = subprocess.run(
        [str(tsc), "-p", str(NOTEBOOKS / "web")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
