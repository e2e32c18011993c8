"""01_quickstart.ipynb in a real kernel, with a second client (in this process) in its room.

Run twice: against a room server this test starts (``PARTYWIDGET_HOST``), and with
nothing started (the widget starts its embedded server inside the kernel, and this
process's client connects *into* the kernel's server).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from partywidget.host import answers
from partywidget.server import ServerThread
from partywidget.widget import PartyStoreWidget
from support.notebooks import NotebookRun
from support.waiting import wait_for

AFTER_NOTEBOOK = {
    "fido": {"species": "dog", "age": 4, "sold": False},
    "felix": {"species": "cat", "age": 8, "sold": True},
    "polly": {"species": "parrot", "age": 1, "sold": False},
}
VALUES = {"shop": "Pet Palace", "visitors": 12}

STATE = """
frame = w.df("pets")
_pw_dump({
    "host": w.host, "notice": w.notice, "status": w.status,
    "table": w.get_table("pets"), "values": w.values,
    "index": frame.index.name, "columns": list(frame.columns),
    "dtypes": {c: str(t) for c, t in frame.dtypes.items()},
    "frame": _pw_json.loads(frame.to_json(orient="index")),
    "revisions": revisions,
})
"""


def exercise(run: NotebookRun, peer: PartyStoreWidget, expected_host: str | None) -> dict[str, Any]:
    run.run_until_cleanup()
    state: dict[str, Any] = run.json(STATE)
    if expected_host is not None:
        assert state["host"] == expected_host
    assert state["status"] == "connected"
    # Everything the notebook wrote, as the kernel holds it...
    assert state["table"] == AFTER_NOTEBOOK
    assert state["values"] == VALUES
    assert state["index"] == "row_id"
    assert state["columns"] == ["species", "age", "sold"]
    assert state["dtypes"] == {"species": "string", "age": "Int64", "sold": "boolean"}
    assert state["frame"] == AFTER_NOTEBOOK
    # the revision observer ran for the remote value change
    assert state["revisions"] and state["revisions"] == sorted(state["revisions"])
    # ...and as the second client sees it through the room.
    wait_for(
        lambda: peer.get_table("pets") == AFTER_NOTEBOOK,
        what="the peer to see the notebook's table",
    )
    wait_for(lambda: peer.values == VALUES, what="the peer to see the notebook's values")

    # The peer edits as a grid user would; the kernel's DataFrame follows.
    peer.set_cell("pets", "polly", "age", 2)
    peer.del_row("pets", "fido")
    peer.set_row("pets", "rex", {"species": "dog", "age": 5, "sold": False})
    after = run.json(
        """
await _pw_until(lambda: w.get_cell("pets", "polly", "age") == 2
                and not w.store.has_row("pets", "fido") and w.store.has_row("pets", "rex"))
_pw_dump(_pw_json.loads(w.df("pets").to_json(orient="index")))
"""
    )
    assert after == {
        "felix": {"species": "cat", "age": 8, "sold": True},
        "polly": {"species": "parrot", "age": 2, "sold": False},
        "rex": {"species": "dog", "age": 5, "sold": False},
    }
    run.run_rest()  # closes w2; w keeps syncing
    statuses = run.json('_pw_dump([w.status, w2.status, w.get_cell("pets", "rex", "age")])')
    assert statuses == ["connected", "offline", 5]
    return state


def test_quickstart_on_a_server_the_test_started(
    kernel_env: None, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTYWIDGET_HOST", server.host)
    room = f"quickstart-{uuid.uuid4().hex[:8]}"
    peer = PartyStoreWidget(room, host=server.host).wait_ready(30)
    try:
        with NotebookRun("01_quickstart.ipynb", f"ROOM = {room!r}") as run:
            state = exercise(run, peer, server.host)
        assert state["notice"] == ""  # no embedded server was started
    finally:
        peer.close()


def test_quickstart_on_the_embedded_server(kernel_env: None) -> None:
    occupied = answers("127.0.0.1", 1999)  # then the kernel uses that server instead
    room = f"quickstart-{uuid.uuid4().hex[:8]}"
    with NotebookRun("01_quickstart.ipynb", f"ROOM = {room!r}") as run:
        run.execute("from partywidget import PartyStoreWidget")
        host = run.json(f"_w = PartyStoreWidget({room!r}); _pw_dump([_w.host, _w.notice])")
        if not occupied:
            assert "embedded" in host[1]
        # The second client lives in this process and connects into the kernel's server.
        peer = PartyStoreWidget(room, host=host[0]).wait_ready(30)
        try:
            state = exercise(run, peer, host[0])
        finally:
            peer.close()
    if not occupied:
        assert "embedded" in state["notice"]
