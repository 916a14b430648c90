"""Where a re-timed export's prediction error comes from: the chunk, the build, the process.

Run-to-run, one tiny export's prediction error moved 5-11 points in the P6 bench
(`tools/pool_p6_runs.py`): how much of that is the chunk (the seconds it was timed in), the
build (one engine against another built from the same graph) and the process? This builds
each of the three face-front subnets of `tools/bench_export.py` `--builds` times (as `ufo
export` builds it: the backend's `export`, each build its own files and session) and times
all builds of a device in `--chunks` chunks beside the device table's anchor and
references, as profiling times a chunk (`ProfileSettings.time_models`, each chunk its own
order of visits), in each of `--processes` fresh processes run one after another. Per
device, subnet and process: each (build, chunk)'s prediction error on the table's scale,
the spread between builds and between chunks, and the mean; below, the standard deviation
at each level and what the levels beneath it alone would give.

    python tools/check_export_builds.py [--devices cpu-onnxruntime,cpu-openvino,...]
        [--builds 3] [--chunks 3] [--processes 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from results_io import command_line, write_results

from ufo_nas import load_space
from ufo_nas.backends import Runner, get_backend
from ufo_nas.checkpoint import load_supernet, shipped_supernet
from ufo_nas.hardware import host_fingerprint, host_id, load_profile
from ufo_nas.latency.measure import Profiler, ProfileSettings
from ufo_nas.latency.predictor import LatencyPredictor, latency_predictor
from ufo_nas.latency.timing import Timing
from ufo_nas.latency.weights import trained_like_
from ufo_nas.onnx_io import export_for_backend
from ufo_nas.search import prepare, search_devices
from ufo_nas.space import Arch, SearchSpace
from ufo_nas.supernet import SuperViT, extract

ROOT = Path(__file__).resolve().parents[1]
SPACE = "ufo_vit_tiny"
TIMING = ProfileSettings()
DEVICES = (
    "cpu-onnxruntime",
    "cpu-onnxruntime-int8",
    "cpu-openvino",
    "cpu-openvino-bf16",
    "cpu-openvino-int8",
)


PICKS = ("fastest", "middle", "best")


def front_exports(
    space: SearchSpace, device: str, builds: int, work: Path, picks: Sequence[str] = PICKS
) -> tuple[dict[str, tuple[Runner, np.ndarray]], dict[str, Arch], Profiler, LatencyPredictor]:
    """The face-front subnets `picks` of `tools/bench_export.py` (fastest, middle, best of a
    cpu-onnxruntime search), each built `builds` times for `device` as `ufo export` builds
    it (the backend's export, each build its own files and session; int8 calibrated on what
    profiling calibrates a table's subnets on), as models "PICK/BUILD"; with the picks'
    archs, a profiler holding the table's anchor and references, and the device's
    predictor. A space with no shipped supernet gets a fresh one with trained-like weights,
    as its table was timed on."""
    profile = load_profile(device)
    front = search_devices(prepare(space, ["face"], ["cpu-onnxruntime"])).fronts[0]
    indices = {"fastest": 0, "middle": len(front.rows) // 2, "best": len(front.rows) - 1}
    trained = shipped_supernet(space)
    supernet = load_supernet(trained, space) if trained else trained_like_(SuperViT(space.spec))
    predictor = latency_predictor(space, device)
    backend = get_backend(profile.backend)(profile.target())
    profiler = Profiler(space, profile, work / "anchors" / device, predictor.reference_subnets())
    shape = (1, space.spec.in_chans, space.spec.image_size, space.spec.image_size)
    image = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    models, archs = {}, {}
    for pick in picks:
        archs[pick] = space.parse(front.rows[indices[pick]].arch)
        subnet = extract(supernet.eval(), archs[pick], ("face",))
        onnx_path = export_for_backend(subnet, work / device / pick / "subnet.onnx", 1)
        for b in range(builds):
            folder = work / device / pick / f"build-{b}"
            folder.mkdir()
            runner = backend.export(onnx_path, folder, profiler.calibration).runner
            models[f"{pick}/{b}"] = runner, image
    return models, archs, profiler, predictor


def prediction_errors(
    timings: dict[str, Timing],
    archs: dict[str, Arch],
    profiler: Profiler,
    predictor: LatencyPredictor,
) -> dict[str, float]:
    """Each timed export's prediction error (%): the device table's prediction for its pick
    against its time in a chunk (`timings`, the anchor and references among them: popped),
    put on the table's scale by what they imply for a model of its predicted size."""
    profiler.pop_anchor_ms(timings)
    table = predictor.table
    out = {}
    for name, timing in timings.items():
        predicted = float(predictor.latency_ms([archs[name.split("/")[0]]], ("face",))[0])
        scale = profiler.anchor_for(predicted / table.reference_anchor_ms)
        measured = table.scaled_ms(timing.ms, scale)
        out[name] = 100 * (predicted - measured) / measured
    return out


def errors_of(device: str, builds: int, chunks: int, work: Path) -> dict[str, np.ndarray]:
    """Per front subnet, its prediction errors (%) as a builds x chunks array."""
    models, archs, profiler, predictor = front_exports(load_space(SPACE), device, builds, work)
    models.update(profiler.scale_models())
    runners = {name: r for name, (r, _) in models.items()}
    inputs = {name: x for name, (_, x) in models.items()}
    errors = {pick: np.empty((builds, chunks)) for pick in archs}
    for c, order in enumerate(TIMING.orders(chunks)):
        found = prediction_errors(order.time_models(runners, inputs), archs, profiler, predictor)
        for name, error in found.items():
            pick, build = name.split("/")
            errors[pick][int(build), c] = error
    profiler.close()
    return errors


def _within(errors: np.ndarray, limit: float = 5.0) -> str:
    """'n of N (max x%)' for errors."""
    errors = np.abs(errors).ravel()
    return f"{int(np.sum(errors <= limit))} of {errors.size} (max {errors.max():.1f}%)"


def decomposition(errors: np.ndarray) -> list[str]:
    """Standard deviations (points) of the errors, an (export, process, build, chunk) array,
    at each level, and what the level below alone would give (its sd over the root of its
    count): the excess is the level's own share."""
    _, processes, builds, chunks = errors.shape
    chunk_sd = np.sqrt(np.mean(np.var(errors, axis=3, ddof=1)))
    build_means = errors.mean(axis=3)
    build_sd = np.sqrt(np.mean(np.var(build_means, axis=2, ddof=1)))
    process_means = build_means.mean(axis=2)
    lines = [
        f"- chunk: one chunk's error around its build's mean, sd **{chunk_sd:.2f}** points;",
        f"- build: the builds' means (over {chunks} chunks) around their process's, sd "
        f"{build_sd:.2f} (chunks alone would give {chunk_sd / np.sqrt(chunks):.2f});",
    ]
    if processes > 1:
        process_sd = np.sqrt(np.mean(np.var(process_means, axis=1, ddof=1)))
        alone = build_sd / np.sqrt(builds)
        lines.append(
            f"- process: the processes' means around the export's, sd {process_sd:.2f} "
            f"(builds and chunks alone would give {alone:.2f});"
        )
    export_means = process_means.mean(axis=1)
    lines.append(
        f"- export: the exports' means (the table's error for the subnet), sd "
        f"{np.std(export_means, ddof=1):.2f} around their mean {np.mean(export_means):+.2f}%."
    )
    return lines


def measure_in_children(args: argparse.Namespace, work: Path) -> tuple[list, np.ndarray]:
    """Run the measurement in `args.processes` child processes, one after another: the
    exports (device, subnet) and their errors as an (export, process, build, chunk) array."""
    runs = []
    for k in range(args.processes):
        out = work / f"process-{k}.json"
        command = [sys.executable, __file__, "--devices", args.devices, "--builds"]
        command += [str(args.builds), "--chunks", str(args.chunks), "--child", str(out)]
        subprocess.run(command, check=True)
        runs.append(json.loads(out.read_text()))
    exports = [tuple(e["export"]) for e in runs[0]]
    errors = np.array([[e["errors"] for e in run] for run in runs]).transpose(1, 0, 2, 3)
    return exports, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default=",".join(DEVICES))
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # one process's JSON
    parser.add_argument(
        "--out", type=Path, default=ROOT / "tools" / "results" / "check_export_builds.md"
    )
    args = parser.parse_args()
    if min(args.builds, args.chunks, args.processes) < 1 or args.chunks < 2:
        parser.error("--builds and --processes must be at least 1, --chunks at least 2")
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            found = [
                {"export": [device, pick], "errors": errors.tolist()}
                for device in args.devices.split(",")
                for pick, errors in errors_of(device, args.builds, args.chunks, Path(tmp)).items()
            ]
        args.child.write_text(json.dumps(found))
        return
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        exports, errors = measure_in_children(args, Path(tmp))
    rows = []
    for (device, pick), per_process in zip(exports, errors):
        for k, found in enumerate(per_process):
            cells = "; ".join(", ".join(f"{e:+.1f}" for e in build) for build in found)
            rows.append(
                f"| {device} | {pick} | {k + 1} | {cells} | {np.ptp(found.mean(axis=1)):.1f} | "
                f"{np.mean(np.ptp(found, axis=1)):.1f} | {found.mean():+.1f}% |"
            )
    host = host_fingerprint()
    lines = [
        "# A re-timed export's error: chunk, build, process (check_export_builds)",
        "",
        f"Command: `{command_line('tools/check_export_builds.py')}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; host {host_id(host)} "
        f"({host['cpu']}, {host['cores']} cores); {time.time() - started:.0f} s. The three "
        f"face-front subnets of {SPACE} (as `tools/bench_export.py` picks them), in each of "
        f"{args.processes} processes built {args.builds} times, all of a device's builds timed "
        f"in {args.chunks} chunks beside its table's anchor and references (profiling's chunk "
        "timing, each chunk its own order).",
        "",
        "Errors: (predicted - measured) / measured in %, per build its chunks, builds split by "
        "';'. Between builds: max - min of the builds' means over the chunks (points). Between "
        "chunks: max - min of one build's chunks, mean over the builds (points).",
        "",
        "| device | subnet | process | errors (build: chunks) | between builds | between "
        "chunks | mean |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "## Where the error comes from",
        "",
        *decomposition(errors),
        "",
        f"Within 5%: single chunks {_within(errors)}; each build's median over its chunks "
        f"(what `ufo export` reports, one build) {_within(np.median(errors, axis=3))}.",
    ]
    write_results(lines, args.out)


if __name__ == "__main__":
    main()
