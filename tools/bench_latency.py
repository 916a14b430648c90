"""P1: latency-table accuracy on held-out subnets, its error decomposed, and each backend
against torch eager.

For every CPU device with a shipped table, each in a process of its own (or several): 56
random subnets (a seed the tables' own validation did not use; a count rounded up to whole
chunks, since a short last chunk times its anchor beside fewer models, which on the Intel
host ran a tiny anchor 16-30% faster than beside a full chunk and skewed that chunk's
subnets by up to 15%) are exported once and built by each device's backend as profiling and
`ufo export` build them (its export artefact, loaded back; TVM with the tuning database its
profiling run left, as `ufo export` uses it), timed interleaved with the table's anchor
subnet and two of the table's validation subnets (its reference subnets) in chunks (every
round, no time budget), each chunk `--repeats` times; each time is scaled to the table's
reference as `ufo search --verify` scales it: by what its chunk's anchor (outvoted by the
references where it ran far out of step with them: `implied_anchor_ms`) and references imply
for a model of its predicted size (`matched_anchor_ms`; a table scored beside the shipped one
uses its own times of the references), and compared with the table's prediction. Writes a
Markdown table and the per-subnet times as JSON beside it.

The error is decomposed on the same measurements:
- noise floor: the spread between repeats of one chunk (what no table can beat);
- bias: the median signed error, a whole-process offset the anchor did not remove;
- anchor scaling: the error when each chunk is scaled by the median anchor of the run
  instead of its own (does one anchor per chunk add noise or remove drift?), and when each
  chunk is scaled by its (outvoted) anchor whatever a subnet's size, or by its anchor alone;
- calibration: the error of the uncalibrated operator sum;
- drift (`--own-subnets`): the tables' own validation subnets re-timed here against the
  times their tables recorded, i.e. how much a time moves between processes by itself;
- process noise (`--processes N`): the same subnets measured in N processes one after
  another, each table scored against the median over processes, and each process alone
  against that median (how reproducible the ground truth itself is);
- neighbours (`--chunking SEED`, `--vary-chunks`): the same subnets timed in chunks of
  another order, each beside other subnets (`tools/compare_runs.py` says how far the
  table's per-subnet errors repeat between two runs).

    python tools/bench_latency.py --space ufo_vit_tiny [--subnets 56] [--repeats 2]
        [--devices DEV,...] [--table DEV=PATH ...] [--no-eager] [--own-subnets]
        [--processes N [--vary-chunks]] [--chunking SEED]
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from results_io import write_results
from tqdm import tqdm

from ufo_nas import load_space
from ufo_nas.backends import get_backend
from ufo_nas.backends.torch_eager import TorchBackend
from ufo_nas.hardware import HardwareProfile, host_fingerprint, load_profile
from ufo_nas.latency.measure import (
    Profiler,
    ProfileSettings,
    default_work_dir,
    implied_anchor_ms,
    matched_anchor_ms,
    validation_subnets,
)
from ufo_nas.latency.predictor import LatencyPredictor, table_for_this_host
from ufo_nas.latency.table import LatencyTable, ReferenceSubnet, host_table_paths, table_path
from ufo_nas.latency.timing import WARM_SECONDS, time_interleaved
from ufo_nas.onnx_io import export_for_backend, external_data

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT_SEED = 1000


@dataclass
class Device:
    """One device's profiler, and the times of the held-out subnets on it."""

    name: str
    profiler: Profiler | None  # None where this process merges its children's times
    references: list[tuple[str, tuple[str, ...]]]  # the subnets timed beside the anchor
    ms: list[list[float]] = field(default_factory=list)  # per subnet, per repeat (unscaled)
    anchor_ms: list[list[float]] = field(default_factory=list)  # the anchor's own time
    # per subnet, per repeat: each reference's time in the subnet's chunk
    reference_ms: list[list[list[float]]] = field(default_factory=list)
    eager_ratio: list[float] = field(default_factory=list)
    processes: int = 1  # the lists of ms hold each process's repeats, one process after another

    def times(self) -> dict:
        return {
            "ms": self.ms,
            "anchor_ms": self.anchor_ms,
            "reference_ms": self.reference_ms,
            "eager_ratio": self.eager_ratio,
        }

    def add_process(self, times: dict) -> None:
        """Append another process's times of the same subnets."""
        if not self.ms:
            self.ms, self.anchor_ms = times["ms"], times["anchor_ms"]
            self.reference_ms = times["reference_ms"]
            self.eager_ratio = times["eager_ratio"]
            return
        self.ms = [a + b for a, b in zip(self.ms, times["ms"])]
        self.anchor_ms = [a + b for a, b in zip(self.anchor_ms, times["anchor_ms"])]
        self.reference_ms = [a + b for a, b in zip(self.reference_ms, times["reference_ms"])]
        if times["eager_ratio"]:
            ratios = np.array([self.eager_ratio, times["eager_ratio"]])
            self.eager_ratio = np.median(ratios, axis=0).tolist()
        self.processes += 1


