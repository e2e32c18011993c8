"""The two halves of the kernel <-> view protocol, together, over a faulty channel.

The kernel's half is ``partywidget.view.ViewProtocol`` with a real Store; the view's half
is ``js/protocol.ts``'s ``KernelLink`` with a real TinyBase Store in Node (bundled by the
repo's esbuild), wired as ``widget.py`` and ``js/grid.ts`` wire them. Both sides edit
while the channel drops, duplicates and delays messages; once it is reliable again, the
view's mirror must equal the kernel's Store and nothing may still be loading.

Dropped messages cannot happen on a real comm (it is ordered and reliable), but healing
them is what the sequence numbers are for. Two kinds are never dropped here, because the
view has no timer to ask again and nothing else would reveal their loss: snapshot
requests, and the last part of a snapshot (any other lost part is noticed when a later
part or a delta arrives).
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from partywidget.store import Store, create_store
from partywidget.view import CHANGES, ViewProtocol
from support.node import REPO_ROOT, content_from_json, js_equal, node_available

pytestmark = pytest.mark.node

#: The view's side: KernelLink + a TinyBase Store, applying steps as js/grid.ts does.
DRIVER = r"""
import { createStore } from "tinybase/store";
import { createInterface } from "node:readline";
import { KernelLink, isEmptyChanges } from "./js/protocol";

const store = createStore();
const link = new KernelLink("v");
let sent = [link.request()];
let applying = false;
store.addDidFinishTransactionListener(() => {
  if (applying) return;
  const changes = store.getTransactionChanges();
  if (!isEmptyChanges(changes)) sent.push(link.edit(changes));
});
const perform = (step) => {
  if (step.kind === "send") return void sent.push(step.message);
  applying = true;
  try {
    if (step.kind === "content") store.setContent(step.content);
    else if (step.kind === "changes") store.applyChanges(step.changes);
  } finally {
    applying = false;
  }
};
createInterface({ input: process.stdin }).on("line", (line) => {
  const { cmd, arg } = JSON.parse(line);
  if (cmd === "deliver") for (const step of link.receive(arg)) perform(step);
  else if (cmd === "setCell") store.setCell(...arg);
  else if (cmd === "delRow") store.delRow(...arg);
  const reply = { sent, loading: link.loading, content: cmd === "state" ? store.getContent() : null };
  sent = [];
  process.stdout.write(JSON.stringify(reply) + "\n");
});
"""


@pytest.fixture(scope="module")
def driver_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = node_available()
    if reason is not None:
        pytest.skip(f"Node unavailable: {reason}")
    out = tmp_path_factory.mktemp("view-js") / "driver.mjs"
    subprocess.run(
        [
            str(REPO_ROOT / "node_modules" / ".bin" / "esbuild"),
            "--bundle",
            "--platform=node",
            "--format=esm",
            "--loader=ts",
            f"--outfile={out}",
        ],
        cwd=REPO_ROOT,  # where esbuild resolves the piped driver's imports
        input=DRIVER,
        text=True,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


class View:
    """The Node process playing one front-end view."""

    def __init__(self, script: Path) -> None:
        self.proc = subprocess.Popen(
            ["node", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def command(self, cmd: str, arg: Any = None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, "arg": arg}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the view process died"
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


class Kernel:
    """A Store and the kernel's protocol, wired as ``PartyStoreWidget`` wires them."""

    def __init__(self, chunk_cells: int) -> None:
        self.store: Store = create_store()
        self.protocol = ViewProtocol(chunk_cells)
        self.outbox: list[dict[str, Any]] = []
        self.store.add_did_finish_transaction_listener(self._on_transaction)

    def _on_transaction(self, store: Any, *_: Any) -> None:
        changes = store.get_transaction_changes()
        if changes[0] or changes[1]:
            self.outbox += self.protocol.delta(changes)

    def receive(self, message: dict[str, Any]) -> None:
        received = self.protocol.receive(message)
        if received is None:
            return
        if received.changes is not None:
            self.store.apply_changes(received.changes)
            self.outbox += self.protocol.corrections(received.changes, self.store)
        if received.resync:
            self.outbox += self.protocol.snapshot(received.view, self.store.get_content())


class Channel:
    """A one-way queue that may drop, duplicate or hold back (reorder) messages."""

    def __init__(self, rng: random.Random, droppable: Any) -> None:
        self.rng = rng
        self.droppable = droppable
        self.queue: list[dict[str, Any]] = []
        self.held: list[dict[str, Any]] = []

    def take(self, faulty: bool) -> list[dict[str, Any]]:
        """The messages to deliver now (maybe none, maybe a duplicate or a late one)."""
        if not self.queue:
            if self.held and not faulty:
                return [self.held.pop(0)]
            return []
        message = self.queue.pop(0)
        if not faulty:
            return [message]
        roll = self.rng.random()
        if roll < 0.08 and self.droppable(message):
            return []
        if roll < 0.16:
            return [message, message]
        if roll < 0.24:
            self.held.append(message)
            return []
        if roll < 0.30 and self.held:
            return [message, self.held.pop(self.rng.randrange(len(self.held)))]
        return [message]

    def busy(self) -> bool:
        return bool(self.queue or self.held)


