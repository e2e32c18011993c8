"""Host resolution and the embedded room server (``partywidget.host``), with real servers:
an explicit host, ``$PARTYWIDGET_HOST``, a server answering on the default port, and the
embedded one started (once, said once at INFO on the package logger) when none answers.
"""

from __future__ import annotations

import logging
import os
import pathlib
import subprocess
import sys

import pytest

from partywidget import host as host_mod
from partywidget.host import resolve_host
from partywidget.server.thread import run_in_thread
from partywidget.widget import PartyStoreWidget
from support.waiting import wait_for
from support.widget import install

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_host_resolution(
    monkeypatch: pytest.MonkeyPatch, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    install(monkeypatch)
    assert resolve_host("example.org:1234") == ("example.org:1234", "")
    monkeypatch.setenv("PARTYWIDGET_HOST", "elsewhere:99")
    assert resolve_host(None) == ("elsewhere:99", "")
    monkeypatch.delenv("PARTYWIDGET_HOST")
    # nothing answers on the default port -> an embedded server, said once in the log
    monkeypatch.setattr(host_mod, "DEFAULT_PORT", port)
    monkeypatch.setattr(host_mod, "_embedded", None)
    monkeypatch.setattr(host_mod, "_embedded_logged", False)
    with caplog.at_level(logging.INFO, logger="partywidget"):
        w1 = PartyStoreWidget("emb")
        w2 = PartyStoreWidget("emb")
    try:
        embedded = host_mod._embedded
        assert embedded is not None and embedded.port == port
        assert w1.host == w2.host == f"127.0.0.1:{port}"
        assert "embedded" in w1.notice
        assert sum("embedded" in r.getMessage() for r in caplog.records) == 1
        w1.wait_ready(30)
        w2.wait_ready(30)
        w1.set_cell("t", "r", "c", "hello")
        wait_for(lambda: w2.get_cell("t", "r", "c") == "hello")
    finally:
        w1.close()
        w2.close()
        if embedded is not None:
            embedded.stop()
    # and when something answers on the default port, it is used as is
    s = run_in_thread(port=0)
    try:
        monkeypatch.setattr(host_mod, "DEFAULT_PORT", s.port)
        monkeypatch.setattr(host_mod, "_embedded", None)
        assert resolve_host(None) == (f"127.0.0.1:{s.port}", "")
    finally:
        s.stop()


def test_embedded_server_notice_is_info_on_the_package_logger(
    monkeypatch: pytest.MonkeyPatch, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    install(monkeypatch)
    monkeypatch.delenv("PARTYWIDGET_HOST", raising=False)
    monkeypatch.setattr(host_mod, "DEFAULT_PORT", port)
    monkeypatch.setattr(host_mod, "_embedded", None)
    monkeypatch.setattr(host_mod, "_embedded_logged", False)
    with caplog.at_level(logging.DEBUG, logger="partywidget"):
        host, notice = host_mod.resolve_host(None)
    embedded = host_mod._embedded
    try:
        assert "embedded" in notice and host == f"127.0.0.1:{port}"
        records = [r for r in caplog.records if "embedded" in r.getMessage()]
        assert [(r.name, r.levelno) for r in records] == [("partywidget", logging.INFO)]
    finally:
        assert embedded is not None
        embedded.stop()


def test_embedded_server_notice_writes_nothing_to_stderr(port: int) -> None:
    """In a fresh process with logging unconfigured (as in a kernel), the notice goes to
    the widget's banner only: no red stderr line in JupyterLab."""
    code = (
        "import partywidget.host as m\n"
        f"m.DEFAULT_PORT = {port}\n"
        "host, notice = m.resolve_host(None)\n"
        "print(notice)\n"
        "m._embedded.stop()\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("PARTYWIDGET_HOST", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "embedded" in done.stdout
    assert done.stderr == ""
