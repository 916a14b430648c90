"""A reference's table time from its own row, or from four rows of its kind: held-out scores.

A measurement against a table (P1, `--verify`, an export's re-timing) scales each model by
the anchor and the table's two reference subnets timed beside it, interpolated to the
model's size (`matched_anchor_ms`): a model of the large reference's size lands at its time
over the reference's, times the reference's table time. That table time was its own
validation row until 2026-12-07, one timing in one chunk; it is now its fitted time times
the median measured-to-fitted ratio of the four validation subnets serving as many tasks
nearest its size (`LatencyPredictor.references_of`). No timing here: each committed P1 run
(`tools/bench_latency.py`'s JSON, which keeps every raw time, anchor and reference time) is
scored again both ways with the table it scored, as it was then.

    python tools/bench_reference_times.py [RESULTS.json ...] [--out FILE]
        (default: every tools/results/bench_latency-*.json)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from bench_calibration import scored_table_of, table_label
from results_io import command_line, p1_runs_and_out, write_results

from ufo_nas import SearchSpace, load_space
from ufo_nas.latency.measure import implied_anchor_ms, matched_anchor_ms
from ufo_nas.latency.predictor import LatencyPredictor
from ufo_nas.latency.table import LatencyTable, ReferenceSubnet

ROOT = Path(__file__).resolve().parents[1]
WAYS = ("own row", "four rows of its kind")


def own_rows(table: LatencyTable, pairs: list) -> list[ReferenceSubnet]:
    """The references with their own validation rows' times (the way before 2026-12-07)."""
    own = {(arch, tasks): ms for arch, tasks, ms in table.validation_times()}
    anchor = table.reference_anchor_ms
    return [ReferenceSubnet(arch, tasks, own[arch, tasks] / anchor) for arch, tasks in pairs]


def with_references(
    files: list[Path],
) -> Iterator[tuple[Path, SearchSpace, dict, LatencyTable, list[ReferenceSubnet]]]:
    """Each entry of these P1 runs that timed references and whose table is at hand as it
    was then (`scored_table_of`): its run's path, space, the entry, that table and the
    references with their four-row table times."""
    for path in files:
        space = load_space(path.stem.removeprefix("bench_latency-").split("-")[0])
        for entry in json.loads(path.read_text()):
            table = scored_table_of(space, entry) if entry.get("references") else None
            if table is None:
                continue
            pairs = [(r["arch"], tuple(r["tasks"])) for r in entry["references"]]
            four = LatencyPredictor(space, table).references_of(pairs)
            if four:
                yield path, space, entry, table, four


def process_times(
    entry: dict, table: LatencyTable, references: list[ReferenceSubnet]
) -> np.ndarray:
    """Each held-out subnet's time on the table's scale per process of the entry (rows:
    subnets, columns: processes), as `tools/bench_latency.py` puts it: each timing scaled by
    what its chunk's anchor and references imply for the subnet's size, then the median of
    each process's repeats."""
    reference, processes = table.reference_anchor_ms, entry.get("processes", {"n": 1})["n"]
    times = []
    for row in entry["per_subnet"]:
        size = row["predicted_ms"] / reference
        timed = zip(row["ms"], row["anchor_alone_ms"], row["reference_ms"], strict=True)
        anchors = [(ms, implied_anchor_ms(a, references, r), r) for ms, a, r in timed]
        scale = [matched_anchor_ms(a, references, r, size) for _, a, r in anchors]
        scaled = [ms * reference / x for (ms, _, _), x in zip(anchors, scale, strict=True)]
        times.append(np.median(np.reshape(scaled, (processes, -1)), axis=1))
    return np.array(times)


def score(entry: dict, table: LatencyTable, references: list[ReferenceSubnet]) -> dict:
    """The entry's held-out subnets scored with these references' times (per process the
    median of repeats, then the median over processes)."""
    measured = np.median(process_times(entry, table, references), axis=1)
    predicted = np.array([row["predicted_ms"] for row in entry["per_subnet"]])
    error = np.abs(predicted / measured - 1)
    every = np.array([len(row["tasks"]) > 1 for row in entry["per_subnet"]])
    return {
        "within_5": float((error <= 0.05).mean()),
        "within_10": float((error <= 0.10).mean()),
        "mape": 100 * float(error.mean()),
        "every_task_5": float((error[every] <= 0.05).mean()),
    }


def main() -> int:
    files, out = p1_runs_and_out(__doc__.split("\n\n")[0], "bench_reference_times.md")
    lines = [
        "# References' table times: their own row, or four rows of their kind",
        "",
        f"Command: `{command_line('tools/bench_reference_times.py')}`  ",
        "Each committed P1 run whose table is at hand and unchanged, its held-out subnets "
        "scaled by size (`matched_anchor_ms`) with the references' table times taken each way: "
        "within 5% / within 10% / mean error, and within 5% of the subnets serving every task. "
        "`row - four` is each reference's own row over its four-row time (one-task, "
        "every-task).",
        "",
        "| P1 run | device | table | row - four | "
        + " | ".join(f"{way}: all | {way}: every task" for way in WAYS)
        + " |",
        "|---|---|---|---|" + "---|---|" * len(WAYS),
    ]
    totals: dict[str, list[dict[str, dict]]] = {}
    for path, space, entry, table, four in with_references(files):
        pairs = [(ref.arch, ref.tasks) for ref in four]
        row = own_rows(table, pairs)
        scores = {way: score(entry, table, refs) for way, refs in zip(WAYS, (row, four))}
        totals.setdefault(space.name, []).append(scores)
        offsets = ", ".join(f"{100 * (r.anchors / f.anchors - 1):+.1f}%" for r, f in zip(row, four))
        label = table_label(entry)
        cells = " | ".join(
            f"{100 * s['within_5']:.0f}% / {100 * s['within_10']:.0f}% / {s['mape']:.2f}% | "
            f"{100 * s['every_task_5']:.0f}%"
            for s in scores.values()
        )
        lines.append(
            f"| {path.stem.removeprefix('bench_latency-')} | {entry['device']} | {label} | "
            f"{offsets} | {cells} |"
        )
    lines += [
        "",
        "Mean over the runs above:",
        "",
        "| space | runs | references' time | within 5% | within 10% | mean error "
        "| every task within 5% |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in totals.items():
        for way in WAYS:
            mean = {k: float(np.mean([run[way][k] for run in runs])) for k in runs[0][way]}
            lines.append(
                f"| {name} | {len(runs)} | {way} | {100 * mean['within_5']:.1f}% | "
                f"{100 * mean['within_10']:.1f}% | {mean['mape']:.2f}% | "
                f"{100 * mean['every_task_5']:.1f}% |"
            )
    write_results(lines, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