def measure(
    space,
    devices: list[Device],
    n: int,
    seed: int,
    repeats: int,
    eager: bool,
    work: Path,
    chunking: int | None = None,
):
    """Time n subnets drawn with `seed` on every device, exported once per subnet, in
    chunks of the drawn order (or of an order shuffled with `chunking`); the devices' times
    are in drawn order."""
    settings = ProfileSettings(chunk_seconds=None)  # every round: this is the ground truth
    subnets = validation_subnets(space, n, seed)
    order = np.arange(n) if chunking is None else np.random.default_rng(chunking).permutation(n)
    timed = [subnets[i] for i in order]
    eager_backend = TorchBackend(load_profile("cpu-torch").target()) if eager else None
    source = devices[0].profiler
    for start in tqdm(range(0, n, settings.chunk), desc="held-out chunks", unit="chunk"):
        chunk = timed[start : start + settings.chunk]
        modules = [source.subnet(arch, tasks) for arch, tasks in chunk]
        onnx_files = []
        for k, module in enumerate(modules):
            onnx_files.append(work / "onnx" / f"subnet-{k}" / "model.onnx")  # its weights
            # file is named after it: copied elsewhere, it keeps the name
            export_for_backend(module, onnx_files[-1], len(source.images))
        for device in devices:
            models = {}
            for k, (module, onnx) in enumerate(zip(modules, onnx_files)):
                folder = work / device.name / f"subnet-{k}"
                folder.mkdir(parents=True, exist_ok=True)
                copied = folder / "model.onnx"
                for built, copy in ((onnx, copied), (external_data(onnx), external_data(copied))):
                    if built.exists():  # small models keep their weights inline
                        # a copy: onnx refuses weights with several hard links
                        shutil.copyfile(built, copy)
                # built as profiling and `ufo export` build it: the backend's artefact
                runner = device.profiler.load_artefact(module, copied, folder)
                models[f"subnet-{k}"] = runner, source.images.numpy()
            runs = [device.profiler.time_chunk(models, settings)[0] for _ in range(repeats)]
            anchor_ms = device.profiler.anchor_alone_ms[-repeats:]
            reference_ms = device.profiler.reference_ms[-repeats:]
            for k in range(len(chunk)):
                device.ms.append([timings[f"subnet-{k}"].ms for timings in runs])
                device.anchor_ms.append(anchor_ms)
                device.reference_ms.append(reference_ms)
            del models, runs
            for k in range(len(chunk)):
                shutil.rmtree(work / device.name / f"subnet-{k}", ignore_errors=True)
        for onnx in onnx_files:
            onnx.unlink()
            external_data(onnx).unlink(missing_ok=True)
        if eager_backend is not None:
            # torch eager in a chunk of its own, after the backends': its OpenMP threads spin
            # after each call and would slow the backends' models if interleaved with them
            eager_models = {
                f"subnet-{k}": eager_backend.compile(module, None, work)
                for k, module in enumerate(modules)
            }
            images = {name: source.images.numpy() for name in eager_models}
            eager_ms = time_interleaved(eager_models, images, settings.rounds)
            for device in devices:
                for k in range(len(chunk)):
                    device_ms = device.ms[len(device.ms) - len(chunk) + k][0]
                    device.eager_ratio.append(eager_ms[f"subnet-{k}"].ms / device_ms)
    drawn = np.argsort(order)  # where each drawn subnet was timed
    for device in devices:
        for times in (device.ms, device.anchor_ms, device.reference_ms, device.eager_ratio):
            times[:] = [times[i] for i in drawn] if times else times
    return subnets


