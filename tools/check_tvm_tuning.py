"""Does the TVM table's tuning database make this host's kernels faster?

Builds the anchor subnet and the largest subnet twice in one process: with the tuning
database that `ufo-profile --device cpu-tvm` left in its work folder (what profiling,
`tools/bench_latency.py` and `ufo export` build with) and with none (TVM's default
schedules), then times all four interleaved in several chunks, each chunk after one more
random subnet has been built and loaded (as a P1 run does). A database that slows some
shapes down and not others leaves subnets whose kernels partly hit it unpredictable from
the operator sum.

    python tools/check_tvm_tuning.py [--space ufo_vit_tiny] [--chunks 8] [--out FILE]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="ufo_vit_tiny")
    parser.add_argument("--chunks", type=int, default=8, help="timed chunks (default 8)")
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds per chunk")
    parser.add_argument("--out", default=str(ROOT / "tools/results/check_tvm_tuning.md"))
    args = parser.parse_args()
    space, profile = load_space(args.space), load_profile(DEVICE)
    tuned_dir = default_work_dir(DEVICE, space)
    if not tuned_dir.is_dir():
        parser.error(
            f"no tuning database in {tuned_dir}: run `ufo-profile --device {DEVICE}` first"
        )
    started = time.time()
    rng = np.random.default_rng(5)
    times: dict[str, list[float]] = {}
    try:
        get_backend(profile.backend)(profile.target())
    except UfoError as exc:  # TVM not installed: one line, not a traceback
        parser.error(str(exc))
    with tempfile.TemporaryDirectory() as tmp:
        builds = {
            "tuned": Profiler(space, profile, tuned_dir),
            "default": Profiler(space, profile, Path(tmp)),
        }
        runners, inputs, loaded = {}, {}, []
        for label, profiler in builds.items():
            runners[f"anchor {label}"], inputs[f"anchor {label}"] = profiler.anchor()
            big = profiler.compile_subnet(space.largest(), ("face",))
            runners[f"largest {label}"], inputs[f"largest {label}"] = big
        for _ in range(args.chunks):
            for profiler in builds.values():  # kept loaded, as a P1 run's models are
                loaded.append(profiler.compile_subnet(space.sample(rng), ("face",)))
            for name, timing in time_interleaved(runners, inputs, args.rounds).items():
                times.setdefault(name, []).append(timing.ms)
        for profiler in builds.values():
            profiler.close()
    lines = _report(args, times, tuned_dir, time.time() - started)
    write_results(lines, Path(args.out))
    return 0


def _report(args, times: dict[str, list[float]], tuned_dir: Path, seconds: float) -> list[str]:
    host = host_fingerprint()
    command = "python " + shlex.join(["tools/check_tvm_tuning.py", *sys.argv[1:]])
    lines = [
        f"# TVM kernels with and without the profile's tuning database: {args.space}",
        "",
        f"Command: `{command}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {host['cpu']}, "
        f"{host['cores']} cores, ISA {', '.join(host['isa'])}; {seconds:.0f} s in all. "
        f"Tuning database: `{tuned_dir}`. Each chunk: p25 of {args.rounds} interleaved rounds, "
        "after one more random subnet per build was built and loaded.",
        "",
        "| model | median ms | min - max over chunks | spread |",
        "|---|---|---|---|",
    ]
    for name, ms in times.items():
        a = np.array(ms)
        spread = 100 * (a.max() - a.min()) / np.median(a)
        lines.append(
            f"| {name} | {np.median(a):.3f} | {a.min():.3f} - {a.max():.3f} | {spread:.1f}% |"
        )
    lines += ["", "| build | largest / anchor, median | min - max over chunks |", "|---|---|---|"]
    for label in ("tuned", "default"):
        ratio = np.array(times[f"largest {label}"]) / np.array(times[f"anchor {label}"])
        lines.append(
            f"| {label} | {np.median(ratio):.3f} | {ratio.min():.3f} - {ratio.max():.3f} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
