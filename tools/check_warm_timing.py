"""Cold or warm: how a subnet's time depends on what ran just before it.

Interleaved timing visits each model of a chunk in turn. Before 2026-12-05 each visit was one
timed call, so every call ran cold: right after the other models, with its weights and code
out of the caches. An engine serving one model runs warm. This times the anchor and
`--subnets` random subnets of each device in one process, built as `ufo profile` builds them,
three ways, twice each in turn:

- cold: one timed call per visit (`warm_calls=0`, the timing before 2026-12-05);
- warm: 3 untimed calls, then 2 timed ones per visit (`ProfileSettings`, shipped);
- deep warm: 10 untimed calls, then 20 timed ones per visit (as a benchmark loop runs).

It reports each way's anchor time, each subnet's time over the anchor's against deep warm's
(the error a table timed that way carries into every prediction), and how far each way's
ratios moved between its two repeats.

    python tools/check_warm_timing.py [--space ufo_vit_tiny] [--subnets 8]
        [--devices cpu-onnxruntime,...] [--out FILE]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from results_io import command_line, rows_per_device, write_results

from ufo_nas import load_space
from ufo_nas.hardware import host_fingerprint, host_id, load_profile
from ufo_nas.latency.measure import Profiler, ProfileSettings, validation_subnets

ROOT = Path(__file__).resolve().parents[1]
SEED = 4242  # subnets none of the tables was fitted on
WAYS = {  # name: (rounds, timed calls per visit, untimed calls per visit)
    "cold (1 call per visit; before 2026-12-05)": (41, 1, 0),
    "warm (3 untimed, 2 timed; shipped)": (ProfileSettings().rounds, 2, 3),
    "deep warm (10 untimed, 20 timed)": (5, 20, 10),
}
REFERENCE = "deep warm (10 untimed, 20 timed)"
DEVICES = "cpu-onnxruntime,cpu-onnxruntime-int8,cpu-openvino,cpu-openvino-bf16"


def time_device(device: str, space_name: str, subnets: int) -> dict[str, list[np.ndarray]]:
    """Per way, per repeat: the anchor's ms followed by each subnet's ms."""
    space = load_space(space_name)
    with tempfile.TemporaryDirectory() as work:
        profiler = Profiler(space, load_profile(device), Path(work))
        try:
            models = {
                f"s{k}": profiler.compile_subnet(arch, tasks)
                for k, (arch, tasks) in enumerate(validation_subnets(space, subnets, SEED))
            }
            out: dict[str, list[np.ndarray]] = {way: [] for way in WAYS}
            for repeat in range(2):
                for way, (rounds, calls, warm) in WAYS.items():
                    settings = ProfileSettings(
                        rounds=rounds,
                        calls_per_round=calls,
                        warm_calls=warm,
                        chunk_seconds=None,
                        max_others_percent=None,
                        seed=repeat,
                    )
                    timings, anchor_ms, _ = profiler.time_chunk(models, settings)
                    out[way].append(np.array([anchor_ms, *(t.ms for t in timings.values())]))
        finally:
            profiler.close()
    return out


def rows_of(device: str, times: dict[str, list[np.ndarray]]) -> list[str]:
    """Table rows of one device: each way against deep warm."""
    reference = np.median([t[1:] / t[0] for t in times[REFERENCE]], axis=0)
    rows = []
    for way, repeats in times.items():
        ratios = np.array([t[1:] / t[0] for t in repeats])
        off = 100 * (np.median(ratios, axis=0) / reference - 1)
        moved = 100 * np.abs(np.log(ratios[0] / ratios[1]))
        anchor = float(np.median([t[0] for t in repeats]))
        subnet = float(np.median([np.median(t[1:]) for t in repeats]))
        rows.append(
            f"| {device} | {way} | {anchor:.3f} | {subnet:.3f} | {off.mean():+.1f}% | "
            f"{np.abs(off).mean():.1f}% | {off[np.argmax(np.abs(off))]:+.1f}% | "
            f"{moved.mean():.1f}% |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="ufo_vit_tiny")
    parser.add_argument("--subnets", type=int, default=8, help="random subnets per device")
    parser.add_argument("--devices", default=DEVICES, help="comma-separated device profiles")
    parser.add_argument("--out", type=Path, default=ROOT / "tools/results/check_warm_timing.md")
    args = parser.parse_args()
    if args.subnets < 2:
        parser.error(f"--subnets must be at least 2, not {args.subnets}")
    start = time.time()
    lines = rows_per_device(
        args.devices, lambda device: rows_of(device, time_device(device, args.space, args.subnets))
    )
    host, command = host_fingerprint(), command_line("tools/check_warm_timing.py")
    write_results(
        [
            "# Cold or warm timing (check_warm_timing)",
            "",
            f"Command: `{command}`  ",
            f"Date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; host "
            f"{host_id(host)} ({host.get('cpu')}, {host.get('cores')} cores); "
            f"{time.time() - start:.0f} s. The anchor and {args.subnets} random subnets of "
            f"{args.space} per device (seed {SEED}), built as `ufo profile` builds them, "
            "timed in one chunk per way and repeat, two repeats, in one process.",
            "",
            "Against deep warm: each subnet's time over the anchor's, timed this way, over "
            "the same ratio timed deep warm (the error a table timed this way carries). "
            "Moved: mean |change| of those ratios between the two repeats.",
            "",
            "| device | way | anchor ms | median subnet ms | against deep warm: mean | "
            "mean abs | worst | moved between repeats |",
            "|---|---|---|---|---|---|---|---|",
            *lines,
        ],
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