def _errors(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    return (predicted - measured) / measured


def evaluate(space, device: Device, table: LatencyTable, subnets) -> dict:
    """The table's held-out errors on the device's times, and their decomposition."""
    predictor = LatencyPredictor(space, table)
    predicted = np.array([predictor.latency_ms([a], t)[0] for a, t in subnets])
    uncalibrated = np.array([predictor.sum_ms([a], t)[0] for a, t in subnets])
    ms, alone_ms = np.asarray(device.ms), np.asarray(device.anchor_ms)
    references = predictor.references_of(device.references)
    anchors = np.array(
        [
            [implied_anchor_ms(a, references, r) for a, r in zip(anchor_row, ref_row)]
            for anchor_row, ref_row in zip(alone_ms.tolist(), device.reference_ms)
        ]
        if references
        else alone_ms
    )
    reference = table.reference_anchor_ms
    # each subnet by what its chunk's (outvoted) anchor and references imply for its size
    size_anchors = (
        np.array(
            [
                [matched_anchor_ms(a, references, r, p / reference) for a, r in zip(row, refs)]
                for row, refs, p in zip(anchors.tolist(), device.reference_ms, predicted)
            ]
        )
        if references
        else anchors
    )
    scaled = ms * reference / size_anchors  # per subnet, per (process, repeat)
    by_process, measured = _medians(scaled, device.processes)
    error = np.abs(_errors(predicted, measured))
    signed = _errors(predicted, measured)
    one_anchor = np.median(ms, axis=1) * reference / np.median(anchors)
    out = {
        "within_5": float((error <= 0.05).mean()),
        "within_10": float((error <= 0.10).mean()),
        "mape": float(100 * error.mean()),
        "max_error": float(100 * error.max()),
        "bias_pct": float(100 * np.median(signed)),
        "debiased_mape": float(100 * np.abs(signed - np.median(signed)).mean()),
        "one_anchor_mape": float(100 * np.abs(_errors(predicted, one_anchor)).mean()),
        "uncalibrated_mape": float(100 * np.abs(_errors(uncalibrated, measured)).mean()),
        "anchor_spread_pct": float(100 * (anchors.max() - anchors.min()) / np.median(anchors)),
        "median_ms": float(np.median(measured)),
        "scaled_by": "anchor and references of its size" if references else "anchor alone",
    }
    repeats = scaled.shape[1] // device.processes
    if repeats > 1:  # the noise floor: repeats of one chunk against their median
        first = np.median(scaled[:, :repeats], axis=1)
        out["repeat_noise_pct"] = float(100 * np.abs(scaled[:, 0] / first - 1).mean())
        out["repeat_within_5"] = [  # each timing of the first process alone as the truth
            float((np.abs(_errors(predicted, scaled[:, k])) <= 0.05).mean()) for k in range(repeats)
        ]
    if device.processes > 1:  # each process alone: its distance from the median, its score
        alone = [np.abs(_errors(predicted, m)) for m in by_process.T]
        out["processes"] = {
            "n": device.processes,
            "noise_pct": [float(100 * np.abs(m / measured - 1).mean()) for m in by_process.T],
            "within_5": [float((e <= 0.05).mean()) for e in alone],
            "within_10": [float((e <= 0.10).mean()) for e in alone],
            "mape": [float(100 * e.mean()) for e in alone],
        }
    if references:  # the same times, each chunk scaled by its (outvoted) anchor, or alone
        by_chunk, chunked = _medians(ms * reference / anchors, device.processes)
        alone, truth = _medians(ms * reference / alone_ms, device.processes)
        every = np.array([len(t) == len(space.tasks) for _, t in subnets])
        out["scales"] = {
            "size-matched": _scale_score(predicted, measured, by_process, every),
            "anchor and references": _scale_score(predicted, chunked, by_chunk, every),
            "anchor alone": _scale_score(predicted, truth, alone, every),
        }
        out["references"] = [asdict(ref) for ref in references]
    if device.eager_ratio:
        out["speedup_vs_torch"] = float(np.median(device.eager_ratio))
    own = {(arch, tasks): ms for arch, tasks, ms in table.validation_times()}
    recorded = [own.get((a.to_string(), tuple(t))) for a, t in subnets]
    if None not in recorded:  # the table's own subnets, re-timed: how far they moved
        every = np.array([len(t) == len(space.tasks) for _, t in subnets])
        drift = measured / np.array(recorded) - 1
        out["drift"] = {
            kind: {
                "n": int(mask.sum()),
                "median_pct": float(100 * np.median(drift[mask])),
                "mean_abs_pct": float(100 * np.abs(drift[mask]).mean()),
                "within_5": float((np.abs(drift[mask]) <= 0.05).mean()),
            }
            for kind, mask in (
                ("all", np.ones_like(every)),
                ("one task", ~every),
                ("every task", every),
            )
            if mask.any()
        }
    out["per_subnet"] = [
        {
            "arch": a.to_string(),
            "tasks": list(t),
            "predicted_ms": float(p),
            "measured_ms": float(y),  # anchor-scaled to the table's reference: the truth
            "ms": m,
            "anchor_ms": x,  # implied with the references, for this table
            "anchor_alone_ms": z,
            "reference_ms": r,  # per (process, repeat): each reference's time in its chunk
            "size_anchor_ms": w,  # what anchor and references imply for its size: its scale
        }
        for (a, t), p, y, m, x, z, r, w in zip(
            subnets,
            predicted,
            measured,
            ms.tolist(),
            anchors.tolist(),
            alone_ms.tolist(),
            device.reference_ms,
            size_anchors.tolist(),
        )
    ]
    return out


def _pairs(references: list[ReferenceSubnet]) -> list[tuple[str, tuple[str, ...]]]:
    return [(ref.arch, ref.tasks) for ref in references]


def _medians(scaled: np.ndarray, processes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per subnet and process, the median of its repeats; per subnet, their median."""
    by_process = np.median(scaled.reshape(len(scaled), processes, -1), axis=2)
    return by_process, np.median(by_process, axis=1)


def _scale_score(
    predicted: np.ndarray, measured: np.ndarray, by_process: np.ndarray, every: np.ndarray
) -> dict:
    """The table scored on times put on its scale one way, over all processes and each, and
    on the subnets serving every task (`every`) alone."""
    error = np.abs(_errors(predicted, measured))
    return {
        "within_5": float((error <= 0.05).mean()),
        "every_task_within_5": float((error[every] <= 0.05).mean()) if every.any() else None,
        "within_10": float((error <= 0.10).mean()),
        "mape": float(100 * error.mean()),
        "bias_pct": float(100 * np.median(_errors(predicted, measured))),
        "process_within_5": [
            float((np.abs(_errors(predicted, m)) <= 0.05).mean()) for m in by_process.T
        ],
        "process_noise_pct": [float(100 * np.abs(m / measured - 1).mean()) for m in by_process.T],
    }


def _as_exported(name: str, space) -> HardwareProfile:
    """The device's profile, TVM's reading the tuning database its profiling run left, as
    `ufo export` does: a held-out subnet's kernels are tuned once, then shared."""
    profile = load_profile(name)
    if profile.backend != "tvm":
        return profile
    tuning_dir = str(default_work_dir(name, space))
    return replace(profile, options={"tuning_dir": tuning_dir, **profile.options})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="ufo_vit_tiny")
    parser.add_argument(
        "--subnets", type=int, default=56, help="rounded up to whole chunks of 8 (default 56)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="timings of each chunk")
    parser.add_argument(
        "--chunking",
        type=int,
        metavar="SEED",
        help="time the subnets in chunks of an order shuffled with SEED instead of the drawn "
        "order: each beside other neighbours (results stay in drawn order, so runs compare "
        "subnet by subnet)",
    )
    parser.add_argument(
        "--vary-chunks",
        action="store_true",
        help="with --processes N: each process after the first times another order (process "
        "k shuffled with seed k, or --chunking's SEED + k), so each subnet's median over "
        "processes is over N sets of neighbours, not one",
    )
    parser.add_argument("--devices", help="comma-separated (default: every cpu-* table shipped)")
    parser.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="DEV=PATH",
        help="also score this table of DEV on the same measurements (repeatable)",
    )
    parser.add_argument("--no-eager", action="store_true", help="skip the torch eager timings")
    parser.add_argument(
        "--own-subnets",
        action="store_true",
        help="time the tables' own validation subnets instead of held-out ones, and report "
        "how far each moved from the time its table recorded (the drift between processes)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="measure in this many processes per device, one after another (several devices: "
        "each in processes of its own), and score against the median over them (each process "
        "alone is scored too)",
    )
    parser.add_argument("--out", help="default tools/results/bench_latency-<space>.md")
    parser.add_argument("--times-out", help=argparse.SUPPRESS)  # a child: write times, no report
    args = parser.parse_args()
    if args.processes < 1:
        parser.error(f"--processes {args.processes}: give 1 or more")
    if args.vary_chunks and args.processes < 2:
        parser.error("--vary-chunks needs --processes 2 or more")
    if args.subnets < 1:
        parser.error(f"--subnets {args.subnets}: give 1 or more")
    chunk = ProfileSettings().chunk
    args.subnets += -args.subnets % chunk  # whole chunks: every anchor beside as many models
    space = load_space(args.space)
    names = (
        args.devices.split(",")
        if args.devices
        else sorted(
            p.parent.name
            for p in (ROOT / "latency_tables").glob(f"cpu-*/{space.name}.yaml")
            if p.parent.name != "cpu-torch"
        )
    )
    tables = [(name, table_for_this_host(space, name)) for name in names]
    references = {  # timed beside the anchor: the shipped table's scale, more robust
        name: LatencyPredictor(space, LatencyTable.load(path, space)).reference_subnets()
        for name, path in tables
    }
    for item in args.table:
        name, _, path = item.partition("=")
        if name not in names:
            parser.error(f"--table {item}: device '{name}' is not among {names}")
        tables.append((name, Path(path)))
    started = time.time()
    seed = ProfileSettings().seed if args.own_subnets else HELD_OUT_SEED
    if args.processes > 1 or len(names) > 1:  # a child times one device, once
        subnets = validation_subnets(space, args.subnets, seed)
        by_name = {name: Device(name, None, _pairs(references[name])) for name in names}
        for times in _in_processes(args, names):
            for name, device in by_name.items():
                device.add_process(times[name])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "onnx").mkdir()
            devices = [
                Device(
                    n,
                    Profiler(space, _as_exported(n, space), work / n, references[n]),
                    _pairs(references[n]),
                )
                for n in names
            ]
            subnets = measure(
                space,
                devices,
                args.subnets,
                seed,
                args.repeats,
                not args.no_eager,
                work,
                args.chunking,
            )
            for device in devices:
                device.profiler.close()
        by_name = {device.name: device for device in devices}
        if args.times_out:
            times = {name: device.times() for name, device in by_name.items()}
            Path(args.times_out).write_text(json.dumps(times) + "\n")
            return 0
    rows = []
    for name, path in tables:
        table = LatencyTable.load(path, space)
        row = evaluate(space, by_name[name], table, subnets)
        folder = table_path(name, space).parent
        shipped = path.resolve() in {p.resolve() for p in host_table_paths(name, space)}
        mark = str(path.resolve().relative_to(folder.resolve())) if shipped else str(path)
        row.update(device=name, table=mark, shipped=shipped)
        row["versions"] = get_backend(load_profile(name).backend).versions()
        row["host"] = host_fingerprint()  # where the held-out subnets were timed
        rows.append(row)
    default = ROOT / "tools" / "results" / f"bench_latency-{space.name}.md"
    out = Path(args.out) if args.out else default
    command = "python " + shlex.join(["tools/bench_latency.py", *sys.argv[1:]])
    write_results(_report(space, rows, args, command, time.time() - started), out)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def _in_processes(args, names: list[str]) -> list[dict]:
    """This command's measurement run in child processes, one after another, one device
    each (a device timed beside another runtime's in one process moved: OpenVINO's tiny
    subnets ran 4-5% slower over their anchor with ONNX Runtime's sessions alive beside
    them); per process round, the times per device."""
    child = [sys.executable, __file__, "--space", args.space, "--subnets", str(args.subnets)]
    child += ["--repeats", str(args.repeats)]
    child += ["--no-eager"] * args.no_eager + ["--own-subnets"] * args.own_subnets
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.processes):
            times = {}
            seed = _chunking(args, k)
            order = [] if seed is None else ["--chunking", str(seed)]
            for name in names:
                path = Path(tmp) / f"process-{k}-{name}.json"
                timed = [*child, *order, "--devices", name, "--times-out", str(path)]
                subprocess.run(timed, check=True)
                times.update(json.loads(path.read_text()))
            out.append(times)
    return out


