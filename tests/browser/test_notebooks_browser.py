"""01_quickstart and 03_classroom run in a real JupyterLab + Chromium ("Run All Cells").

Uses the browser fixtures of ``tests/browser/conftest.py`` (``page``, ``jupyter``,
``artifacts``). The committed notebooks are copied into JupyterLab's root with a fresh
room name in their ``parameters`` cell; nothing else is started, so the kernel runs the
embedded server (01) or its own classroom server (03). A second client in this process joins the kernel's
server (its address is read from the page) and edits cross between it and the grid.
Screenshots go to ``artifacts/`` (checked by eye once; kept as CI artefacts).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from partywidget.widget import PartyStoreWidget
from support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
T = 120_000  # ms: cold kernel + JupyterLab on a shared 2-core machine


def copy_notebook(name: str, target: Path, parameters: str) -> None:
    """The committed notebook with its ``parameters`` cell replaced."""
    nb = json.loads((NOTEBOOKS / name).read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = parameters
    (target / name).write_text(json.dumps(nb, indent=1))


def run_all(page: Any, url: str, name: str) -> None:
    page.goto(f"{url}/lab/tree/{name}?reset")
    expect(page.locator(".jp-Notebook")).to_be_visible(timeout=T)
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=T)
    # A cold JupyterLab on a loaded machine can swallow the first menu command; "Run
    # All" has taken effect once some cell's prompt shows it queued or ran ([*] or [n]).
    started = page.locator(".jp-InputPrompt").filter(has_text=re.compile(r"\[(\*|\d+)\]"))
    for _attempt in range(3):
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
        try:
            expect(started.first).to_be_visible(timeout=30_000)
            return
        except AssertionError:
            page.keyboard.press("Escape")  # close a menu left open
    expect(started.first).to_be_visible(timeout=T)


def test_quickstart_notebook_in_jupyterlab(
    page: Any, jupyter: dict[str, Any], artifacts: Path
) -> None:
    room = f"quickstart-{uuid.uuid4().hex[:8]}"
    copy_notebook("01_quickstart.ipynb", jupyter["dir"], f"ROOM = {room!r}")
    run_all(page, jupyter["url"], "01_quickstart.ipynb")
    # The cell printing how to join tells us the kernel's server.
    hint = page.locator(".jp-RenderedText").filter(has_text="PartyStoreWidget(room=")
    expect(hint).to_be_visible(timeout=T)
    host = re.search(r'host="([^"]+)"', hint.inner_text())
    assert host is not None
    grid = page.locator(".jp-OutputArea .partywidget").first
    expect(grid.locator(".pw-badge")).to_have_text("connected", timeout=T)

    def cell(row: str, col: str) -> Any:
        return grid.locator(f'.pw-row[data-row="{row}"] .pw-cell[data-cell="{col}"]')

    expect(cell("polly", "species")).to_have_text("parrot", timeout=T)
    expect(cell("felix", "age")).to_have_text("8", timeout=T)
    grid.scroll_into_view_if_needed()  # JupyterLab hides cells scrolled out of view
    page.screenshot(path=str(artifacts / "notebook-01-quickstart.png"))

    peer = PartyStoreWidget(room, host=host.group(1)).wait_ready(30)
    try:
        wait_for(
            lambda: peer.get_cell("pets", "polly", "age") == 1, 60, what="the peer to load the room"
        )
        # the grid -> the peer
        grid.scroll_into_view_if_needed()
        cell("fido", "age").dblclick()
        cell("fido", "age").locator("input").fill("6")
        cell("fido", "age").locator("input").press("Enter")
        wait_for(
            lambda: peer.get_cell("pets", "fido", "age") == 6, 60, what="the grid edit at the peer"
        )
        # the peer -> the grid
        peer.set_cell("pets", "polly", "species", "macaw")
        expect(cell("polly", "species")).to_have_text("macaw", timeout=T)
        page.screenshot(path=str(artifacts / "notebook-01-after-edits.png"))
    finally:
        peer.close()


def test_classroom_notebook_in_jupyterlab(
    page: Any, jupyter: dict[str, Any], artifacts: Path
) -> None:
    room = f"class-{uuid.uuid4().hex[:8]}"
    for script in ("classroom_server.py", "students.py"):
        shutil.copy(NOTEBOOKS / script, jupyter["dir"] / script)
    copy_notebook("03_classroom.ipynb", jupyter["dir"], f"ROOM = {room!r}\nSTUDENTS = 8")
    run_all(page, jupyter["url"], "03_classroom.ipynb")
    # 8 students x 5 questions accepted, then all refused once the room is locked.
    expect(page.locator(".jp-RenderedText").filter(has_text="answers before")).to_contain_text(
        "answers before: 40 after: 40", timeout=T
    )
    expect(page.locator(".jp-RenderedText").filter(has_text="refused: 40")).to_have_count(1)
    expect(page.locator(".jp-RenderedImage img").first).to_be_visible(timeout=T)
    grid = page.locator(".jp-OutputArea .partywidget").first
    expect(grid.locator(".pw-badge")).to_have_text("connected", timeout=T)
    grid.scroll_into_view_if_needed()
    grid.locator(".pw-tab", has_text="answers").click()
    expect(grid.locator(".pw-tab", has_text="answers")).to_have_text(re.compile(r"\(40\)"))
    expect(grid.locator('.pw-row[data-row="s01-q1-1"] .pw-cell[data-cell="student"]')).to_have_text(
        "s01", timeout=T
    )
    page.screenshot(path=str(artifacts / "notebook-03-classroom.png"))
