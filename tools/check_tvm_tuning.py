"""How much MetaSchedule tuning per kernel do TVM's kernels need on this host?

Builds the same four models (the table's anchor, the largest subnet and two random ones) in
one process with each tuning budget, every budget into a fresh database of its own (0: TVM's
default schedules, untuned), and with the database `ufo-profile --device cpu-tvm` left in its
work folder (what profiling, `tools/bench_latency.py` and `ufo export` build with). Then it
times every build interleaved in several chunks. It reports what each budget cost in tuning
time and what it bought in speed and in steadiness of the largest-to-anchor ratio (a table
scales every time by the anchor).

    python tools/check_tvm_tuning.py [--space ufo_vit_tiny] [--budgets 0,4,16] [--out FILE]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from results_io import write_results

from ufo_nas import load_space
from ufo_nas.backends import get_backend
from ufo_nas.errors import UfoError
from ufo_nas.hardware import host_fingerprint, load_profile
from ufo_nas.latency.measure import Profiler, default_work_dir
from ufo_nas.latency.timing import time_interleaved

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "cpu-tvm"
PROFILED = "profile's database"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="ufo_vit_tiny")
    parser.add_argument(
        "--budgets", default="0,4,16", help="trials per kernel, comma-separated (default 0,4,16)"
    )
    parser.add_argument("--chunks", type=int, default=6, help="timed chunks (default 6)")
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds per chunk")
    parser.add_argument("--out", default=str(ROOT / "tools/results/check_tvm_tuning.md"))
    args = parser.parse_args()
    try:
        budgets = [int(b) for b in args.budgets.split(",")]
    except ValueError:
        budgets = [-1]
    if min(budgets) < 0:
        parser.error(f"--budgets: comma-separated trial counts >= 0, got {args.budgets!r}")
    space, profile = load_space(args.space), load_profile(DEVICE)
    try:
        get_backend(profile.backend)(profile.target())
    except UfoError as exc:  # TVM not installed: one line, not a traceback
        parser.error(str(exc))
    rng = np.random.default_rng(5)
    models = {"anchor": None, "largest": space.largest(), "random 1": space.sample(rng)}
    models["random 2"] = space.sample(rng)
    started = time.time()
    runners, inputs, build_s = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        # label: (work folder, trials per kernel; None: the profile's own)
        builds = {f"{b} per kernel": (Path(tmp) / str(b), b) for b in budgets}
        profiled = default_work_dir(DEVICE, space)
        if profiled.is_dir():
            builds[PROFILED] = (profiled, None)
        profilers = []
        for label, (folder, trials) in builds.items():
            options = dict(profile.options)
            if trials is not None:
                options["tuning_trials"] = trials
            profiler = Profiler(space, replace(profile, options=options), folder)
            profilers.append(profiler)
            began = time.time()
            for name, arch in models.items():
                key = f"{name} | {label}"
                if arch is None:
                    runners[key], inputs[key] = profiler.anchor()
                else:
                    runners[key], inputs[key] = profiler.compile_subnet(arch, ("face",))
            build_s[label] = time.time() - began
        times: dict[str, list[float]] = {}
        for _ in range(args.chunks):
            for key, timing in time_interleaved(runners, inputs, args.rounds).items():
                times.setdefault(key, []).append(timing.ms)
        for profiler in profilers:
            profiler.close()
    lines = _report(args, list(builds), list(models), times, build_s, time.time() - started)
    write_results(lines, Path(args.out))
    return 0


def _report(args, labels, models, times, build_s, seconds: float) -> list[str]:
    host = host_fingerprint()
    command = "python " + shlex.join(["tools/check_tvm_tuning.py", *sys.argv[1:]])
    lines = [
        f"# TVM kernels by MetaSchedule trials per kernel: {args.space}",
        "",
        f"Command: `{command}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {host['cpu']}, "
        f"{host['cores']} cores, ISA {', '.join(host['isa'])}; {seconds:.0f} s in all. "
        f"Each budget tunes a fresh database; '{PROFILED}' is `ufo-profile`'s (built at the "
        f"profile's `tuning_trials`, already tuned: its build time is compiling only). Each "
        f"chunk: p25 of {args.rounds} interleaved rounds of all builds; ms: median of "
        f"{args.chunks} chunks.",
        "",
        "| build | build s | "
        + " | ".join(f"{m} ms" for m in models)
        + " | largest / anchor, median (min - max) |",
        "|---|---|" + "---|" * len(models) + "---|",
    ]
    for label in labels:
        ms = {m: np.array(times[f"{m} | {label}"]) for m in models}
        ratio = ms["largest"] / ms["anchor"]
        cells = " | ".join(f"{np.median(ms[m]):.3f}" for m in models)
        lines.append(
            f"| {label} | {build_s[label]:.0f} | {cells} | {np.median(ratio):.3f} "
            f"({ratio.min():.3f} - {ratio.max():.3f}) |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
