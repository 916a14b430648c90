"""Pool committed P6 runs (`tools/bench_export.py` results) of one space: per export
(subnet x engine that a table predicts), its prediction error in each run and the median
over the runs, and each run's count within 5%. Does a miss repeat (the table's error) or
move between runs (the run's)? No timing: it reads the Markdown results files.

    python tools/pool_p6_runs.py RUN.md RUN.md ... [--out tools/results/FILE.md]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from results_io import command_line, write_results

ENGINES_HEADER = "| subnet | engine | ms |"
DATE = re.compile(r"^Date: (\d{4}-\d\d-\d\d \d\d:\d\d) UTC; ([^,]+),")
WITHIN = 5.0  # percent: the goal for a re-timed export (on the errors as printed, to 0.1)


def read_run(path: Path) -> tuple[str, dict[tuple[str, str], tuple[float, float]]]:
    """The run's date and host, and per (subnet, engine) its ms and prediction error (%)
    where a table predicts it. A file that is no P6 result exits with a one-line error."""
    if not path.is_file():
        sys.exit(f"error: {path}: no such file (name tools/bench_export.py results)")
    lines = path.read_text().splitlines()
    dated = [m for m in map(DATE.match, lines) if m]
    if not dated or ENGINES_HEADER not in "\n".join(lines):
        sys.exit(f"error: {path} is no tools/bench_export.py result (no date or engines table)")
    rows: dict[tuple[str, str], tuple[float, float]] = {}
    start = next(i for i, line in enumerate(lines) if line.startswith(ENGINES_HEADER)) + 2
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        subnet, engine, ms, error = cells[0], cells[1], cells[2], cells[-1]
        if error.endswith("%"):
            rows[subnet, engine] = float(ms), float(error.rstrip("%"))
    return f"{dated[0][1]} ({dated[0][2]})", rows


def report(paths: list[Path]) -> list[str]:
    runs = [read_run(p) for p in paths]
    exports = [key for key in runs[0][1] if all(key in rows for _, rows in runs)]
    if not exports:
        sys.exit("error: the runs share no export with a prediction (one space, one front?)")
    errors = np.array([[rows[key][1] for _, rows in runs] for key in exports])
    ms = np.array([[rows[key][0] for _, rows in runs] for key in exports])
    median = np.median(errors, axis=1)
    lines = [
        "# P6 runs pooled: does an export's prediction miss repeat?",
        "",
        f"Command: `{command_line('tools/pool_p6_runs.py')}`  ",
        f"{len(runs)} runs of {len(exports)} exports each (those a table predicts): "
        + "; ".join(
            f"{i + 1}. {p.name}, {date}" for i, (p, (date, _)) in enumerate(zip(paths, runs))
        )
        + ". Prediction error: (predicted - measured) / measured, as each run scored it.",
        "",
        "| subnet | engine | "
        + " | ".join(f"run {i + 1}" for i in range(len(runs)))
        + " | median | runs within 5% | ms: min-max over runs |",
        "|---|---|" + "---|" * (len(runs) + 3),
    ]
    for (subnet, engine), row, mid, times in zip(exports, errors, median, ms):
        within = int(np.sum(np.abs(row) <= WITHIN))
        lines.append(
            f"| {subnet} | {engine} | "
            + " | ".join(f"{e:+.1f}%" for e in row)
            + f" | {mid:+.1f}% | {within} of {len(runs)} | {times.min():.2f}-{times.max():.2f} |"
        )
    each = np.sum(np.abs(errors) <= WITHIN, axis=0)
    mixed = int(np.sum((errors.max(axis=1) > 0) & (errors.min(axis=1) < 0)))
    misses = np.abs(errors) > WITHIN
    lines += [
        "",
        "## Summary",
        "",
        f"- Within {WITHIN:g}% in each run: "
        + ", ".join(f"{n} of {len(exports)}" for n in each)
        + f"; the median over the runs: **{int(np.sum(np.abs(median) <= WITHIN))} of "
        f"{len(exports)}**, mean |median| {np.mean(np.abs(median)):.2f}%, max "
        f"{np.max(np.abs(median)):.1f}%.",
        f"- Misses: {int(misses.sum())} over the runs, on {int(misses.any(axis=1).sum())} "
        f"exports; an export missed in more than one run: "
        f"{int((misses.sum(axis=1) > 1).sum())}. Exports whose error changed sign between "
        f"runs: {mixed} of {len(exports)}.",
        f"- An export's error moves between runs by {np.mean(np.ptp(errors, axis=1)):.1f} "
        f"points on average (max - min over the runs); its time by "
        f"{100 * np.mean(ms.max(axis=1) / ms.min(axis=1) - 1):.0f}% (max / min - 1).",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="tools/bench_export.py results")
    parser.add_argument("--out", type=Path, help="Markdown file to write (default: print)")
    args = parser.parse_args()
    if len(args.runs) < 2:
        parser.error("name at least two runs of one space")
    lines = report(args.runs)
    if args.out:
        write_results(lines, args.out)
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
