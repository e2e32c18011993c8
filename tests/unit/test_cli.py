"""``partywidget serve``: arguments, the printed URL, durability across kill -9, shutdown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from partywidget.cli import build_parser, default_db_path, main

SRC = Path(__file__).parents[2] / "src"
TIMEOUT = 30


def test_serve_defaults() -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.db, args.log_level, args.public) == (
        "127.0.0.1",
        1999,
        None,
        "info",
        False,
    )


def test_default_db_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "partywidget" / "rooms.sqlite3"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert (
        default_db_path()
        == tmp_path / "home" / ".local" / "share" / "partywidget" / "rooms.sqlite3"
    )


def test_demo_is_wired() -> None:
    from partywidget import demo

    args = build_parser().parse_args(["demo", "--pause", "0", "--room", "r"])
    assert args.handler is demo.run
    assert (args.pause, args.room, args.host) == (0.0, "r", None)


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::"])
def test_non_loopback_needs_public(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", host, "--port", "0", "--db", ":memory:"]) == 2
    assert "--public" in capsys.readouterr().err


class Served:
    """``python -m partywidget serve`` in a subprocess, with its printed host."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "partywidget", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(SRC), **(env or {})},
        )
        assert self.proc.stdout is not None
        self.banner = [self.proc.stdout.readline() for _ in range(3)]
        match = re.search(r'host="([^"]+)"', self.banner[2])
        assert match, self.banner
        self.host = match.group(1)
        self.url = f"http://{self.host}/parties/main/room/store"

    def stop(self, sig: int) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, out, err


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate(timeout=TIMEOUT)


def test_serve_prints_url_and_survives_kill_9(tmp_path: Path, served: list[Served]) -> None:
    db = tmp_path / "rooms.sqlite3"
    first = Served("--db", str(db))
    served.append(first)
    assert first.banner[0].startswith("partywidget room server on http://127.0.0.1:")
    assert str(db) in first.banner[1]
    assert (
        httpx.put(first.url, content=b'[{"t":{"r":{"c":1}}},{}]', timeout=TIMEOUT).status_code
        == 201
    )
    ws_url = f"ws://{first.host}/parties/main/room"
    with (
        connect(f"{ws_url}?_pk=a", open_timeout=TIMEOUT) as a,
        connect(f"{ws_url}?_pk=b", open_timeout=TIMEOUT) as b,
    ):
        a.send('s[{"t":{"r":{"c":2}}},{"v":"é"},1]')
        assert b.recv(timeout=TIMEOUT) == 's[{"t":{"r":{"c":2}}},{"v":"é"},1]'
    expected = '[{"t":{"r":{"c":2}}},{"v":"é"}]'
    assert httpx.get(first.url, timeout=TIMEOUT).text == expected
    first.proc.kill()  # SIGKILL: no shutdown, no checkpoint
    first.proc.communicate(timeout=TIMEOUT)
    assert first.proc.returncode == -signal.SIGKILL

    second = Served("--db", str(db))
    served.append(second)
    assert httpx.get(second.url, timeout=TIMEOUT).text == expected


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_shutdown_on_signal(sig: int, served: list[Served]) -> None:
    server = Served("--db", ":memory:", "--log-level", "info")
    served.append(server)
    assert "in memory" in server.banner[1]
    assert httpx.put(server.url, content=b"[{},{}]", timeout=TIMEOUT).status_code == 201
    with connect(f"ws://{server.host}/parties/main/room?_pk=x", open_timeout=TIMEOUT):
        pass
    code, out, err = server.stop(sig)
    assert code == 0, err
    assert "stopped" in out
    assert re.search(r"connect main/room id=x from 127\.0\.0\.1", err), err
    assert "close main/room id=x" in err


def test_default_db_is_created_under_xdg_data_home(tmp_path: Path, served: list[Served]) -> None:
    server = Served(env={"XDG_DATA_HOME": str(tmp_path)})
    served.append(server)
    assert httpx.put(server.url, content=b"[{},{}]", timeout=TIMEOUT).status_code == 201
    server.stop(signal.SIGTERM)
    assert (tmp_path / "partywidget" / "rooms.sqlite3").is_file()


def test_party_option_serves_a_custom_server_class(tmp_path: Path, served: list[Served]) -> None:
    """``--party [NAME=]FILE.py:Class`` runs hooks from a user's file: here a server that
    refuses every cell write in party ``locked`` while ``main`` stays the stock server."""
    module = tmp_path / "locked_server.py"
    module.write_text(
        "from partywidget.server import TinyBasePartyKitServer\n\n"
        "class Locked(TinyBasePartyKitServer):\n"
        "    async def can_set_cell(self, *args):\n"
        "        return False\n"
    )
    server = Served("--db", ":memory:", "--party", f"locked={module}:Locked")
    served.append(server)
    body = b'[{"t":{"r":{"c":1}}},{}]'
    locked = f"http://{server.host}/parties/locked/room/store"
    assert httpx.put(locked, content=body, timeout=TIMEOUT).status_code == 201
    assert httpx.get(locked, timeout=TIMEOUT).text in ("", "[{},{}]")
    assert httpx.put(server.url, content=body, timeout=TIMEOUT).status_code == 201
    assert httpx.get(server.url, timeout=TIMEOUT).text == body.decode()


@pytest.mark.parametrize("spec", ["nocolon", "json:loads", "partywidget.nope:X"])
def test_party_option_rejects_bad_specs(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "0", "--db", ":memory:", "--party", spec]) == 1
    assert "error:" in capsys.readouterr().err


def test_allow_origin_lets_that_page_in(served: list[Served]) -> None:
    server = Served("--db", ":memory:", "--allow-origin", "https://app.example.org")
    served.append(server)
    httpx.put(server.url, content=b"[{},{}]", timeout=TIMEOUT)
    allowed = httpx.get(server.url, headers={"Origin": "https://app.example.org"}, timeout=TIMEOUT)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.org"
    foreign = httpx.get(server.url, headers={"Origin": "https://evil.example"}, timeout=TIMEOUT)
    assert foreign.status_code == 403


def test_allow_origin_star_warns_and_bad_origins_are_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--port", "0", "--db", ":memory:", "--allow-origin", "no/scheme"]) == 1
    assert "error:" in capsys.readouterr().err
    wildcard = Served("--db", ":memory:", "--allow-origin", "*")
    try:
        response = httpx.get(
            wildcard.url, headers={"Origin": "https://any.example"}, timeout=TIMEOUT
        )
        assert response.status_code == 200
    finally:
        _, _, err = wildcard.stop(signal.SIGTERM)
    assert "warning: --allow-origin '*'" in err
