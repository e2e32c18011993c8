"""Run the real reference server: ``partykit dev`` hosting ``deploy/partykit/``.

Why: interop tests must compare partywidget with what TinyBase's own
``TinyBasePartyKitServer`` does under PartyKit's real runtime (Cloudflare's workerd
via miniflare), not with our reading of its source. Running the deploy template itself
also keeps the template users deploy from rotting.

How it is started (all offline, non-interactive):

    cd deploy/partykit && NO_UPDATE_NOTIFIER=1 node <root>/node_modules/.bin/partykit \\
        dev --port 0 --persist <tmp>/state --disable-request-cf-fetch --no-hotkeys

- ``cwd`` is the template directory: partykit reads ``partykit.json`` there and its
  esbuild bundler resolves ``tinybase``/``partykit`` by walking up to the repository's
  root ``node_modules`` (no second ``npm install``). Nothing is written into the
  template directory when ``--persist`` names a path.
- ``--port 0`` lets workerd take a free port; we read it from the ``Ready on`` line.
  :meth:`PartykitDev.restart` passes that port explicitly so clients can reconnect.
- ``--persist PATH`` keeps Durable Object storage as SQLite files under
  ``PATH/party``; ``--persist false`` keeps it in memory (lost on restart).
- ``--disable-request-cf-fetch`` stops miniflare from downloading ``request.cf`` data;
  ``NO_UPDATE_NOTIFIER`` stops the npm update check; stdin is ``/dev/null`` and no TTY,
  so no hotkeys and no prompts (login is only needed for ``deploy``/AI/vectorize).
- It runs in its own process group (node -> esbuild, workerd) so :meth:`stop` ends
  every child with one ``killpg``.

Quirks observed: workerd listens on ``0.0.0.0`` (partykit hard-codes it; there is no
flag), the inspector on port 9229 or a free one, cold start is about 1-2 s.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from types import TracebackType

from support.node import PyContent, content_from_wire

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIR = REPO_ROOT / "deploy" / "partykit"
PARTYKIT_BIN = REPO_ROOT / "node_modules" / "partykit" / "dist" / "bin.mjs"

_READY_RE = re.compile(r"Ready on https?://[^\s:]+:(\d+)")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# Servers run in their own session, so an interrupted test run (Ctrl-C before fixture
# teardown) would leave them behind; stop whatever is still running at exit.
_RUNNING: weakref.WeakSet[PartykitDev] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_RUNNING):
        server.stop()


class PartykitDevError(RuntimeError):
    """``partykit dev`` did not start or stop as expected (message has its log tail)."""


def partykit_available() -> str | None:
    """Return why ``partykit dev`` cannot run here, or ``None`` when it can."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not PARTYKIT_BIN.exists():
        return f"{PARTYKIT_BIN} is missing (run npm install at the repository root)"
    if not (REPO_ROOT / "node_modules" / "tinybase").exists():
        return "node_modules/tinybase is missing"
    return None


