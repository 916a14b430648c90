"""How far the ground truth of P1 moves between two runs: each held-out subnet's measured
time (anchor-scaled to the table's reference, the median over the run's processes) in two
`tools/bench_latency.py` runs of the same subnets and tables, per device. What a table cannot
beat: if a subnet's truth moves 5% between runs, no prediction lands within 5% of both.
And whether the table's errors repeat: the correlation of each subnet's error (debiased by
the run's median) between the runs. Near 1, the error is the table's (its prediction of that
subnet); near 0, it is the measurement's (noise, or the neighbours a chunk timed it beside:
`bench_latency.py --chunking SEED` times the same subnets beside others).

    python tools/compare_runs.py EARLIER.json LATER.json --out tools/results/X.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from results_io import write_results


def _truths(path: Path) -> dict[str, dict]:
    """Per device, the shipped table's entry of a P1 run."""
    return {e["device"]: e for e in json.loads(path.read_text()) if e.get("shipped")}


def compare(earlier: dict, later: dict) -> dict:
    """The later run's truths against the earlier's, same subnets, in %."""
    archs = [(r["arch"], r["tasks"]) for r in earlier["per_subnet"]]
    if archs != [(r["arch"], r["tasks"]) for r in later["per_subnet"]]:
        raise SystemExit("the two runs timed different subnets (another --subnets or seed)")
    first = np.array([r["measured_ms"] for r in earlier["per_subnet"]])
    moved = np.array([r["measured_ms"] for r in later["per_subnet"]]) / first - 1
    every = np.array([len(t) > 1 for _, t in archs])
    offset = np.median(moved)
    errors = []
    for run in (earlier, later):
        e = np.array([r["predicted_ms"] / r["measured_ms"] - 1 for r in run["per_subnet"]])
        errors.append(e - np.median(e))
    return {
        "n": len(moved),
        "offset": 100 * offset,
        "mean": 100 * np.abs(moved).mean(),
        "debiased": 100 * np.abs(moved - offset).mean(),
        "within_5": np.mean(np.abs(moved) <= 0.05),
        "debiased_within_5": np.mean(np.abs(moved - offset) <= 0.05),
        "every_task": 100 * np.median(moved[every]),
        "one_task": 100 * np.median(moved[~every]),
        "error_correlation": float(np.corrcoef(*errors)[0, 1]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("earlier", type=Path)
    parser.add_argument("later", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    a, b = _truths(args.earlier), _truths(args.later)
    command = "python " + shlex.join(["tools/compare_runs.py", *sys.argv[1:]])
    lines = [
        "# The P1 ground truth between two runs",
        "",
        f"Command: `{command}`  ",
        "Each held-out subnet's measured time in the later run against the earlier one "
        "(anchor-scaled, median over each run's processes). Offset: the median change; "
        "debiased: the mean change once the offset is removed. In %. Error correlation: of "
        "the table's per-subnet errors (each run's median removed) between the two runs.",
        "",
        "| device | subnets | offset | mean change | debiased | within 5% | within 5%, "
        "debiased | offset, every-task subnets | offset, one-task subnets | error correlation |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for device in sorted(set(a) & set(b)):
        c = compare(a[device], b[device])
        lines.append(
            f"| {device} | {c['n']} | {c['offset']:+.2f} | {c['mean']:.2f} | "
            f"{c['debiased']:.2f} | {100 * c['within_5']:.0f}% | "
            f"{100 * c['debiased_within_5']:.0f}% | {c['every_task']:+.2f} | "
            f"{c['one_task']:+.2f} | {c['error_correlation']:.2f} |"
        )
    write_results(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
