"""How ONNX Runtime's CPU threads wait, and what it does to a subnet's time.

ONNX Runtime's intra-op worker threads either sleep between operators (`allow_spinning` 0:
what ufo-nas's sessions did until 2026-12-05), spin while a run lasts and stop when it
returns (`force_spinning_stop`: shipped), or spin on after a run too (ONNX Runtime's
default). This builds the anchor and `--subnets` random tiny subnets of each device once per
way, as `ufo profile` builds them, all in one process, and times them interleaved with the
anchor in chunks (`ProfileSettings`, as profiling and P1 time them), each way in turn,
`--repeats` times. It reports per way the anchor's and the median subnet's ms, and how far a
subnet's time over the anchor's moved between the chunks (the noise a table built so
carries). (Timing each model alone, median of 60 calls, gave anchors 0.5-1.5x their
interleaved p25: too unsteady here to judge the ways by.)

    python tools/check_ort_threads.py [--space ufo_vit_tiny] [--subnets 8] [--repeats 6]
        [--devices cpu-onnxruntime,cpu-onnxruntime-int8] [--out FILE]
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

import ufo_nas.backends.onnxruntime as ort_backend
from ufo_nas import load_space
from ufo_nas.errors import UfoError
from ufo_nas.hardware import host_fingerprint, host_id, load_profile
from ufo_nas.latency.measure import Profiler, ProfileSettings, validation_subnets

ROOT = Path(__file__).resolve().parents[1]
SEED = 4242  # subnets none of the tables was fitted on
SPIN = "session.intra_op.allow_spinning"
WAYS = {  # name: the session config entries of `ort_backend.SPINNING`
    "asleep between operators (until 2026-12-05)": {SPIN: "0"},
    "spin within a run (shipped)": ort_backend.SPINNING,
    "spin on after a run (ONNX Runtime's default)": {SPIN: "1"},
}


def time_device(device: str, space_name: str, subnets: int, repeats: int) -> dict[str, np.ndarray]:
    """Per way: (repeats, 1 + subnets) ms, the anchor first."""
    space = load_space(space_name)
    pairs = validation_subnets(space, subnets, SEED)
    profilers: dict[str, Profiler] = {}
    models: dict[str, dict] = {}
    shipped = ort_backend.SPINNING
    with tempfile.TemporaryDirectory() as work:
        try:
            for k, (way, entries) in enumerate(WAYS.items()):
                ort_backend.SPINNING = entries  # read by each session built from now on
                profiler = profilers[way] = Profiler(
                    space, load_profile(device), Path(work) / str(k)
                )
                models[way] = {
                    f"s{i}": profiler.compile_subnet(a, t) for i, (a, t) in enumerate(pairs)
                }
                profiler.anchor()
            ort_backend.SPINNING = shipped
            out: dict[str, list] = {way: [] for way in WAYS}
            for repeat in range(repeats):
                for way in WAYS:
                    settings = ProfileSettings(
                        chunk_seconds=None, max_others_percent=None, seed=repeat
                    )
                    timings, anchor, _ = profilers[way].time_chunk(models[way], settings)
                    out[way].append([anchor, *(t.ms for t in timings.values())])
        finally:
            ort_backend.SPINNING = shipped
            for profiler in profilers.values():
                profiler.close()
    return {way: np.array(times) for way, times in out.items()}


def rows_of(device: str, times: dict[str, np.ndarray]) -> list[str]:
    rows = []
    for way, t in times.items():
        ratios = t[:, 1:] / t[:, :1]
        moved = 100 * np.abs(np.log(ratios / np.median(ratios, axis=0)))
        rows.append(
            f"| {device} | {way} | {np.median(t[:, 0]):.3f} | {np.median(t[:, 1:]):.3f} | "
            f"{moved.mean():.1f}% | {moved.max():.1f}% |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="ufo_vit_tiny")
    parser.add_argument("--subnets", type=int, default=8, help="random subnets per device")
    parser.add_argument("--repeats", type=int, default=6, help="interleaved chunks per way")
    parser.add_argument("--devices", default="cpu-onnxruntime,cpu-onnxruntime-int8")
    parser.add_argument("--out", type=Path, default=ROOT / "tools/results/check_ort_threads.md")
    args = parser.parse_args()
    if args.subnets < 1 or args.repeats < 2:
        parser.error("give --subnets 1 or more and --repeats 2 or more")
    start, lines = time.time(), []
    try:
        for device in args.devices.split(","):
            if load_profile(device).backend != "onnxruntime":
                parser.error(f"--devices: '{device}' does not run on onnxruntime")
            lines += rows_of(device, time_device(device, args.space, args.subnets, args.repeats))
    except UfoError as exc:
        sys.exit(f"error: {exc}")
    host = host_fingerprint()
    command = shlex.join(["python", "tools/check_ort_threads.py", *sys.argv[1:]])
    write_results(
        [
            "# How ONNX Runtime's threads wait (check_ort_threads)",
            "",
            f"Command: `{command}`  ",
            f"Date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; host "
            f"{host_id(host)} ({host.get('cpu')}, {host.get('cores')} cores); "
            f"{time.time() - start:.0f} s. The anchor and {args.subnets} random subnets of "
            f"{args.space} (seed {SEED}) built once per way, as `ufo profile` builds them, in "
            f"one process; each way timed interleaved, {args.repeats} chunks in turn with the "
            "other ways, as profiling times.",
            "",
            "Moved: |change| of a subnet's time over the anchor's from its median over the "
            "chunks, mean and worst.",
            "",
            "| device | threads | anchor ms | median subnet ms | moved: mean | worst |",
            "|---|---|---|---|---|---|",
            *lines,
        ],
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
