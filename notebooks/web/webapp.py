"""Build and serve the TinyBase web page of ``04_tinybase_web_app.ipynb``.

Why here and not on the room server: the page is an ordinary static site, like any
TinyBase app; it talks to the room server only through TinyBase's PartyKit client
(WebSocket + the store URL, which the server answers with CORS headers). So it gets its
own tiny static server, and works against any room server or a PartyKit deployment.

* :func:`build` bundles ``app.ts`` with the repo's ``node_modules/.bin/esbuild`` into
  ``dist/app.js`` (git-ignored), only when the bundle is older than its source.
* :func:`serve` serves this folder on ``127.0.0.1`` (a free port) from a daemon thread.

From a shell: ``python notebooks/web/webapp.py --host 127.0.0.1:1999 --room todos``
builds, serves and prints the page's URL until Ctrl+C.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ESBUILD = REPO / "node_modules" / ".bin" / "esbuild"
SOURCE = HERE / "app.ts"
BUNDLE = HERE / "dist" / "app.js"

__all__ = ["BUNDLE", "PageServer", "build", "serve"]


def build(force: bool = False) -> Path:
    """Bundle ``app.ts`` (TinyBase + partysocket included) into ``dist/app.js``."""
    if not force and BUNDLE.exists() and BUNDLE.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BUNDLE
    if not ESBUILD.exists():
        raise FileNotFoundError(
            f"{ESBUILD} not found: run `npm install` at the repository root first"
        )
    subprocess.run(
        [
            str(ESBUILD),
            str(SOURCE),
            "--bundle",
            "--format=esm",
            "--target=es2022",
            f"--outfile={BUNDLE}",
            "--log-level=warning",
        ],
        check=True,
        cwd=HERE,
    )
    return BUNDLE


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files without a log line per request (they would land in the notebook)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")  # always the freshly built bundle
        super().end_headers()


class PageServer:
    """This folder over HTTP on a daemon thread; :meth:`url` opens a given room."""

    def __init__(self, port: int = 0) -> None:
        handler = functools.partial(_QuietHandler, directory=str(HERE))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="partywidget-web", daemon=True
        )
        self._thread.start()

    def url(self, host: str, room: str) -> str:
        """The page, connected to ``room`` on the room server at ``host``."""
        query = urllib.parse.urlencode({"host": host, "room": room})
        return f"http://127.0.0.1:{self.port}/index.html?{query}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


def serve(port: int = 0) -> PageServer:
    """Build if needed, then serve the page (port 0: any free port)."""
    build()
    return PageServer(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build and serve the TinyBase todo page.")
    parser.add_argument("--host", default="127.0.0.1:1999", help="the room server")
    parser.add_argument("--room", default="todos")
    parser.add_argument("--port", type=int, default=0, help="port for the page (0: any)")
    args = parser.parse_args(argv)
    page = serve(args.port)
    print(f"open {page.url(args.host, args.room)}  (Ctrl+C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        page.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
