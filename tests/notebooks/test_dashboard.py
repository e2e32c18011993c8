"""02_live_dashboard.ipynb: the sensor hub (a separate process) feeds a throttled dashboard.

On the embedded server (nothing started by the test). The kernel is asked what the
dashboard last drew; a second client in this process checks the room holds every reading
and adds one of its own, which the dashboard must pick up through ``observe``.
"""

from __future__ import annotations

import uuid

from partywidget.widget import PartyStoreWidget
from support.notebooks import NotebookRun
from support.waiting import wait_for

SENSORS, COUNT = 2, 12
PARAMETERS = "ROOM = {room!r}\nSENSORS = {sensors}\nCOUNT = {count}\nINTERVAL = 0.05\nREFRESH = 0.2"

STATE = """
_frame = w.df("readings")
_pw_dump({
    "host": w.host, "returncode": sensor.returncode, "revision": w.revision,
    "drawn": drawn, "redraws": refresh.calls, "pending": refresh.pending,
    "rows": len(_frame), "dtypes": {c: str(t) for c, t in _frame.dtypes.items()},
    "table": w.get_table("readings"),
    "png": plot(_frame).data[:8] == b"\\x89PNG\\r\\n\\x1a\\n",
    "summary": _pw_json.loads(summarize(_frame).to_json(orient="index")),
})
"""

PROBE = {"sensor": "probe", "n": 0, "t": 1.0, "temperature": 99.5, "humidity": 10.0}


def test_dashboard_follows_the_sensor_hub_and_a_second_client(kernel_env: None) -> None:
    room = f"sensors-{uuid.uuid4().hex[:8]}"
    parameters = PARAMETERS.format(room=room, sensors=SENSORS, count=COUNT)
    with NotebookRun("02_live_dashboard.ipynb", parameters) as run:
        run.run_until_cleanup()
        state = run.json(STATE)
        assert state["returncode"] == 0  # the hub confirmed its last reading on the server
        assert state["rows"] == SENSORS * COUNT
        assert state["png"] is True  # what draw() shows is a real PNG chart
        assert state["drawn"]["rows"] == SENSORS * COUNT  # the last redraw saw everything
        assert 1 <= state["redraws"] <= state["revision"]
        assert state["dtypes"] == {
            "sensor": "string",
            "n": "Float64",
            "t": "Float64",
            "temperature": "Float64",
            "humidity": "Float64",
        }
        summary = state["summary"]
        assert sorted(summary) == ["s1", "s2"]
        assert all(row["readings"] == COUNT for row in summary.values())

        # A second client: it finds every reading in the room, then adds one.
        peer = PartyStoreWidget(room, host=state["host"]).wait_ready(30)
        try:
            wait_for(
                lambda: peer.get_table("readings") == state["table"],
                what="the peer to load every reading",
            )
            peer.set_row("readings", "probe-000000", PROBE)
            after = run.json(
                f"""
await _pw_until(lambda: drawn["rows"] == {SENSORS * COUNT + 1})
_pw_dump(_pw_json.loads(summarize(w.df("readings")).to_json(orient="index")))
"""
            )
            assert after["probe"]["readings"] == 1
            assert after["probe"]["last_temperature"] == 99.5

            run.run_rest()  # unobserve: later changes no longer schedule redraws
            before = run.json("_pw_dump([w.revision, refresh.calls])")
            peer.set_row("readings", "probe-000001", {**PROBE, "n": 1})
            quiet = run.json(
                f"""
await _pw_until(lambda: w.revision > {before[0]})
_pw_dump([refresh.pending, refresh.calls, len(w.df("readings"))])
"""
            )
            assert quiet == [False, before[1], SENSORS * COUNT + 2]
        finally:
            peer.close()
