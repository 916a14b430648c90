"""How many validation subnets a table needs: its fit on fewer, scored on held-out times.

A table's calibration is fitted on its validation subnets (40, in chunks of 8), and on
ViT-Base each chunk costs about 2 minutes of `ufo profile` (a minute building, 70 s timing):
a sixth of P5's 15 minutes. What would fewer cost in accuracy? No timing here: each table
that a committed P1 run (`tools/bench_latency.py`'s JSON) scored is refitted on the first
n of its validation subnets (what a build with `--validation n` times: `validation_subnets`
draws the same first n for any count), and on every 4 of its 5 chunks (another draw of 32),
and predicts that run's held-out subnets (50+, timed in a later process). The held-out
times are put on the smaller table's reference scale (its anchor median moves with its
rows); their size-matched scale keeps the references the run timed, which a table of fewer
subnets might have picked otherwise.

    python tools/bench_validation_count.py [RESULTS.json ...] [--out FILE]
        (default: every tools/results/bench_latency-*.json)
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
from bench_calibration import measured_ms, scored_table_of, table_label
from results_io import command_line, p1_runs_and_out, write_results

from ufo_nas import load_space
from ufo_nas.latency.measure import calibrate
from ufo_nas.latency.predictor import LatencyPredictor
from ufo_nas.latency.table import LatencyTable, Regressors, calibrated_ms

ROOT = Path(__file__).resolve().parents[1]
COUNTS = (40, 32, 24, 16)
CHUNK = 8  # validation subnets per chunk (`ProfileSettings.chunk`)


def fewer(space, table: LatencyTable, keep: list[tuple[str, tuple[str, ...]]]) -> LatencyTable:
    """A copy of `table` whose validation rows are those of the subnets `keep`, refitted."""
    kept = set(keep)
    smaller = copy.deepcopy(table)
    smaller.validation = [row for row in table.validation if (row.arch, tuple(row.tasks)) in kept]
    calibrate(space, smaller)
    return smaller


def held_out_score(space, full: LatencyTable, table: LatencyTable, entry: dict) -> dict:
    """`table`'s prediction of the entry's held-out subnets, against their times on its scale."""
    rows = entry["per_subnet"]
    predictor = LatencyPredictor(space, table)
    x = Regressors.stack([predictor.regressors([space.parse(r["arch"])], r["tasks"]) for r in rows])
    rescale = table.reference_anchor_ms / full.reference_anchor_ms
    measured = measured_ms(rows, full.reference_anchor_ms) * rescale
    signed = calibrated_ms(table.calibration, x) / measured - 1
    error = np.abs(signed)
    return {
        "within_5": float((error <= 0.05).mean()),
        "within_10": float((error <= 0.10).mean()),
        "mape": 100 * float(error.mean()),
        "bias": 100 * float(np.median(signed)),
        "in_sample_5": float(table.metrics["within_5pct"]),
    }


def cell(score: dict) -> str:
    within = f"{100 * score['within_5']:.0f}% / {100 * score['within_10']:.0f}%"
    return f"{within} / {score['mape']:.2f}%"


def rows_of(path: Path, entry: dict, space, table: LatencyTable) -> tuple[str, dict[str, dict]]:
    """The results row of one entry, and its scores by count ("40" ... and "32, any 4 chunks")."""
    order = [(arch, tasks) for arch, tasks, _ in table.validation_times()]
    scores = {
        str(n): held_out_score(space, table, fewer(space, table, order[:n]), entry)
        for n in COUNTS
        if n <= len(order)
    }
    chunks = [order[k : k + CHUNK] for k in range(0, len(order), CHUNK)]
    others = [[p for c in chunks if c is not dropped for p in c] for dropped in chunks]
    drops = [held_out_score(space, table, fewer(space, table, kept), entry) for kept in others]
    five = [100 * s["within_5"] for s in drops]
    scores["32, any 4 chunks"] = {key: float(np.mean([s[key] for s in drops])) for key in drops[0]}
    name = path.stem.removeprefix("bench_latency-")
    label = table_label(entry)
    counts = " | ".join(cell(scores[str(n)]) if str(n) in scores else "-" for n in COUNTS)
    line = (
        f"| {name} | {entry['device']} | {label} | {len(entry['per_subnet'])} | {counts} | "
        f"{min(five):.0f}-{max(five):.0f}% |"
    )
    return line, scores


def main() -> int:
    files, out = p1_runs_and_out(__doc__.split("\n\n")[0], "bench_validation_count.md")
    lines = [
        "# Validation subnets: how many a table's fit needs",
        "",
        f"Command: `{command_line('tools/bench_validation_count.py')}`  ",
        "Each table a committed P1 run scored, refitted on the first n of its validation "
        "subnets (a build with n times those), predicting that run's held-out subnets: within "
        "5% / within 10% / mean error. The last column: within 5% over the five fits on 4 of "
        "the 5 chunks (32 subnets, another draw). Runs whose table changed since are left out.",
        "",
        "| P1 run | device | table | held out | "
        + " | ".join(f"{n} subnets" for n in COUNTS)
        + " | 32, any 4 chunks: within 5% |",
        "|---|---|---|---|" + "---|" * len(COUNTS) + "---|",
    ]
    by_space: dict[str, list[dict[str, dict]]] = {}
    for path in files:
        space = load_space(path.stem.removeprefix("bench_latency-").split("-")[0])
        for entry in json.loads(path.read_text()):
            table = scored_table_of(space, entry)
            if table is None or len(table.validation_times()) < max(COUNTS):
                continue
            line, scores = rows_of(path, entry, space, table)
            lines.append(line)
            by_space.setdefault(space.name, []).append(scores)
    lines += [
        "",
        "Mean over the runs above (within 5% / within 10% / mean error / bias; in sample "
        "within 5%):",
        "",
        "| space | runs | subnets | within 5% | within 10% | mean error | bias "
        "| in sample within 5% |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in by_space.items():
        for key in runs[0]:
            mean = {k: float(np.mean([run[key][k] for run in runs])) for k in runs[0][key]}
            lines.append(
                f"| {name} | {len(runs)} | {key} | {100 * mean['within_5']:.1f}% | "
                f"{100 * mean['within_10']:.1f}% | {mean['mape']:.2f}% | {mean['bias']:+.2f}% | "
                f"{100 * mean['in_sample_5']:.1f}% |"
            )
    write_results(lines, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