@pytest.fixture
def view(driver_script: Path) -> Iterator[View]:
    v = View(driver_script)
    yield v
    v.close()


def kernel_edit(kernel: Kernel, rng: random.Random, rows: list[str]) -> None:
    roll = rng.random()
    if roll < 0.6:
        kernel.store.set_cell("t", rng.choice(rows), rng.choice("abc"), rng.randrange(100))
    elif roll < 0.75:
        kernel.store.del_row("t", rng.choice(rows))
    elif roll < 0.85:
        kernel.store.set_value("v", rng.choice([True, "x", 1.5]))
    elif roll < 0.9:
        kernel.store.del_value("v")
    else:
        kernel.store.set_row("u", rng.choice(rows), {"j": [rng.randrange(9), {"k": "deep"}]})


@pytest.mark.parametrize("seed", range(40))
def test_view_and_kernel_converge_over_a_faulty_channel(view: View, seed: int) -> None:
    rng = random.Random(seed)
    rows = [f"r{i}" for i in range(12)]
    kernel = Kernel(chunk_cells=5)  # many-part snapshots, so parts get lost too
    kernel.store.set_table("t", {row: {"a": 0, "b": "x"} for row in rows})
    to_view = Channel(rng, droppable=lambda m: m["kind"] == CHANGES or m["part"] < m["parts"] - 1)
    to_kernel = Channel(rng, droppable=lambda m: m["kind"] == CHANGES)

    def exchange(reply: dict[str, Any]) -> None:
        to_kernel.queue += reply["sent"]
        to_view.queue += kernel.outbox
        kernel.outbox.clear()

    exchange(view.command("state"))
    for _ in range(400):
        roll = rng.random()
        if roll < 0.2:
            kernel_edit(kernel, rng, rows)
        elif roll < 0.35:
            row = rng.choice(rows)
            if rng.random() < 0.8:
                exchange(view.command("setCell", ["t", row, rng.choice("abc"), rng.randrange(100)]))
            else:
                exchange(view.command("delRow", ["t", row]))
        elif roll < 0.7:
            for message in to_view.take(faulty=True):
                exchange(view.command("deliver", message))
        else:
            for message in to_kernel.take(faulty=True):
                kernel.receive(message)
        exchange({"sent": []})

    def settle() -> None:
        for _ in range(10_000):
            if not (to_view.busy() or to_kernel.busy()):
                return
            for message in to_view.take(faulty=False):
                exchange(view.command("deliver", message))
            for message in to_kernel.take(faulty=False):
                kernel.receive(message)
            exchange({"sent": []})
        raise AssertionError("the exchange did not settle")

    # The channel is reliable again: what is in flight arrives, late ones last. Then one
    # edit from each side reveals any message lost at the end (nothing else would: the
    # protocol has no acks).
    settle()
    kernel.store.set_cell("t", "last", "from", "kernel")
    exchange(view.command("setCell", ["t", "last", "by", "view"]))
    settle()

    state = view.command("state")
    assert not state["loading"]
    mirror = content_from_json(state["content"])
    assert js_equal(mirror, kernel.store.get_content()), (mirror, kernel.store.get_content())
    assert kernel.store.get_row("t", "last") == {"from": "kernel", "by": "view"}


def test_a_steady_exchange_needs_one_snapshot(view: View) -> None:
    """Without faults: one snapshot at the start, then only deltas both ways (a snapshot
    request restarts the view's numbering on both sides, so no resync follows it)."""
    kernel = Kernel(chunk_cells=5)
    kernel.store.set_table("t", {f"r{i}": {"a": i} for i in range(20)})

    def settle(reply: dict[str, Any]) -> None:
        inbox = list(reply["sent"])
        while inbox or kernel.outbox:
            for message in inbox:
                kernel.receive(message)
            inbox = []
            outbox, kernel.outbox = kernel.outbox, []
            for message in outbox:
                inbox += view.command("deliver", message)["sent"]

    settle(view.command("state"))
    for i in range(10):
        settle(view.command("setCell", ["t", f"r{i}", "a", -i]))
        kernel.store.set_cell("t", f"r{i}", "b", i)
        settle({"sent": []})
    assert kernel.protocol.snapshots == 1
    state = view.command("state")
    assert js_equal(content_from_json(state["content"]), kernel.store.get_content())
