"""Does TVM build the same subnet alike twice? Build variance against timing noise.

Held out on the AMD host (`bench_latency-ufo_vit_tiny-amd-tvm-processes`), the tiny TVM table
misses mostly on subnets that serve every task on one trunk: their time moved 16% between
processes (one-task subnets: 5%). Each process compiles every subnet anew, reading the tuning
database `ufo profile` left, as `ufo export` does. This builds each of a few held-out
subnets `--builds` times in one process (each build in a folder of its own, as a new
process would), then times every build interleaved, twice. If the builds of one subnet
differ by more than the two timings of one build do, the variance is TVM's build, not the
machine's.

    python tools/check_tvm_builds.py [--subnets 31,51,55,0,1,2] [--builds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_latency import HELD_OUT_SEED, _as_exported
from results_io import write_results

from ufo_nas import load_space
from ufo_nas.hardware import host_fingerprint, host_id
from ufo_nas.latency.measure import Profiler, ProfileSettings, validation_subnets
from ufo_nas.latency.timing import time_interleaved
from ufo_nas.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = 56  # bench_latency's held-out subnets (50 rounded up to whole chunks of 8)
DEVICE = "cpu-tvm"


def held_out_parser(doc: str, subnets: str) -> argparse.ArgumentParser:
    """A parser of `--space` and `--subnets` (indices into bench_latency's held-out subnets,
    `subnets` by default), described by the first line of `doc`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--space", default="ufo_vit_tiny")
    parser.add_argument(
        "--subnets",
        default=subnets,
        help="indices into bench_latency's held-out subnets (every 4th from 3 serves all tasks)",
    )
    return parser


def chosen_subnets(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[SearchSpace, list, list[int]]:
    """The space, bench_latency's held-out subnets of it, and the indices `--subnets` names
    (a usage error where one is not an index of them)."""
    space = load_space(args.space)
    held_out = validation_subnets(space, HELD_OUT, HELD_OUT_SEED)
    indices = args.subnets.split(",")
    if not all(k.isdigit() and int(k) < len(held_out) for k in indices):
        parser.error(
            f"--subnets {args.subnets}: expected comma-separated indices 0-{len(held_out) - 1}"
        )
    return space, held_out, [int(k) for k in indices]


def main() -> int:
    parser = held_out_parser(__doc__, "31,51,55,0,1,2")
    parser.add_argument("--builds", type=int, default=3, help="builds of each subnet")
    parser.add_argument("--out", default=str(ROOT / "tools/results/check_tvm_builds.md"))
    args = parser.parse_args()
    began = time.perf_counter()
    space, held_out, chosen = chosen_subnets(parser, args)
    profile = _as_exported(DEVICE, space)  # reads the tuning database, as `ufo export` does
    settings = ProfileSettings()
    runners, inputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for b in range(args.builds):
            profiler = Profiler(space, profile, Path(tmp) / f"build-{b}")
            for k in chosen:
                arch, tasks = held_out[k]
                name = f"{k}/{b}"
                runners[name], inputs[name] = profiler.compile_subnet(arch, tasks)
        timings = [
            time_interleaved(
                runners,
                inputs,
                settings.rounds,
                settings.calls_per_round,
                seed=repeat,
                warm_calls=settings.warm_calls,
            )
            for repeat in range(2)
        ]
    lines = [
        "# TVM: builds of one subnet against timings of one build",
        "",
        f"Command: `{shlex.join(['python', 'tools/check_tvm_builds.py', *sys.argv[1:]])}`  ",
        f"Host {host_id(host_fingerprint())}; {len(chosen)} held-out subnets of {args.space} "
        f"(seed {HELD_OUT_SEED}), each built {args.builds} times in one process with the "
        f"tuning database of `{DEVICE}`, every build timed interleaved twice "
        f"({settings.rounds} rounds, {settings.calls_per_round} timed calls per visit); "
        f"{time.perf_counter() - began:.0f} s in all.",
        "",
        "| subnet | serves | ms per build (timing 1 / timing 2) | between builds "
        "| between timings |",
        "|---|---|---|---|---|",
    ]
    for k in chosen:
        _, tasks = held_out[k]
        ms = np.array([[t[f"{k}/{b}"].ms for t in timings] for b in range(args.builds)])
        build_ms = ms.mean(axis=1)
        between_builds = 100 * (build_ms.max() - build_ms.min()) / np.median(build_ms)
        between_timings = 100 * np.mean(np.abs(ms[:, 0] - ms[:, 1]) / ms.mean(axis=1))
        cells = ", ".join(f"{a:.3f} / {c:.3f}" for a, c in ms)
        lines.append(
            f"| {k} | {', '.join(tasks)} | {cells} | {between_builds:.1f}% | "
            f"{between_timings:.1f}% |"
        )
    lines += [
        "",
        "Between builds: (max - min) / median of each build's mean time; between timings: the "
        "mean distance of one build's two timings from each other, over its builds.",
    ]
    write_results(lines, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
