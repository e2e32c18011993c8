"""Run the user-facing notebooks top to bottom in a real kernel (nbclient), step by step.

Why step by step: the proof is not "no exception" but state read back from the kernel
while other clients act in the same room. :class:`NotebookRun` executes the notebook's
own cells (with test parameters injected after the cell tagged ``parameters``, the
papermill convention), can stop before the cells tagged ``cleanup``, and runs extra
cells whose *stdout* (JSON) the tests parse. Only the output of the cell being executed
is used: background widget updates carry another cell's parent header, so the widget
state nbclient saves is no evidence (see docs/browser-testing.md).

The kernel is the venv's ``python3`` kernel (jupyter_client runs it with this
interpreter) and imports partywidget from ``src/`` through ``PYTHONPATH`` (the
``kernel_env`` fixture).
"""

from __future__ import annotations

import json
import pathlib
from types import TracebackType
from typing import Any

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
SRC = ROOT / "src"

#: Defined in the kernel before the first check: wait for a condition without blocking
#: the kernel's loop (the widgets sync on it).
_PRELUDE = """
import asyncio as _pw_asyncio, json as _pw_json, time as _pw_time

async def _pw_until(predicate, timeout=60):
    deadline = _pw_time.monotonic() + timeout
    while not predicate():
        if _pw_time.monotonic() > deadline:
            raise TimeoutError("kernel-side condition not met in time")
        await _pw_asyncio.sleep(0.05)

def _pw_dump(obj):
    print("@@json@@" + _pw_json.dumps(obj, default=str))
"""


class NotebookRun:
    """One notebook in one fresh kernel; use as a context manager."""

    def __init__(self, name: str, parameters: str = "") -> None:
        self.path = NOTEBOOKS / name
        self.nb = nbformat.read(self.path, as_version=4)
        nbformat.validate(self.nb)
        if parameters:
            index = next(
                i
                for i, cell in enumerate(self.nb.cells)
                if "parameters" in cell.get("metadata", {}).get("tags", [])
            )
            injected = nbformat.v4.new_code_cell(parameters)
            injected.metadata["tags"] = ["injected-parameters"]
            self.nb.cells.insert(index + 1, injected)
        self._own = len(self.nb.cells)
        self._next = 0
        self.client = NotebookClient(
            self.nb,
            kernel_name="python3",
            timeout=120,
            startup_timeout=60,
            resources={"metadata": {"path": str(NOTEBOOKS)}},
        )
        self._kernel: Any = None

    def __enter__(self) -> NotebookRun:
        self._kernel = self.client.setup_kernel()
        self._kernel.__enter__()
        self.execute(_PRELUDE)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._kernel.__exit__(exc_type, exc, tb)

    def _is_cleanup(self, index: int) -> bool:
        return "cleanup" in self.nb.cells[index].get("metadata", {}).get("tags", [])

    def run_until_cleanup(self) -> None:
        """Execute the notebook's cells in order, stopping before the first ``cleanup``."""
        while self._next < self._own and not self._is_cleanup(self._next):
            self._run_own()

    def run_rest(self) -> None:
        """Execute the remaining notebook cells (the cleanup ones)."""
        while self._next < self._own:
            self._run_own()

    def _run_own(self) -> None:
        cell = self.nb.cells[self._next]
        if cell.cell_type == "code":
            self.client.execute_cell(cell, self._next)
        self._next += 1

    def cell_stdout(self, index: int) -> str:
        return "".join(
            output.get("text", "")
            for output in self.nb.cells[index].get("outputs", [])
            if output.get("output_type") == "stream" and output.get("name") == "stdout"
        )

    def own_cells_stdout(self) -> str:
        return "".join(self.cell_stdout(i) for i in range(self._own))

    def execute(self, source: str) -> str:
        """Run an extra cell in the kernel (errors raise); return its stdout."""
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        index = len(self.nb.cells) - 1
        self.client.execute_cell(cell, index)
        return self.cell_stdout(index)

    def json(self, source: str) -> Any:
        """Run ``source`` (which calls ``_pw_dump(obj)`` once) and return ``obj``."""
        out = self.execute(source)
        lines = [line for line in out.splitlines() if line.startswith("@@json@@")]
        assert len(lines) == 1, out
        return json.loads(lines[0][len("@@json@@") :])
