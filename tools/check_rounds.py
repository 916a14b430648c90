"""How many rounds a chunk of fast models needs: two builds of one subnet, side by side.

A tiny subnet runs in about a millisecond, so 15 interleaved rounds (2 timed calls a visit)
time it for well under a second, and its low percentile moves with whatever the machine did
in that second. This builds each of `--subnets` random subnets twice, as `ufo profile`
builds them (two identical engines: the same graph, the same calibration inputs), and times
them in chunks of 4 subnets x 2 builds beside the anchor and the table's references, each
chunk two passes of each way:

- 15 rounds (the rounds before 2026-12-07);
- filled: as many rounds as fill `ProfileSettings.fill_seconds`, at most `max_rounds`
  (shipped).

Per way: how far the two builds' times differ within one pass (identical models, so all of
it is timing noise), how far one build's time on the table's scale (over the chunk's
anchor, as tables scale) moves between the two passes, the rounds and the seconds a chunk
took.

    python tools/check_rounds.py [--space ufo_vit_tiny] [--subnets 16]
        [--devices cpu-openvino-int8,...] [--out FILE]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from results_io import command_line, rows_per_device, write_results

from ufo_nas import load_space
from ufo_nas.hardware import host_fingerprint, host_id, load_profile
from ufo_nas.latency.measure import Profiler, ProfileSettings, validation_subnets
from ufo_nas.latency.predictor import latency_predictor
from ufo_nas.onnx_io import export_for_backend, external_data

ROOT = Path(__file__).resolve().parents[1]
SEED = 1000  # the held-out subnets of bench_latency: none of the tables was fitted on them
PER_CHUNK = 4  # subnets per chunk, each twice: a chunk of 8 models, as profiling times
SHIPPED = ProfileSettings(chunk_seconds=None)
WAYS = {  # name: settings
    "15 rounds (before 2026-12-07)": replace(SHIPPED, fill_seconds=None),
    f"filled ({SHIPPED.fill_seconds:g} s, at most {SHIPPED.max_rounds} rounds; shipped)": SHIPPED,
}
DEVICES = "cpu-openvino-int8,cpu-openvino,cpu-onnxruntime"


def time_device(device: str, space_name: str, subnets: int) -> dict[str, dict[str, list]]:
    """Per way: each subnet's (build, pass) times and its chunk's anchor per pass, the
    rounds and seconds of each timed chunk."""
    space = load_space(space_name)
    references = latency_predictor(space, device).reference_subnets()
    out = {way: {"ms": [], "anchor": [], "rounds": [], "seconds": []} for way in WAYS}
    with tempfile.TemporaryDirectory() as work:
        profiler = Profiler(space, load_profile(device), Path(work) / "p", references)
        pairs = validation_subnets(space, subnets, SEED)
        try:
            for start in range(0, len(pairs), PER_CHUNK):
                chunk, models = pairs[start : start + PER_CHUNK], {}
                for k, (arch, tasks) in enumerate(chunk):
                    module = profiler.subnet(arch, tasks)
                    onnx = Path(work) / "onnx" / f"s{k}" / "model.onnx"
                    export_for_backend(module, onnx, profiler.profile.batch)
                    for build in "ab":
                        folder = Path(work) / "built" / f"s{k}{build}"
                        folder.mkdir(parents=True)
                        for src in (onnx, external_data(onnx)):
                            if src.exists():  # small models keep their weights inline
                                shutil.copyfile(src, folder / src.name)
                        runner = profiler.load_artefact(module, folder / "model.onnx", folder)
                        models[f"s{k}{build}"] = runner, profiler.images.numpy()
                runs: dict[str, list] = {way: [] for way in WAYS}
                for _ in range(2):  # passes, the ways in turn
                    for way, settings in WAYS.items():
                        began = time.perf_counter()
                        timings, anchor_ms, _ = profiler.time_chunk(models, settings)
                        out[way]["seconds"].append(time.perf_counter() - began)
                        out[way]["rounds"].append(timings["s0a"].calls // settings.calls_per_round)
                        runs[way].append((timings, anchor_ms))
                for way, passes in runs.items():
                    for k in range(len(chunk)):
                        ms = [[t[f"s{k}{b}"].ms for t, _ in passes] for b in "ab"]
                        out[way]["ms"].append(ms)
                        out[way]["anchor"].append([a for _, a in passes])
                del models, runs
                shutil.rmtree(Path(work) / "built")
        finally:
            profiler.close()
    return out


def rows_of(device: str, times: dict[str, dict[str, list]]) -> list[str]:
    rows = []
    for way, t in times.items():
        ms = np.array(t["ms"])  # (subnets, build, pass)
        scaled = ms / np.array(t["anchor"])[:, None, :]
        builds = np.abs(np.log(ms[:, 0] / ms[:, 1]))  # per subnet and pass
        passes = np.abs(np.log(scaled[:, :, 0] / scaled[:, :, 1]))  # per subnet and build
        rows.append(
            f"| {device} | {way} | {100 * builds.mean():.2f}% | {100 * builds.max():.1f}% | "
            f"{100 * (builds > 0.05).mean():.0f}% | {100 * passes.mean():.2f}% | "
            f"{100 * passes.max():.1f}% | {np.median(t['rounds']):.0f} | "
            f"{np.median(t['seconds']):.1f} | {np.median(ms):.3f} |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="ufo_vit_tiny")
    parser.add_argument(
        "--subnets", type=int, default=16, help=f"random subnets per device (chunks of {PER_CHUNK})"
    )
    parser.add_argument("--devices", default=DEVICES, help="comma-separated device profiles")
    parser.add_argument("--out", type=Path, default=ROOT / "tools/results/check_rounds.md")
    args = parser.parse_args()
    if args.subnets < 1:
        parser.error(f"--subnets must be at least 1, not {args.subnets}")
    start = time.time()
    lines = rows_per_device(
        args.devices, lambda device: rows_of(device, time_device(device, args.space, args.subnets))
    )
    host, command = host_fingerprint(), command_line("tools/check_rounds.py")
    write_results(
        [
            "# Rounds of a chunk of fast models (check_rounds)",
            "",
            f"Command: `{command}`  ",
            f"Date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; host "
            f"{host_id(host)} ({host.get('cpu')}, {host.get('cores')} cores, ISA "
            f"{', '.join(host.get('isa') or [])}); {time.time() - start:.0f} s. "
            f"{args.subnets} random subnets of {args.space} per device (seed {SEED}), each "
            "built twice as `ufo profile` builds it, timed in chunks of "
            f"{PER_CHUNK} subnets x 2 builds beside the anchor and the table's 2 references, "
            "two passes of each way per chunk, in one process.",
            "",
            "Two builds: |log| of the ratio of the two builds' times in one pass (identical "
            "models side by side: timing noise), mean, worst and the share over 5%. Between "
            "passes: |log| of the ratio of one build's two times over its chunk's anchor "
            "(the table's scale). Rounds and seconds: a chunk's, median.",
            "",
            "| device | way | two builds: mean | worst | over 5% | between passes: mean | "
            "worst | rounds | chunk s | median ms |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *lines,
        ],
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