class PartykitDev:
    """One ``partykit dev`` process serving ``deploy/partykit`` on loopback.

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``persist`` is a
    directory for Durable Object storage (a private temporary one by default, removed
    by :meth:`stop`), or ``False`` for in-memory storage.
    """

    def __init__(
        self,
        *,
        persist: str | os.PathLike[str] | bool = True,
        template_dir: str | os.PathLike[str] = TEMPLATE_DIR,
        startup_timeout: float = 60.0,
        extra_args: list[str] | None = None,
    ) -> None:
        self.template_dir = Path(template_dir)
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args or [])
        self._own_tmp = tempfile.mkdtemp(prefix="partykit-dev-")
        self.log_path = Path(self._own_tmp) / "partykit.log"
        self.persist_dir: Path | None
        if persist is True:
            self.persist_dir = Path(self._own_tmp) / "state"
        elif persist is False:
            self.persist_dir = None
        else:
            self.persist_dir = Path(persist)
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._log_offset = 0
        #: Seconds the last :meth:`start` took until the room answered HTTP.
        self.start_seconds: float | None = None

    # -- properties --------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise PartykitDevError("partykit dev is not started")
        return self._port

    @property
    def host(self) -> str:
        """``"127.0.0.1:PORT"``, the form PartySocket and our persister take."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def store_url(self, room: str, party: str = "main", store_path: str = "/store") -> str:
        """The HTTP URL of a room's whole store (GET it to see the server's content)."""
        return f"{self.url}/parties/{party}/{room}{store_path}"

    def get_store(self, room: str, party: str = "main") -> PyContent | None:
        """The room's content as the server has it (HTTP GET), ``None`` if no store.

        JSON cells are decoded, so the result compares with a client's content.
        """
        with urllib.request.urlopen(self.store_url(room, party), timeout=30) as response:
            return content_from_wire(response.read().decode("utf-8"))

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> PartykitDev:
        """Start the server and wait until a room answers HTTP (raises with the log)."""
        if self.is_running():
            return self
        reason = partykit_available()
        if reason is not None:
            raise PartykitDevError(reason)
        persist_arg = "false" if self.persist_dir is None else str(self.persist_dir)
        if self.persist_dir is not None:
            self.persist_dir.mkdir(parents=True, exist_ok=True)
        args = [
            shutil.which("node") or "node",
            str(PARTYKIT_BIN),
            "dev",
            "--port",
            str(self._port or 0),
            "--persist",
            persist_arg,
            "--disable-request-cf-fetch",
            "--no-hotkeys",
            *self.extra_args,
        ]
        env = dict(os.environ)
        env.update(
            NO_UPDATE_NOTIFIER="1", NO_COLOR="1", FORCE_COLOR="0", PWD=str(self.template_dir)
        )
        # The log is appended across restarts; only read what this start wrote.
        log = self.log_path.open("ab")
        self._log_offset = log.tell()
        began = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                args,
                cwd=self.template_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self._port = self._wait_for_port(began)
            self._wait_for_http(began)
        except BaseException:
            self._kill()
            raise
        self.start_seconds = time.monotonic() - began
        _RUNNING.add(self)
        return self

    def stop(self) -> None:
        """Stop the server (whole process group) and remove its private temp dir."""
        self._kill()
        shutil.rmtree(self._own_tmp, ignore_errors=True)

    def restart(self) -> PartykitDev:
        """Stop and start again on the same port with the same persistence dir."""
        self._kill()
        return self.start()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL, no graceful shutdown) but keep state for restart."""
        self._kill(sig=signal.SIGKILL)

    def __enter__(self) -> PartykitDev:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers -----------------------------------------------------------------
    def log_text(self) -> str:
        """The server's output since the last start, without terminal escapes."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                raw = f.read()
        except FileNotFoundError:
            return ""
        return _ANSI_RE.sub("", raw.decode("utf-8", "replace"))

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _fail(self, what: str) -> PartykitDevError:
        return PartykitDevError(f"partykit dev: {what}\n--- log tail ---\n{self.log_tail()}")

    def _wait_for_port(self, began: float) -> int:
        while True:
            match = _READY_RE.search(self.log_text())
            if match:
                return int(match.group(1))
            if self._proc is None or self._proc.poll() is not None:
                raise self._fail("exited before it was ready")
            if time.monotonic() - began > self.startup_timeout:
                raise self._fail(f"no 'Ready on' line within {self.startup_timeout}s")
            time.sleep(0.05)

    def _wait_for_http(self, began: float) -> None:
        # "Ready" is printed when workerd listens; a room request proves the worker
        # bundle loaded and Durable Objects answer.
        probe = self.store_url("__partywidget_ready_probe__")
        while True:
            try:
                with urllib.request.urlopen(probe, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if self._proc is None or self._proc.poll() is not None:
                raise self._fail("exited before answering HTTP")
            if time.monotonic() - began > self.startup_timeout:
                raise self._fail(f"no HTTP answer within {self.startup_timeout}s")
            time.sleep(0.05)

    def _kill(self, sig: signal.Signals = signal.SIGTERM) -> None:
        proc, self._proc = self._proc, None
        _RUNNING.discard(self)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        # node exits first on SIGTERM; make sure workerd/esbuild in the group are gone
        # too, so the port is free for a restart. They are not our children (we cannot
        # wait for them), so wait until the port stops accepting connections.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if self._port is not None:
            _wait_port_closed(self._port)


def _wait_port_closed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            return
        time.sleep(0.05)
