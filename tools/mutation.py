"""Mutation testing of the core modules ([tool.mutmut] in pyproject.toml) with mutmut.

Runs `mutmut run` (optionally only mutants whose names match the given globs), then writes
tools/results/mutation.md: per module the mutants killed and survived, the score, and every
survivor with its diff and the reason it is harmless, read from tools/mutation_survivors.yaml
(a survivor without a reason is listed as UNEXPLAINED: kill it with a test or explain it).

    pip install -e ".[dev,mutation]"
    python tools/mutation.py                          # every core module (hours on 2 cores)
    python tools/mutation.py "ufo_nas.search.pareto*" # one module
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REASONS = ROOT / "tools" / "mutation_survivors.yaml"
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def mutmut(*args: str, check: bool = True) -> str:
    env = {
        **os.environ,
        "UFO_NAS_HOME": str(ROOT),
        "UFO_NAS_DATA": os.environ.get("UFO_NAS_DATA", str(ROOT.parent / "shared" / "datasets")),
    }
    done = subprocess.run(
        ["mutmut", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        output = (done.stdout + done.stderr).replace("\r", "\n")[-3000:]
        sys.exit(f"mutmut {' '.join(args)} failed ({done.returncode}):\n{output}")
    return done.stdout


def statuses() -> dict[str, str]:
    """Mutant name -> status, from `mutmut results --all true`."""
    found = {}
    for line in mutmut("results", "--all", "true").splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name.startswith("ufo_nas."):
            found[name] = status
    return found


def module_of(name: str) -> str:
    """'ufo_nas.search.pareto.x_non_dominated__mutmut_3' -> 'ufo_nas.search.pareto'."""
    parts = name.split(".")
    return ".".join(parts[:-1])


def report(found: dict[str, str], patterns: list[str], seconds: float) -> list[str]:
    reasons = yaml.safe_load(REASONS.read_text()) if REASONS.exists() else {}
    per_module: dict[str, Counter] = defaultdict(Counter)
    for name, status in found.items():
        per_module[module_of(name)][status] += 1
    lines = [
        "# Mutation testing of the core modules",
        "",
        f"`python tools/mutation.py {' '.join(shlex.quote(p) for p in patterns)}`".rstrip()
        + f" on {datetime.now(timezone.utc):%Y-%m-%d}, mutmut {version('mutmut')}, "
        f"{os.cpu_count()} CPUs, {seconds / 60:.1f} min. Score = killed (incl. timeouts) / "
        "mutants checked.",
        "",
        "| module | mutants | killed | survived | no tests | other | score |",
        "|---|---|---|---|---|---|---|",
    ]
    totals: Counter = Counter()
    for module in sorted(per_module):
        c = per_module[module]
        killed = sum(c[s] for s in KILLED)
        other = sum(c.values()) - killed - c["survived"] - c["no tests"]
        checked = killed + c["survived"] + c["no tests"]
        totals.update(c)
        lines.append(
            f"| {module} | {sum(c.values())} | {killed} | {c['survived']} | {c['no tests']} "
            f"| {other} | {killed / checked:.1%} |"
            if checked
            else f"| {module} | {sum(c.values())} | 0 | 0 | 0 | {other} | - |"
        )
    killed = sum(totals[s] for s in KILLED)
    checked = killed + totals["survived"] + totals["no tests"]
    if checked:
        lines.append(
            f"| **all** | {sum(totals.values())} | {killed} | {totals['survived']} | "
            f"{totals['no tests']} | {sum(totals.values()) - checked} | "
            f"**{killed / checked:.1%}** |"
        )
    survivors = sorted(n for n, s in found.items() if s in ("survived", "no tests"))
    unexplained = [n for n in survivors if n not in reasons]
    lines += [
        "",
        f"## Surviving mutants ({len(survivors)}; {len(unexplained)} unexplained)",
        "",
    ]
    for name in survivors:
        diff = mutmut("show", name, check=False).strip().splitlines()
        changed = [d for d in diff if d[:1] in "+-" and not d.startswith(("+++", "---"))]
        lines.append(f"- `{name}` ({found[name]}): {reasons.get(name, '**UNEXPLAINED**')}")
        lines += [f"  `{d.strip()}`" for d in changed[:4]]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("patterns", nargs="*", help="mutant name globs (default: all)")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=ROOT / "tools" / "results" / "mutation.md")
    args = parser.parse_args()
    start = datetime.now(timezone.utc)
    mutmut("run", "--max-children", str(args.max_children), *args.patterns)
    found = statuses()
    if args.patterns:
        from fnmatch import fnmatch

        found = {n: s for n, s in found.items() if any(fnmatch(n, p) for p in args.patterns)}
    seconds = (datetime.now(timezone.utc) - start).total_seconds()
    write_results(report(found, args.patterns, seconds), args.out)


if __name__ == "__main__":
    main()
