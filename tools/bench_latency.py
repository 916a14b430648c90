"""P1: latency-table accuracy on held-out subnets, and each backend against torch eager.

For every CPU device with a shipped table, in this one process: compile 50 random subnets
(a seed the table's own validation did not use) with the device's backend and with torch
eager, time them interleaved with the table's anchor subnet in chunks, scale each chunk by
its anchor to the table's reference, and compare with the table's prediction. Writes a
Markdown table.

    python tools/bench_latency.py --space ufo_vit_tiny [--subnets 50] [--devices DEV,...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from results_io import write_results
from tqdm import tqdm

from ufo_nas import load_space
from ufo_nas.backends import get_backend
from ufo_nas.backends.torch_eager import TorchBackend
from ufo_nas.hardware import host_fingerprint, load_profile
from ufo_nas.latency.measure import Profiler, ProfileSettings, validation_subnets
from ufo_nas.latency.predictor import LatencyPredictor
from ufo_nas.latency.table import LatencyTable, table_path
from ufo_nas.latency.timing import time_interleaved

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT_SEED = 1000


def bench_device(space, device: str, n: int, settings: ProfileSettings, work: Path) -> dict:
    profile = load_profile(device)
    table = LatencyTable.load(table_path(device, space), space)
    predictor = LatencyPredictor(space, table)
    profiler = Profiler(space, profile, work / device)
    eager = TorchBackend(load_profile("cpu-torch").target())
    subnets = validation_subnets(space, n, HELD_OUT_SEED)
    measured, speedup, predicted = [], [], []
    for start in tqdm(range(0, n, settings.chunk), desc=device, unit="chunk"):
        chunk = subnets[start : start + settings.chunk]
        models, eager_models = {}, {}
        for k, (arch, tasks) in enumerate(chunk):
            models[f"subnet-{k}"] = profiler.compile_subnet(arch, tasks)
            eager_models[f"subnet-{k}"] = eager.compile(profiler.subnet(arch, tasks), None, work)
            predicted.append(predictor.latency_ms([arch], tasks)[0])
        timings, anchor_ms, _ = profiler.time_chunk(models, settings)
        # torch eager right after, in a chunk of its own: its OpenMP threads spin after each
        # call and would slow the backend's models if interleaved with them
        images = {name: profiler.images.numpy() for name in eager_models}
        eager_timings = time_interleaved(eager_models, images, settings.rounds)
        for name in models:
            measured.append(table.scaled_ms(timings[name].ms, anchor_ms))
            speedup.append(eager_timings[name].ms / timings[name].ms)
    measured = np.asarray(measured)
    predicted = np.asarray(predicted)
    error = np.abs(predicted - measured) / measured
    return {
        "device": device,
        "backend": profile.backend,
        "versions": get_backend(profile.backend).versions(),
        "n": n,
        "within_5": float((error <= 0.05).mean()),
        "within_10": float((error <= 0.10).mean()),
        "mape": float(100 * error.mean()),
        "max_error": float(100 * error.max()),
        "median_ms": float(np.median(measured)),
        "speedup_vs_torch": float(np.median(speedup)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="ufo_vit_tiny")
    parser.add_argument("--subnets", type=int, default=50)
    parser.add_argument("--devices", help="comma-separated (default: every cpu-* table shipped)")
    parser.add_argument("--out", help="default tools/results/bench_latency-<space>.md")
    args = parser.parse_args()
    space = load_space(args.space)
    devices = (
        args.devices.split(",")
        if args.devices
        else sorted(
            p.parent.name
            for p in (ROOT / "latency_tables").glob(f"cpu-*/{space.name}.yaml")
            if p.parent.name != "cpu-torch"
        )
    )
    settings = ProfileSettings()
    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            rows.append(bench_device(space, device, args.subnets, settings, Path(tmp)))
    host = host_fingerprint()
    lines = [
        f"# Latency tables vs end-to-end measurement: {space.name}",
        "",
        f"Command: `python tools/bench_latency.py --space {space.name} --subnets {args.subnets}`  ",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {host['cpu']}, {host['cores']} "
        f"cores; torch {torch.__version__}; {time.time() - started:.0f} s in all  ",
        f"{args.subnets} held-out random subnets per device (seed {HELD_OUT_SEED}; every 4th "
        "serves all tasks on one trunk), measured end to end in this one process, interleaved "
        "in chunks of 8 with the anchor subnet; predictions from the shipped table. Speed-up: "
        "median over the subnets of torch eager ms / backend ms, eager timed in a chunk of its "
        "own right after the backend's.",
        "",
        "| device | backend | within 5% | within 10% | mean error | max error | median ms | "
        "speed-up vs torch eager |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items())
        lines.append(
            f"| {r['device']} | {versions} | {100 * r['within_5']:.0f}% | "
            f"{100 * r['within_10']:.0f}% | {r['mape']:.2f}% | {r['max_error']:.1f}% | "
            f"{r['median_ms']:.2f} | {r['speedup_vs_torch']:.2f}x |"
        )
    out = (
        Path(args.out)
        if args.out
        else ROOT / "tools" / "results" / f"bench_latency-{space.name}.md"
    )
    write_results(lines, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