def _chunking(args, process: int) -> int | None:
    """The seed of the order process `process` (from 0) times the subnets in; None: drawn."""
    if not args.vary_chunks or process == 0:
        return args.chunking
    return (args.chunking or 0) + process


def _report(space, rows: list[dict], args, command: str, seconds: float) -> list[str]:
    host = host_fingerprint()
    what = (
        "of the tables' own validation subnets" if args.own_subnets else "held-out random subnets"
    )
    seed = ProfileSettings().seed if args.own_subnets else HELD_OUT_SEED
    where = (
        "this one process"
        if args.processes == len({r["device"] for r in rows}) == 1
        else f"{args.processes} process(es) per device in turn, one device each"
    )
    over = "" if args.processes == 1 else ", then the median over processes"
    timing = ProfileSettings()
    lines = [
        f"# Latency tables vs end-to-end measurement: {space.name}",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {host['cpu']}, {host['cores']} "
        f"cores, ISA {','.join(host['isa'])}; torch {torch.__version__}; {seconds:.0f} s in all  ",
        f"{args.subnets} {what} (seed {seed}; every 4th serves all "
        "tasks on one trunk), each exported once, compiled per device and measured end to end "
        f"in {where}, interleaved in chunks of 8 "
        + _order_text(args)
        + "with the anchor and 2 reference subnets, "
        f"{timing.rounds} rounds, or as many as fill {timing.fill_seconds:g} s (at most "
        f"{timing.max_rounds}) for a chunk of fast models "
        f"(each visit up to {timing.warm_calls} untimed calls, as many "
        f"as last {WARM_SECONDS * 1e3:g} ms, then {timing.calls_per_round} timed), "
        f"{args.repeats} timing(s) per chunk (median{over}). Error: |predicted - measured| / "
        "measured.",
        "",
        "| device | table | backend | within 5% | within 10% | mean error | max error | "
        "median ms | speed-up vs torch eager |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items())
        speedup = f"{r['speedup_vs_torch']:.2f}x" if "speedup_vs_torch" in r else "-"
        lines.append(
            f"| {r['device']} | {r['table']} | {versions} | {100 * r['within_5']:.0f}% | "
            f"{100 * r['within_10']:.0f}% | {r['mape']:.2f}% | {r['max_error']:.1f}% | "
            f"{r['median_ms']:.2f} | {speedup} |"
        )
    lines += [
        "",
        "Error decomposition (mean absolute error, %, unless signed): the noise floor is the "
        "mean distance of one timing of a chunk from the median of its repeats; bias is the "
        "median signed error (prediction minus measurement); debiased is the mean error once "
        "that bias is removed; one anchor scales every chunk by the run's median anchor instead "
        "of its own; uncalibrated is the bare operator sum; anchor spread is (max - min) / "
        "median of the anchor's times over the run's chunks; each timing alone: within 5% "
        "scored against one timing of every chunk (of the first process) as the truth.",
        "",
        "| device | table | mean error | noise floor | each timing alone: within 5% | "
        "bias (signed) | debiased | one anchor | uncalibrated | anchor spread |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        noise = f"{r['repeat_noise_pct']:.2f}" if "repeat_noise_pct" in r else "-"
        alone = ", ".join(f"{100 * w:.0f}%" for w in r.get("repeat_within_5", [])) or "-"
        lines.append(
            f"| {r['device']} | {r['table']} | {r['mape']:.2f} | {noise} | {alone} | "
            f"{r['bias_pct']:+.2f} | "
            f"{r['debiased_mape']:.2f} | {r['one_anchor_mape']:.2f} | "
            f"{r['uncalibrated_mape']:.2f} | {r['anchor_spread_pct']:.1f} |"
        )
    drift_rows = [
        f"| {r['device']} | {r['table']} | {kind} | {d['n']} | {d['median_pct']:+.2f} "
        f"| {d['mean_abs_pct']:.2f} | {100 * d['within_5']:.0f}% |"
        for r in rows
        for kind, d in r.get("drift", {}).items()
    ]
    if drift_rows:
        lines += _section(
            "Drift between processes: each subnet's time here (anchor-scaled, median of repeats) "
            "against the time its table recorded when it was profiled; median signed and mean "
            "absolute, %.",
            "device | table | subnets serving | n | median drift | mean abs drift | within 5%",
            drift_rows,
        )
    process_rows = [
        f"| {r['device']} | {r['table']} | {k + 1} of {p['n']} | {p['noise_pct'][k]:.2f} | "
        f"{100 * p['within_5'][k]:.0f}% | {100 * p['within_10'][k]:.0f}% | {p['mape'][k]:.2f}% |"
        for r in rows
        if (p := r.get("processes"))
        for k in range(p["n"])
    ]
    scale_rows = [
        f"| {r['device']} | {r['table']} | {name} | {100 * s['within_5']:.0f}% | "
        f"{100 * s['within_10']:.0f}% | {s['mape']:.2f}% | {s['bias_pct']:+.2f} | "
        + _percent(s.get("every_task_within_5"))
        + _per_process(s)
        for r in rows
        for name, s in r.get("scales", {}).items()
    ]
    if scale_rows:
        lines += _section(
            "The scale: each subnet's time put on the table's scale by what its chunk's anchor "
            "and references imply for its predicted size (as measured above: "
            "`matched_anchor_ms`), or each chunk's by its anchor, outvoted by the references "
            "where it ran far out of step with them (`implied_anchor_ms`), or by the anchor "
            "alone; within 5% of the subnets serving every task; per process: "
            "within 5% scored against that process alone, and its process noise (mean "
            "absolute %, against the median over processes).",
            "device | table | scale | within 5% | within 10% | mean error | bias (signed) | "
            "every task: within 5% | each process: within 5% | each process: noise",
            scale_rows,
        )
    if process_rows:
        lines += _section(
            "Each process alone: its anchor-scaled times (median of its repeats) against the "
            "median over all processes (process noise, mean absolute %), and the table scored "
            "against that one process as the ground truth, as a one-process run would score it.",
            "device | table | process | process noise | within 5% | within 10% | mean error",
            process_rows,
        )
    return lines


def _percent(share: float | None) -> str:
    return "- | " if share is None else f"{100 * share:.0f}% | "


def _per_process(score: dict) -> str:
    """The per-process cells of a scale's row ("- | -" for one process)."""
    if len(score["process_within_5"]) < 2:
        return "- | - |"
    within = ", ".join(f"{100 * w:.0f}%" for w in score["process_within_5"])
    return f"{within} | " + ", ".join(f"{n:.1f}" for n in score["process_noise_pct"]) + " |"


def _order_text(args) -> str:
    """How the run ordered the subnets into chunks, for the report's header."""
    seeds = [_chunking(args, k) for k in range(args.processes)]
    if seeds == [None] * len(seeds):
        return ""
    if len(set(seeds)) == 1:
        return f"(of an order shuffled with seed {seeds[0]}) "
    named = ", ".join("drawn" if s is None else f"seed {s}" for s in seeds)
    return f"(each process its own order: {named}) "


def _section(intro: str, columns: str, rows: list[str]) -> list[str]:
    """A Markdown table with its introduction, columns given as "a | b | c"."""
    header = f"| {columns} |"
    return ["", intro, "", header, "|" + "---|" * (columns.count("|") + 1), *rows]


if __name__ == "__main__":
    sys.exit(main())
