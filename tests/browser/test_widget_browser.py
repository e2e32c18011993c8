"""The widget in a real JupyterLab page: grid <-> kernel <-> room <-> a second client.

The second client is a PartyStoreWidget in this test process (background-loop mode) in
the same room of a real room server; the notebook's kernel runs the widget on the
kernel's own loop. Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from partywidget.server import ServerThread
from partywidget.widget import PartyStoreWidget
from support.jupyter import write_notebook
from support.waiting import wait_for

T = 60_000  # ms, generous: a cold kernel + JupyterLab on a shared 2-core machine


@pytest.fixture
def client(server: ServerThread, request: pytest.FixtureRequest) -> Iterator[PartyStoreWidget]:
    room = f"browser-{request.node.name}"
    w = PartyStoreWidget(room, server.host)
    w.wait_ready(30)
    yield w
    w.close()


def open_notebook(page: Any, url: str, name: str) -> None:
    page.goto(f"{url}/lab/tree/{name}?reset")
    expect(page.locator(".jp-Notebook")).to_be_visible(timeout=T)
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=T)


def wait_for_notebook7_kernel(page: Any) -> None:
    """Wait until Notebook 7 has attached the notebook's kernel.

    Why: running a cell while the notebook still has *no kernel* (the toolbar reads
    "No Kernel" for a moment after the page loads, longer on a loaded machine) makes
    JupyterLab's ``runCell`` try to start one itself and, when the session being
    created meanwhile makes that fail, open the modal "Select Kernel" dialog, which
    then intercepts every click. The execution indicator is no signal: it reads "Idle"
    even during "No Kernel". Once the toolbar shows the kernel's name, a cell run is
    simply queued until the kernel is connected.
    """
    expect(page.locator(".jp-Toolbar-kernelName")).to_have_text("Python 3 (ipykernel)", timeout=T)


def fail_on_dialog(page: Any) -> None:
    """A modal dialog would intercept clicks: fail saying which one, never click it away."""
    dialogs = page.locator(".jp-Dialog")
    if dialogs.count() and dialogs.first.is_visible():
        raise AssertionError(f"unexpected Jupyter dialog: {dialogs.first.inner_text()[:300]!r}")


def run_cell(page: Any, index: int) -> None:
    """Run one cell and make sure the notebook took the request.

    The check is the cell's prompt changing to ``[*]`` or ``[n]`` (set by the front-end
    as soon as the execution is queued). On a loaded machine the first Shift+Enter can
    land before the editor has focus and is then lost; only in that case (prompt
    unchanged) is the key pressed again, so a cell never runs twice.
    """
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    editor = cell.locator(".jp-InputArea-editor .cm-content")
    prompt = cell.locator(".jp-InputPrompt")
    before = prompt.inner_text()
    for _attempt in range(5):
        fail_on_dialog(page)
        editor.click()
        expect(editor).to_be_focused(timeout=T)
        page.keyboard.press("Shift+Enter")
        try:
            expect(prompt).not_to_have_text(before, timeout=10_000)
            break
        except AssertionError:
            continue
    expect(prompt).to_have_text(re.compile(r"\[(\*|\d+)\]"), timeout=T)


def test_grid_shows_edits_and_receives_remote_changes(
    page: Any, jupyter: dict[str, Any], artifacts: Path, client: PartyStoreWidget
) -> None:
    client.set_table(
        "pets",
        {
            "fido": {"species": "dog", "legs": 4},
            "felix": {"species": "cat", "legs": 4},
            "polly": {"species": "parrot", "legs": 2},
        },
    )
    client.set_value("open", True)
    write_notebook(
        jupyter["dir"] / "grid.ipynb",
        [
            # a schema whose column order differs from the rows' first-seen order
            "from partywidget.widget import PartyStoreWidget\n"
            f"w = PartyStoreWidget({client.room!r}, {client.host!r}, tables_schema="
            "{'pets': {'legs': {'type': 'number'}, 'species': {'type': 'string'}}})\nw",
            "await w.ready()\nprint('kernel sees', w.status, sorted(w.df('pets').index),"
            " list(w.df('pets').columns))",
            "print('before', w.stats['snapshots'])\n"
            "w._view.seq += 1  # lose a delta on purpose: the view must notice and resnapshot\n"
            "w.set_cell('pets', 'felix', 'legs', 42);",
            "print('after', w.stats['snapshots'])",
        ],
    )
    open_notebook(page, jupyter["url"], "grid.ipynb")
    run_cell(page, 0)
    widget = page.locator(".jp-OutputArea .partywidget")
    expect(widget.locator(".pw-badge")).to_have_text("connected", timeout=T)

    def cell(row: str, col: str) -> Any:
        return widget.locator(f'.pw-row[data-row="{row}"] .pw-cell[data-cell="{col}"]')

    expect(cell("fido", "species")).to_have_text("dog", timeout=T)
    expect(cell("polly", "legs")).to_have_text("2")
    # columns in schema order, as in the kernel's DataFrame (first seen would be species)
    headers = widget.locator(".pw-header .pw-hcell[data-cell]")
    assert headers.evaluate_all("els => els.map(e => e.dataset.cell)") == ["legs", "species"]
    expect(widget.locator('.pw-value[data-value="open"] .pw-value-cell')).to_have_text("true")
    page.screenshot(path=str(artifacts / "widget-loaded.png"))

    # an edit in the grid reaches the other client, as a number (the column's type)
    cell("fido", "legs").dblclick()
    editor = cell("fido", "legs").locator("input")
    editor.fill("5")
    editor.press("Enter")
    wait_for(
        lambda: client.get_cell("pets", "fido", "legs") == 5, 60, what="grid edit at the client"
    )

    # a change from the other client shows up (and flashes) in the grid
    client.set_cell("pets", "felix", "species", "tiger")
    expect(cell("felix", "species")).to_have_text("tiger", timeout=T)
    expect(cell("felix", "species")).to_have_class(re.compile("pw-flash"))
    page.screenshot(path=str(artifacts / "widget-remote-change.png"))

    # add a row, delete a row
    widget.locator(".pw-add-row").click()
    wait_for(lambda: len(client.get_table("pets")) == 4, 60, what="added row at the client")
    row = widget.locator('.pw-row[data-row="polly"]')
    row.hover()
    row.locator(".pw-del").click()
    wait_for(
        lambda: not client.store.has_row("pets", "polly"), 60, what="deleted row at the client"
    )

    # sort by legs, descending (second click); the new row (legs 0) ends up last
    header = widget.locator('.pw-hcell[data-cell="legs"]')
    header.click()
    header.click()
    expect(widget.locator(".pw-row").first).to_have_attribute("data-row", "fido")

    # the kernel's own view of the room
    run_cell(page, 1)
    output = page.locator(".jp-RenderedText").filter(has_text="kernel sees")
    expect(output).to_contain_text("kernel sees connected", timeout=T)
    text = output.inner_text()
    assert "'felix', 'fido'" in text and "polly" not in text
    assert "['legs', 'species']" in text

    # a gap in the kernel -> view stream is healed by a new snapshot
    run_cell(page, 2)
    expect(page.locator(".jp-RenderedText").filter(has_text="before")).to_contain_text(
        "before 1", timeout=T
    )
    expect(cell("felix", "legs")).to_have_text("42", timeout=T)
    run_cell(page, 3)
    expect(page.locator(".jp-RenderedText").filter(has_text="after")).to_contain_text(
        "after 2", timeout=T
    )
    page.screenshot(path=str(artifacts / "widget-final.png"))


def test_large_table_is_virtualised(
    page: Any, jupyter: dict[str, Any], artifacts: Path, client: PartyStoreWidget
) -> None:
    n = 100_000
    client.set_table(
        "big", {f"r{i:06d}": {"n": i, "s": f"row {i}", "b": i % 2 == 0} for i in range(n)}
    )
    write_notebook(
        jupyter["dir"] / "big.ipynb",
        [
            "from partywidget.widget import PartyStoreWidget\n"
            f"w = PartyStoreWidget({client.room!r}, {client.host!r})\nw",
            "await w.ready()\nprint('rows', len(w.df('big')))",
        ],
    )
    open_notebook(page, jupyter["url"], "big.ipynb")
    run_cell(page, 0)
    widget = page.locator(".jp-OutputArea .partywidget")
    expect(widget.locator(".pw-tab")).to_have_text(f"big ({n})", timeout=180_000)
    expect(widget.locator(".pw-badge")).to_have_text("connected", timeout=T)
    # only the visible window is in the DOM
    assert widget.locator(".pw-row").count() < 100
    # scroll to the end: the last rows get drawn
    widget.locator(".pw-scroller").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    last = f"r{n - 1:06d}"
    expect(widget.locator(f'.pw-row[data-row="{last}"] .pw-cell[data-cell="s"]')).to_have_text(
        f"row {n - 1}", timeout=T
    )
    # a remote one-cell change on the 100k-row table reaches the visible grid
    client.set_cell("big", last, "s", "changed remotely")
    expect(widget.locator(f'.pw-row[data-row="{last}"] .pw-cell[data-cell="s"]')).to_have_text(
        "changed remotely", timeout=T
    )
    page.screenshot(path=str(artifacts / "widget-100k.png"))
    run_cell(page, 1)
    expect(page.locator(".jp-RenderedText").filter(has_text="rows ")).to_contain_text(
        f"rows {n}", timeout=T
    )


def test_notebook7_renders_and_syncs(
    page: Any, jupyter: dict[str, Any], artifacts: Path, client: PartyStoreWidget
) -> None:
    pytest.importorskip("notebook", minversion="7")
    client.set_table("pets", {"fido": {"species": "dog", "legs": 4}})
    write_notebook(
        jupyter["dir"] / "nb7.ipynb",
        [
            "from partywidget.widget import PartyStoreWidget\n"
            f"w = PartyStoreWidget({client.room!r}, {client.host!r})\nw",
        ],
    )
    page.goto(f"{jupyter['url']}/notebooks/nb7.ipynb")
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=T)
    wait_for_notebook7_kernel(page)
    run_cell(page, 0)
    widget = page.locator(".jp-OutputArea .partywidget")
    expect(widget.locator(".pw-badge")).to_have_text("connected", timeout=T)
    legs = widget.locator('.pw-row[data-row="fido"] .pw-cell[data-cell="legs"]')
    expect(legs).to_have_text("4", timeout=T)
    legs.dblclick()
    legs.locator("input").fill("3")
    legs.locator("input").press("Enter")
    wait_for(
        lambda: client.get_cell("pets", "fido", "legs") == 3,
        60,
        what="Notebook 7 edit at the client",
    )
    client.set_cell("pets", "fido", "species", "wolf")
    expect(widget.locator('.pw-row[data-row="fido"] .pw-cell[data-cell="species"]')).to_have_text(
        "wolf", timeout=T
    )
    page.screenshot(path=str(artifacts / "widget-notebook7.png"))
