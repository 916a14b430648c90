"""Does a TVM subnet's time over the anchor move with the minutes, in one process?

Held out on the AMD host, the tiny TVM table's every-task subnets moved 14.6% between
processes over the anchor, timed beside the same neighbours in each
(`bench_latency-ufo_vit_tiny-amd-tvm-fixed-order`), and three builds of one subnet in one
process agree within 2% (`check_tvm_builds`). This builds a few of those subnets and the
anchor once, in one process, and times them interleaved `--timings` times with `--pause`
seconds between: if their anchor-scaled times move as much over the minutes as between
processes, the machine's state moves them, not the process.

Each subnet's spread is also given over an every-task subnet of the same timing
(`--reference`, its index) instead of the anchor: does a large reference move with them?
`--threads` times on another thread count than the device profile's (1: no worker thread to
wait for).

    python tools/check_tvm_minutes.py [--subnets 3,7,11,15,19,23,0,1,2] [--timings 4]
        [--pause 120] [--reference 15] [--threads N] [--out FILE]
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from bench_latency import HELD_OUT_SEED, _as_exported
from check_tvm_builds import DEVICE, chosen_subnets, held_out_parser
from results_io import write_results

from ufo_nas.hardware import host_fingerprint, host_id
from ufo_nas.latency.measure import Profiler, ProfileSettings
from ufo_nas.latency.timing import (
    cpu_load_ticks,
    cpu_steal_ticks,
    others_percent,
    steal_percent,
    time_interleaved,
)

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = held_out_parser(__doc__, "3,7,11,15,19,23,0,1,2")
    parser.add_argument("--timings", type=int, default=4, help="interleaved timings of all")
    parser.add_argument("--pause", type=float, default=120.0, help="seconds between timings")
    parser.add_argument(
        "--reference", type=int, default=15, help="a chosen subnet to scale by as well"
    )
    parser.add_argument("--threads", type=int, help="threads (default: the device profile's)")
    parser.add_argument("--out", default=str(ROOT / "tools/results/check_tvm_minutes.md"))
    args = parser.parse_args()
    began = time.perf_counter()
    space, held_out, chosen = chosen_subnets(parser, args)
    if args.reference not in chosen:
        parser.error(f"--reference {args.reference} is not among --subnets {args.subnets}")
    settings = ProfileSettings()
    profile = _as_exported(DEVICE, space)
    if args.threads is not None:
        profile = replace(profile, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        profiler = Profiler(space, profile, Path(tmp))
        models = {str(k): profiler.compile_subnet(*held_out[k]) for k in chosen}
        models["anchor"] = profiler.anchor()
        timings, started, steal, others = [], [], [], []
        for t in range(args.timings):
            if t:
                time.sleep(args.pause)
            started.append(time.perf_counter() - began)
            stolen_before, load_before = cpu_steal_ticks(), cpu_load_ticks()
            timings.append(
                time_interleaved(
                    {name: runner for name, (runner, _) in models.items()},
                    {name: x for name, (_, x) in models.items()},
                    settings.rounds,
                    settings.calls_per_round,
                    seed=t,
                    warm_calls=settings.warm_calls,
                )
            )
            steal.append(steal_percent(stolen_before, cpu_steal_ticks()))
            others.append(others_percent(load_before, cpu_load_ticks()))
        profiler.close()
    anchor = np.array([timing["anchor"].ms for timing in timings])
    lines = [
        "# TVM: one process's times over the anchor, minutes apart",
        "",
        f"Command: `{_tvm_environment()}"
        f"{shlex.join(['python', 'tools/check_tvm_minutes.py', *sys.argv[1:]])}`  ",
        f"Host {host_id(host_fingerprint())}; {len(chosen)} held-out subnets of {args.space} "
        f"(seed {HELD_OUT_SEED}) and the anchor, each built once in one process with the tuning "
        f"database of `{DEVICE}`, timed interleaved {args.timings} times ({settings.rounds} "
        f"rounds, {settings.calls_per_round} timed calls per visit), {args.pause:.0f} s apart "
        f"(timings began at {', '.join(f'{s:.0f}' for s in started)} s); "
        f"{time.perf_counter() - began:.0f} s in all. Anchor ms per timing: "
        f"{', '.join(f'{a:.3f}' for a in anchor)}. Threads: {profile.threads or 'all cores'}. "
        f"Steal % per timing: {_percents(steal)}; other processes' share of the CPUs: "
        f"{_percents(others)}.",
        "",
        "| subnet | serves | ms over the anchor, per timing | spread over the minutes | "
        f"spread over subnet {args.reference} |",
        "|---|---|---|---|---|",
    ]
    reference = np.array([timing[str(args.reference)].ms for timing in timings])
    for k in chosen:
        _, tasks = held_out[k]
        ms = np.array([timing[str(k)].ms for timing in timings])
        scaled = ms / anchor
        cells = ", ".join(f"{s:.3f}" for s in scaled)
        over_reference = "" if k == args.reference else f"{_spread(ms / reference):.1f}%"
        lines.append(
            f"| {k} | {', '.join(tasks)} | {cells} | {_spread(scaled):.1f}% | {over_reference} |"
        )
    lines += [
        "",
        "Spread: max / min - 1 of a subnet's anchor-scaled times, the measure "
        "`bench_latency-ufo_vit_tiny-amd-tvm-fixed-order` gives between processes "
        "(every-task subnets 14.6%, one-task 4.5%).",
    ]
    write_results(lines, Path(args.out))
    return 0


def _spread(scaled: np.ndarray) -> float:
    """max / min - 1 of a subnet's scaled times, in %."""
    return float(100 * (scaled.max() / scaled.min() - 1))


def _tvm_environment() -> str:
    """The TVM_* variables set for this run (its thread pool reads them), as a prefix."""
    chosen = sorted((k, v) for k, v in os.environ.items() if k.startswith("TVM_"))
    return "".join(f"{k}={shlex.quote(v)} " for k, v in chosen)


def _percents(values: list[float | None]) -> str:
    return ", ".join("?" if v is None else f"{v:.1f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
