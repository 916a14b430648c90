"""Latency predictor throughput: archs per second of `latency_ms` (search calls it millions
of times; the goal is >= 100,000/s). Writes tools/results/bench_latency_predictor.md.

    python tools/bench_latency_predictor.py [--device cpu-onnxruntime] [--n 200000]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from results_io import write_results

from ufo_nas import load_space
from ufo_nas.hardware import host_fingerprint
from ufo_nas.latency.predictor import latency_predictor

ROOT = Path(__file__).resolve().parents[1]
SPACES = ("ufo_vit_tiny", "ufo_vit_base")


def best_seconds(call, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu-onnxruntime")
    parser.add_argument("--n", type=int, default=200_000, help="random archs per call")
    args = parser.parse_args()
    host = host_fingerprint()
    lines = [
        "# Latency predictor throughput",
        "",
        f"Command: `python tools/bench_latency_predictor.py --device {args.device} --n {args.n}`  ",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {host['cpu']}, "
        f"{host['cores']} cores. One call of `latency_ms` on {args.n:,} random gene vectors, "
        "best of 3.",
        "",
        "| space | table | tasks on one trunk | archs/s |",
        "|---|---|---|---|",
    ]
    for name in SPACES:
        space = load_space(name)
        predictor = latency_predictor(space, args.device)
        kind = "measured" if predictor.measured else "roofline estimate"
        genes = space.sample_genes(np.random.default_rng(0), args.n)
        for tasks in ((space.tasks[0],), space.tasks):
            seconds = best_seconds(lambda p=predictor, g=genes, t=tasks: p.latency_ms(g, t))
            lines.append(f"| {name} | {kind} | {len(tasks)} | {args.n / seconds:,.0f} |")
    out = ROOT / "tools" / "results" / "bench_latency_predictor.md"
    write_results(lines, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
