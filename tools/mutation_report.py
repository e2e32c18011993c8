"""Summarise a mutmut run (``make mutate``) as a Markdown report.

Reads the verdicts mutmut leaves in ``mutants/**.meta`` and writes
``artifacts/mutation/report.md``: the score of each mutated module and the diff of every
mutant no test killed. A survivor whose name appears in ``docs/mutation.md`` has been
judged equivalent there; any other survivor is listed as unexplained, because it is either
a missing test or an equivalence nobody has argued yet.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILLED = {1, 3}  # a failing test run (3: pytest internal error) kills the mutant
TIMEOUT = {36, 24, -24, 152, 255}
NOT_COUNTED = {34, 37}  # skipped by pragma, rejected by the type checker


@dataclass
class Module:
    path: str
    killed: list[str] = field(default_factory=list)
    timeout: list[str] = field(default_factory=list)
    survived: list[str] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.killed) + len(self.timeout) + len(self.survived) + len(self.untested)

    @property
    def score(self) -> float:
        return 100.0 * (len(self.killed) + len(self.timeout)) / max(self.total, 1)


def load(mutants: Path) -> list[Module]:
    modules = []
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        module = Module(str(meta.relative_to(mutants).with_suffix("")))
        for name, code in codes.items():
            if code is None:
                module.unchecked.append(name)
            elif code in KILLED:
                module.killed.append(name)
            elif code in TIMEOUT:
                module.timeout.append(name)
            elif code in NOT_COUNTED:
                continue
            elif code in (5, 33):
                module.untested.append(name)
            else:
                module.survived.append(name)
        if codes:
            modules.append(module)
    return modules


def diff(name: str, path: str) -> str:
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant
    except ImportError:
        return "(install mutmut to see the diff)"
    try:
        return get_diff_for_mutant(name, path=path)
    except Exception as exc:  # a report must not die on one odd mutant
        return f"(no diff: {exc})"


def render(modules: list[Module], explained: str) -> str:
    lines = [
        "# Mutation report",
        "",
        "| module | mutants | killed | timeout | survived | no test | score |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in modules:
        if not m.total:
            lines.append(f"| `{m.path}` | {len(m.unchecked)} not run | | | | | |")
            continue
        lines.append(
            f"| `{m.path}` | {m.total} | {len(m.killed)} | {len(m.timeout)} "
            f"| {len(m.survived)} | {len(m.untested)} | {m.score:.1f}% |"
        )
    for m in modules:
        rest = m.survived + m.untested
        if m.unchecked:
            lines += ["", f"{len(m.unchecked)} mutants of `{m.path}` were not run yet."]
        if not rest:
            continue
        lines += ["", f"## Survivors in `{m.path}`"]
        for name in rest:
            short = name.split(".")[-1]
            tag = "equivalent (docs/mutation.md)" if short in explained else "UNEXPLAINED"
            kind = "no test reaches it" if name in m.untested else "survived"
            lines += ["", f"### `{short}`: {kind}, {tag}", "", "```diff", diff(name, m.path), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    modules = load(ROOT / "mutants")
    if not modules:
        print("no mutmut results under mutants/: run `make mutate`", file=sys.stderr)
        return 1
    docs = ROOT / "docs" / "mutation.md"
    explained = docs.read_text() if docs.exists() else ""
    out = ROOT / "artifacts" / "mutation" / "report.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(modules, explained))
    for m in modules:
        if not m.total:
            print(f"{m.path}: not measured ({len(m.unchecked)} mutants not run)")
            continue
        print(
            f"{m.path}: {m.score:.1f}% of {m.total} killed, "
            f"{len(m.survived) + len(m.untested)} survive"
        )
    print(f"report: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
