"""Coverage-guided fuzzing (atheris/libFuzzer) of the room server's message handler.

Complements the hypothesis tests: libFuzzer mutates bytes toward new coverage of the
server's code (``partywidget.server`` and ``partywidget.codec`` are instrumented), seeded
with real captured messages. Every input goes through the same in-process ASGI harness
and oracle as ``test_fuzz_server.py`` (storage vs broadcasts, reasons logged, nothing
stored that a client cannot load); an oracle failure or any exception is a crash, which
libFuzzer reports with the input saved as ``crash-*``.

    PYTHONPATH=src .venv/bin/python tests/fuzz/atheris_server.py -runs=100000
    PYTHONPATH=src .venv/bin/python tests/fuzz/atheris_server.py -max_total_time=600

``tests/fuzz/test_atheris_smoke.py`` runs a short version in CI (skipped without atheris).
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import atheris  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # for `support`

with atheris.instrument_imports(include=["partywidget"]):
    import partywidget.codec
    import partywidget.server  # noqa: F401

from support.fuzz import Harness  # noqa: E402

logging.getLogger("partywidget.server").propagate = False  # quiet: the harness records
harness = Harness()


def _seeds() -> list[bytes]:
    """Real messages (wire vectors captured from the reference client) plus a few shapes."""
    seeds = [b's[{"t":{"r":{"c":1}}},{},1]', b's[{},{"v":"\\ufffd[1]"},1]', b"x", b"s"]
    vectors = HERE.parent / "wire-vectors.json"
    if vectors.exists():
        data = json.loads(vectors.read_text())
        for case in data.get("cases", []):
            for message in case.get("messages", []) if isinstance(case, dict) else []:
                if isinstance(message, str):
                    seeds.append(message.encode("utf-8", "surrogatepass"))
    return seeds


def one_input(data: bytes) -> None:
    """Bytes starting with 0x01 are a binary frame; anything else is a text frame.

    Text frames carry valid UTF-8, so invalid bytes are replaced (a str from the
    WebSocket layer never holds lone surrogates).
    """
    if data[:1] == b"\x01":
        harness.run(harness.check_message(None, data[1:]))
    else:
        harness.run(harness.check_message(data.decode("utf-8", "replace")))


def main() -> None:
    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="pw-atheris-"))
        for i, seed in enumerate(_seeds()):
            (corpus / f"seed{i}").write_bytes(seed)
        argv.append(str(corpus))
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
