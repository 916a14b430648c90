"""One table's P1 over processes run apart: the table against their median, each process's noise.

A one-process P1 score mixes the table's error with that process's own: on a shared 2-vCPU
host a subnet's time moves between processes by itself (a session's memory layout, the
neighbours' load while its chunk ran). Committed P1 runs (`tools/bench_latency.py`'s JSON)
that timed the same held-out subnets against the same table on the same host kind are pooled
here, each of their processes one column: the table is scored against the median over all of
them, and each process alone. Each process's distance from that median is split into the
part its whole chunk shares (the mean over the chunk's subnets: the chunk's scale was off)
and the rest (each subnet's own). Times are put on the table's scale as bench_latency does,
with the references' four-row table times. No timing here. With few processes the median
still holds some of their noise, so the table's error against it is an upper bound. The JSON
does not record how its subnets were timed (weights, rounds): name runs of one protocol.

    python tools/pool_p1_runs.py [RESULTS.json ...] [--out FILE]
        (default: every tools/results/bench_latency-*.json)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bench_calibration import table_label
from bench_reference_times import process_times, with_references
from results_io import command_line, p1_runs_and_out, write_results

from ufo_nas.hardware import host_id


@dataclass
class Pool:
    """One table's held-out subnets and the processes that timed them."""

    space: str
    device: str
    host: str
    table: str
    predicted: np.ndarray
    every_task: np.ndarray
    times: list[np.ndarray] = field(default_factory=list)  # per process: each subnet's time
    chunks: list[np.ndarray] = field(default_factory=list)  # per process: each subnet's chunk
    names: list[str] = field(default_factory=list)  # per process: run, and process in it


def chunks_of(entry: dict) -> list[np.ndarray]:
    """Per process of the entry, each subnet's chunk: the subnets timed beside one anchor
    share its first time there."""
    processes = entry.get("processes", {"n": 1})["n"]
    repeats = len(entry["per_subnet"][0]["anchor_alone_ms"]) // processes
    out = []
    for k in range(processes):
        first = [row["anchor_alone_ms"][k * repeats] for row in entry["per_subnet"]]
        out.append(np.unique(first, return_inverse=True)[1])
    return out


def pools_of(files: list[Path]) -> list[Pool]:
    """The committed runs grouped by space, device, host kind, held-out subnets and table
    (the same predictions for them); only groups of two processes or more."""
    pools: dict[tuple, Pool] = {}
    for path, space, entry, table, references in with_references(files):
        rows = entry["per_subnet"]
        predicted = np.array([row["predicted_ms"] for row in rows])
        host = host_id(entry.get("host", {}))
        key = (
            space.name,
            entry["device"],
            host,
            tuple((row["arch"], tuple(row["tasks"])) for row in rows),
            tuple(np.round(predicted, 6)),
        )
        label = table_label(entry)
        pool = pools.setdefault(
            key,
            Pool(
                space.name,
                entry["device"],
                host,
                label,
                predicted,
                np.array([len(row["tasks"]) == len(space.tasks) for row in rows]),
            ),
        )
        times = process_times(entry, table, references)
        run = path.stem.removeprefix(f"bench_latency-{space.name}-")
        for k, chunk in enumerate(chunks_of(entry)):
            pool.times.append(times[:, k])
            pool.chunks.append(chunk)
            pool.names.append(run if times.shape[1] == 1 else f"{run} ({k + 1})")
    return [pool for pool in pools.values() if len(pool.times) > 1]


def scores(predicted: np.ndarray, measured: np.ndarray) -> tuple[float, float, float, float]:
    """Within 5%, within 10%, mean and max error (%)."""
    error = np.abs(predicted / measured - 1)
    return (error <= 0.05).mean(), (error <= 0.10).mean(), 100 * error.mean(), 100 * error.max()


def main() -> int:
    files, out = p1_runs_and_out(__doc__.split("\n\n")[0], "pool_p1_runs.md")
    lines = [
        "# One table's P1 over processes run apart",
        "",
        f"Command: `{command_line('tools/pool_p1_runs.py')}`  ",
        "Committed P1 runs that timed the same held-out subnets against the same table on the "
        "same host kind, each of their processes one column, times scaled by size with the "
        "references' four-row table times. The table against the median over all processes: "
        "within 5% / within 10% / mean / max error, bias (median signed), within 5% of the "
        "subnets serving every task; each process alone: within 5%.",
        "",
        "| space | device | host | table | processes | median over processes | bias | every "
        "task within 5% | each process alone: within 5% |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    noise = [
        "",
        "Each process: scored alone (within 5% / mean error), its mean distance from the median "
        "over processes (noise), and that distance split: the part its chunk shares (mean "
        "|chunk mean|) and each subnet's own (mean |distance - chunk mean|).",
        "",
        "| space | device | host | table | process | alone | noise | chunk's share "
        "| subnet's own |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for pool in pools_of(files):
        times = np.array(pool.times)
        median = np.median(times, axis=0)
        within_5, within_10, mape, worst = scores(pool.predicted, median)
        signed = pool.predicted / median - 1
        every = np.abs(signed[pool.every_task]) <= 0.05
        alone = [scores(pool.predicted, t) for t in times]
        lines.append(
            f"| {pool.space} | {pool.device} | {pool.host} | {pool.table} | {len(times)} | "
            f"{100 * within_5:.0f}% / {100 * within_10:.0f}% / {mape:.2f}% / {worst:.1f}% | "
            f"{100 * np.median(signed):+.2f}% | {100 * every.mean():.0f}% | "
            + ", ".join(f"{100 * a[0]:.0f}%" for a in alone)
            + " |"
        )
        for name, t, chunk, a in zip(pool.names, times, pool.chunks, alone, strict=True):
            distance = 100 * (t / median - 1)
            shared = np.array([distance[chunk == c].mean() for c in chunk])
            noise.append(
                f"| {pool.space} | {pool.device} | {pool.host} | {pool.table} | {name} | "
                f"{100 * a[0]:.0f}% / {a[2]:.2f}% | {np.abs(distance).mean():.2f}% | "
                f"{np.abs(shared).mean():.2f}% | {np.abs(distance - shared).mean():.2f}% |"
            )
    write_results(lines + noise, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
