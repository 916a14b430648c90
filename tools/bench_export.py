"""P6: every CPU engine and precision against the machine's peak, torch eager and
torch.compile, verified on held-out images. Writes tools/results/bench_export.md.

In one process:
1. the CPU's peak per precision: the ISA bound (cores x clock x MACs per cycle) and what
   each runtime's own GEMM kernels reach (`ufo_nas.latency.peak`);
2. three front subnets (fastest, middle, best) of a face search on cpu-onnxruntime, for
   ufo_vit_tiny (the shipped trained supernet; int8 calibrated on ORL training identities
   s1-s30, every engine verified on the 100 held-out images of s31-s40) and ufo_vit_base
   (a freshly initialised supernet with trained-like noise, for there is no trained one: its
   int8 error is no guide to a trained model's; the same calibration images, verified on
   the 40 of s31-s34);
3. per subnet, each engine built by its backend's `export` (the code `ufo export` runs:
   ONNX Runtime fp32 and dynamic int8, OpenVINO fp32, bf16 and NNCF int8) and ONNX Runtime
   static int8 (QDQ, calibrated; built here, not shipped), verified against PyTorch, and
   timed interleaved with the others of its runtime and the device table's anchor and
   reference subnets as profiling times a chunk (`ProfileSettings.time_models`: p25 over
   rounds of two timed calls, each round over the host's speed in it since 2026-12-07
   night, up to 15 rounds in 30 s, a fast chunk filled to 10 s with up to 60; batch 1, 2
   threads; fixed 21 rounds of one call before 2026-12-07), scaled by
   `Profiler.anchor_for`, so engines compare with their table's prediction; one runtime at
   a time, with no other runtime's engines alive (since 2026-12-05); in `--repeats` chunks
   (3; one before 2026-12-07), each its own order of visits, as `ufo export` times: the
   median of each engine's times and of its prediction errors, each chunk's error beside;
   torch eager and torch.compile (inductor) are timed in chunks of their own, alike.

    python tools/bench_export.py [--spaces ufo_vit_tiny,ufo_vit_base] [--out FILE.md]
        [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from results_io import write_results

from ufo_nas import load_space
from ufo_nas.backends import BackendError, Runner, Target, get_backend
from ufo_nas.backends.onnxruntime import fold_constants, int8_saturates_here
from ufo_nas.checkpoint import load_supernet, shipped_supernet
from ufo_nas.data import load_task_data, read_image_folder
from ufo_nas.hardware import host_fingerprint, load_profile
from ufo_nas.latency.measure import Profiler, ProfileSettings
from ufo_nas.latency.peak import clock, isa_peak_gmacs, measure_gemm_peaks
from ufo_nas.latency.predictor import LatencyPredictor, load_table_for_this_host
from ufo_nas.latency.timing import WARM_CALLS
from ufo_nas.latency.weights import trained_like_
from ufo_nas.onnx_io import export_for_backend
from ufo_nas.search import prepare, search_devices
from ufo_nas.space import Arch, SearchSpace
from ufo_nas.supernet import SuperViT, extract
from ufo_nas.verification import verify

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tools" / "results" / "bench_export.md"
ORL = ROOT.parent / "shared" / "datasets" / "orl_faces"
THREADS = 2
TIMING = ProfileSettings()  # how the tables', `ufo export`'s and `--verify`'s chunks are timed
# (label, backend, precision, the device whose table predicts it)
ENGINES = (
    ("ONNX Runtime fp32", "onnxruntime", "fp32", "cpu-onnxruntime"),
    ("ONNX Runtime int8 dynamic", "onnxruntime", "int8", "cpu-onnxruntime-int8"),
    ("ONNX Runtime int8 static (QDQ)", "onnxruntime-static", "int8", None),
    ("OpenVINO fp32", "openvino", "fp32", "cpu-openvino"),
    ("OpenVINO bf16", "openvino", "bf16", "cpu-openvino-bf16"),
    ("OpenVINO int8 (NNCF)", "openvino", "int8", "cpu-openvino-int8"),
)
GEMMS = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32")]
MIN_COSINE = {"fp32": 0.999, "bf16": 0.999, "int8": 0.998}  # the goals


@dataclass
class Result:
    subnet: str
    engine: str
    precision: str
    macs: int
    ms: float | None = None
    cosine: float | None = None
    predicted_error_pct: float | None = None
    rounds: int | None = None  # the fewest of its chunks'
    chunk_errors_pct: list[float] = field(default_factory=list)  # each chunk's, in order
    note: str = ""


@dataclass
class Case:
    """One front subnet of one space, with what its engines are built and checked on."""

    space: SearchSpace
    arch: Arch
    subnet: torch.nn.Module
    onnx_path: Path
    folder: Path
    calibration: np.ndarray
    held_out: np.ndarray


def static_int8(onnx_path: Path, calibration: np.ndarray, work: Path) -> Runner:
    """ONNX Runtime static int8: QDQ MatMuls (per-channel s8 weights, u8 activations)
    calibrated on the images, loaded with every CPU optimisation. The graph's constants are
    folded first, as for dynamic int8, so each weight is an initializer of its matmul; the
    weights are 7-bit where this CPU's int8 kernels saturate, as for dynamic int8."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            # 32 images: the calibrator keeps every intermediate tensor of every image
            self.batches = iter([{"images": image[None]} for image in calibration[:32]])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    out = work / "model_int8_static.onnx"
    quantize_static(
        str(fold_constants(onnx_path, work)),
        str(out),
        Images(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm"],
        reduce_range=int8_saturates_here(),
    )
    # loaded as ONNX Runtime's backend loads any model: its threads and spinning, ENABLE_ALL
    backend = get_backend("onnxruntime")(Target("cpu", "fp32", THREADS, {"batch": 1}))
    return backend.compile(torch.nn.Identity(), out, work)


def build(backend: str, precision: str, onnx_path: Path, calibration, work: Path) -> Runner:
    work.mkdir(parents=True, exist_ok=True)
    if backend == "onnxruntime-static":
        try:
            return static_int8(onnx_path, calibration, work)
        except Exception as exc:  # the quantiser raises what its graph passes raise
            raise BackendError(f"static quantisation failed: {str(exc).splitlines()[0]}") from None
    target = Target("cpu", precision, THREADS, {"batch": 1})
    return get_backend(backend)(target).export(onnx_path, work, calibration).runner


def images_of(spec, ids: range) -> np.ndarray:
    return torch.cat([read_image_folder(ORL / f"s{k}", spec) for k in ids]).numpy()


def bench_space(name: str, work: Path, repeats: int) -> tuple[list[Result], dict]:
    space = load_space(name)
    spec = space.spec
    front = search_devices(prepare(space, ["face"], ["cpu-onnxruntime"])).fronts[0]
    picks = {"fastest": 0, "middle": len(front.rows) // 2, "best": len(front.rows) - 1}
    trained = shipped_supernet(space)
    torch.manual_seed(0)
    # no trained one: timed with trained-like weights, as its table was (`trained_like_`)
    supernet = load_supernet(trained, space) if trained else trained_like_(SuperViT(spec)).eval()
    if spec.task("face").data:
        calibration = load_task_data(spec, "face", "train").images[:128].numpy()
        held_out = load_task_data(spec, "face", "val").images.numpy()
    else:
        calibration, held_out = images_of(spec, range(1, 31))[:128], images_of(spec, range(31, 35))
    predictors = {}
    for _, _, _, device in ENGINES:
        table = load_table_for_this_host(space, device)[1] if device else None
        if table is not None:
            predictors[device] = LatencyPredictor(space, table)
    results = []
    for pick, index in picks.items():
        row = front.rows[index]
        arch = space.parse(row.arch)
        subnet = extract(supernet, arch, ("face",))
        label = f"{name} {pick} (row {index}, {row.macs / 1e9:.2f} GMACs)"
        folder = work / f"{name}-{pick}"
        # the graph `ufo export` builds a backend's artefact from (and profiling, its tables)
        onnx_path = export_for_backend(subnet, folder / "subnet.onnx", 1)
        case = Case(space, arch, subnet, onnx_path, folder, calibration, held_out)
        for runtime in dict.fromkeys(runtime_of(backend) for _, backend, _, _ in ENGINES):
            engines = [e for e in ENGINES if runtime_of(e[1]) == runtime]
            rows = [
                Result(label, engine, precision, row.macs) for engine, _, precision, _ in engines
            ]
            time_runtime(case, engines, rows, predictors, work, repeats)
            results += rows
        results += torch_engines(subnet, label, row.macs, held_out, repeats)
    return results, {"supernet": "trained (shipped)" if trained else "freshly initialised"}


def runtime_of(backend: str) -> str:
    return backend.removesuffix("-static")


def time_runtime(
    case: Case, engines: list, rows: list[Result], predictors: dict, work: Path, repeats: int
) -> None:
    """Build one runtime's engines of the subnet, verify each on the held-out images, time
    them interleaved with their tables' anchors and references in `repeats` chunks (each
    with its own order of visits), and fill in `rows`: the median over the chunks of the
    engine's time and of its prediction error, each chunk's error on its own scale. Only
    this runtime's engines are alive while they are timed, as in profiling (held out,
    OpenVINO's tiny subnets ran 4-5% slower over their anchor with ONNX Runtime's sessions
    beside them; here, on 2026-12-05, it left OpenVINO's prediction errors where they were);
    they are released on return."""
    models: dict[str, tuple[Runner, np.ndarray]] = {}
    for spec, result in zip(engines, rows):
        engine, backend, precision, _ = spec
        folder = case.folder / f"engine-{ENGINES.index(spec)}"
        try:
            runner = build(backend, precision, case.onnx_path, case.calibration, folder)
        except BackendError as exc:
            result.note = f"not run here: {exc}"
            continue
        check = verify(runner, case.subnet, case.held_out, 1, precision)["outputs"]["face"]
        result.cosine = check["min_cosine"]
        models[engine] = runner, case.held_out[:1]
    if not models:
        return
    profilers = {
        device: Profiler(
            case.space,
            load_profile(device),
            work / "anchors" / device,
            predictors[device].reference_subnets(),
        )
        for engine, _, _, device in engines
        if device in predictors and engine in models  # not one this host cannot run
    }
    for device, profiler in profilers.items():
        models.update(profiler.scale_models(device))
    runners = {name: r for name, (r, _) in models.items()}
    inputs = {name: x for name, (_, x) in models.items()}
    chunks = [order.time_models(runners, inputs) for order in TIMING.orders(repeats)]
    for device, profiler in profilers.items():
        for timings in chunks:
            profiler.pop_anchor_ms(timings, device)
        profiler.close()
    for (engine, _, _, device), result in zip(engines, rows):
        if engine not in chunks[0]:
            continue
        result.ms = float(np.median([timings[engine].ms for timings in chunks]))
        result.rounds = min(timings[engine].calls for timings in chunks) // TIMING.calls_per_round
        if device in predictors:
            table = predictors[device].table
            predicted = float(predictors[device].latency_ms([case.arch], ("face",))[0])
            anchors = predicted / table.reference_anchor_ms
            measured = [
                table.scaled_ms(timings[engine].ms, profilers[device].anchor_for(anchors, k))
                for k, timings in enumerate(chunks)
            ]
            result.chunk_errors_pct = [100 * (predicted - ms) / ms for ms in measured]
            result.predicted_error_pct = float(np.median(result.chunk_errors_pct))


def torch_engines(
    subnet, label: str, macs: int, held_out: np.ndarray, repeats: int
) -> list[Result]:
    """torch eager and torch.compile (inductor) on the subnet, timed in `repeats` chunks of
    their own (the median)."""
    torch.set_num_threads(THREADS)
    compiled = torch.compile(subnet)
    x = torch.from_numpy(held_out[:1])

    def runner(model) -> Runner:
        def run(images: np.ndarray) -> list[np.ndarray]:
            with torch.inference_mode():
                return [model(torch.from_numpy(images)).numpy()]

        return run

    eager, inductor = runner(subnet), runner(compiled)
    with torch.inference_mode():
        compiled(x)  # compiles
    out = []
    for engine, run in (("torch eager", eager), ("torch.compile", inductor)):
        result = Result(label, engine, "fp32", macs)
        if engine == "torch.compile":
            result.cosine = verify(run, subnet, held_out, 1, "fp32")["outputs"]["face"][
                "min_cosine"
            ]
        out.append(result)
    runners, inputs = {"e": eager, "c": inductor}, {"e": x.numpy(), "c": x.numpy()}
    chunks = [order.time_models(runners, inputs) for order in TIMING.orders(repeats)]
    for result, name in zip(out, "ec"):
        result.ms = float(np.median([timings[name].ms for timings in chunks]))
        result.rounds = min(timings[name].calls for timings in chunks) // TIMING.calls_per_round
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", default="ufo_vit_tiny,ufo_vit_base")
    parser.add_argument("--out", type=Path, default=ROOT / "tools" / "results" / "bench_export.md")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="chunks each runtime's engines are timed in, the median kept (default 3; one "
        "chunk before 2026-12-07: one run's error moved 5-11 points between runs)",
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, not {args.repeats}")
    started = time.time()
    host = host_fingerprint()
    gemm_engines = [*GEMMS]
    if "avx512_bf16" in host["isa"]:
        gemm_engines.append(("openvino", "bf16"))
    peaks = {(p.backend, p.precision): p for p in measure_gemm_peaks(gemm_engines, THREADS)}
    results, notes = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.spaces.split(","):
            rows, notes[name] = bench_space(name, Path(tmp), args.repeats)
            results += rows
    lines = report(results, peaks, host, notes, args, time.time() - started)
    write_results(lines, args.out)
    return 0


def _best_peak(peaks: dict, precision: str) -> float | None:
    values = [p.gmacs for (_, prec), p in peaks.items() if prec == precision]
    return max(values) if values else None


def _rounds_line(results: list[Result]) -> str:
    rounds = sorted({r.rounds for r in results if r.rounds is not None})
    span = f"{rounds[0]}" if len(rounds) == 1 else f"{rounds[0]}-{rounds[-1]}"
    return (
        f"{span} rounds a chunk (up to {TIMING.rounds} in "
        f"{TIMING.chunk_seconds:g} s, a fast chunk filled to {TIMING.fill_seconds:g} s with "
        f"up to {TIMING.max_rounds})"
    )


def _clock_line() -> str:
    """What clock the ISA bound counts cycles at, and how it was found."""
    found = clock()
    if found is None:
        return "The ISA bound: no clock known here."
    ghz, how = found
    source = (
        "measured: a chain of dependent adds timed on every core at once"
        if how == "measured"
        else "nominal, from /proc/cpuinfo: a core in turbo runs faster"
    )
    return f"The ISA bound is cores x MACs per cycle x {ghz:.2f} GHz ({source})."


def report(results: list[Result], peaks: dict, host: dict, notes: dict, args, seconds: float):
    isa, cores = host["isa"], host["cores"]
    lines = [
        "# CPU engines against the machine's peak, torch eager and torch.compile (P6)",
        "",
        f"Command: `python tools/bench_export.py --spaces {args.spaces}"
        + (f" --out {args.out}" if args.out != DEFAULT_OUT else "")
        + (f" --repeats {args.repeats}" if args.repeats != 3 else "")
        + "`  ",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {host['cpu']}, {cores} cores, "
        f"ISA {', '.join(isa) or '-'}; torch {torch.__version__}; {seconds:.0f} s in all. "
        f"Batch 1, {THREADS} threads, p25 over interleaved rounds of {TIMING.calls_per_round} "
        f"timed calls each, as profiling times a chunk: {_rounds_line(results)}, each "
        f"visit warm (up to {WARM_CALLS} untimed calls first); {args.repeats} such chunks "
        "per runtime, the median of each engine's times and errors. Supernets: "
        + ", ".join(f"{k} {v}" for k, v in notes.items())
        + ".",
        "",
        "## Peak per precision",
        "",
        _clock_line(),
        "",
        "| precision | ISA bound (GMAC/s) | runtime GEMM | GEMM GMAC/s (M x K x N) | "
        "of the bound |",
        "|---|---|---|---|---|",
    ]
    for (backend, precision), p in peaks.items():
        bound = isa_peak_gmacs(isa, cores, precision)
        shape = "x".join(map(str, p.shape))
        lines.append(
            f"| {precision} | {bound:.0f} | {backend} | {p.gmacs:.1f} ({shape}) | "
            f"{100 * p.gmacs / bound:.0f}% |"
            if bound
            else f"| {precision} | - | {backend} | {p.gmacs:.1f} ({shape}) | - |"
        )
    lines += [
        "",
        "## Engines",
        "",
        "Of peak: the engine's MACs per second over the best GEMM of its precision on this "
        "machine (torch engines against the fp32 GEMM). Prediction error: (predicted - "
        "measured) / measured, the device table's prediction against the engine's time scaled "
        "by what the table's anchor and reference subnets timed in the same chunk imply for a "
        "model of its predicted size ('-' where no table describes the engine): the median "
        "over the chunks, each chunk's beside it.",
        "",
        "| subnet | engine | ms | GMAC/s | of peak | vs eager | vs torch.compile | min cosine "
        "(held out) | each chunk's error | prediction error |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_subnet: dict[str, dict[str, Result]] = {}
    for r in results:
        by_subnet.setdefault(r.subnet, {})[r.engine] = r
    for subnet, engines in by_subnet.items():
        eager, inductor = engines["torch eager"].ms, engines["torch.compile"].ms
        for r in engines.values():
            if r.ms is None:
                lines.append(f"| {subnet} | {r.engine} | {r.note} | | | | | | | |")
                continue
            gmacs = r.macs / (r.ms / 1e3) / 1e9
            peak = _best_peak(peaks, "fp32" if r.engine.startswith("torch") else r.precision)
            lines.append(
                f"| {subnet} | {r.engine} | {r.ms:.2f} | {gmacs:.1f} | "
                f"{f'{100 * gmacs / peak:.0f}%' if peak else '-'} | {eager / r.ms:.2f}x | "
                f"{inductor / r.ms:.2f}x | {'-' if r.cosine is None else f'{r.cosine:.5f}'} | "
                f"{', '.join(f'{e:+.1f}%' for e in r.chunk_errors_pct) or '-'} | "
                f"{'-' if r.predicted_error_pct is None else f'{r.predicted_error_pct:+.1f}%'} |"
            )
    lines += ["", *within_lines(results), "", *summary(by_subnet, peaks)]
    return lines


def within_lines(results: list[Result], limit: float = 5.0) -> list[str]:
    """How many predicted engines land within `limit` percent: by the median over their
    chunks, by each chunk alone, and by the first chunk alone (one chunk, as before
    2026-12-07)."""
    predicted = [r for r in results if r.predicted_error_pct is not None]
    if not predicted:
        return []
    chunks = [e for r in predicted for e in r.chunk_errors_pct]
    first = [r.chunk_errors_pct[0] for r in predicted]

    def count(errors: list[float]) -> str:
        # as printed, to 0.1%
        return f"{sum(abs(round(e, 1)) <= limit for e in errors)} of {len(errors)}"

    return [
        f"Prediction within {limit:g}%: **{count([r.predicted_error_pct for r in predicted])}** "
        f"exports by the median over their chunks; {count(chunks)} single chunks; "
        f"{count(first)} by their first chunk alone."
    ]


def summary(by_subnet: dict[str, dict[str, Result]], peaks: dict) -> list[str]:
    """Per engine, medians over the subnets, and the issue's goals."""
    lines = [
        "## Summary (median over the subnets)",
        "",
        "| engine | of peak | vs best fp32 engine | vs torch.compile | worst min cosine | "
        "bound met on all | faster than torch.compile on all |",
        "|---|---|---|---|---|---|---|",
    ]
    engines = list(next(iter(by_subnet.values())))
    for engine in engines:
        rows = [s[engine] for s in by_subnet.values() if s[engine].ms is not None]
        if not rows:
            lines.append(f"| {engine} | not run here | | | | | |")
            continue
        share, vs_fp32, vs_compile, cosines = [], [], [], []
        for r in rows:
            subnet = by_subnet[r.subnet]
            fp32 = min(
                s.ms
                for s in subnet.values()
                if s.ms is not None and s.precision == "fp32" and not s.engine.startswith("torch")
            )
            peak = _best_peak(peaks, "fp32" if engine.startswith("torch") else r.precision)
            if peak:
                share.append(r.macs / (r.ms / 1e3) / 1e9 / peak)
            vs_fp32.append(fp32 / r.ms)
            vs_compile.append(subnet["torch.compile"].ms / r.ms)
            if r.cosine is not None:
                cosines.append(r.cosine)
        bound = MIN_COSINE[rows[0].precision]
        lines.append(
            f"| {engine} | {f'{100 * np.median(share):.0f}%' if share else '-'} | "
            f"{np.median(vs_fp32):.2f}x | {np.median(vs_compile):.2f}x | "
            f"{f'{min(cosines):.5f}' if cosines else '-'} | "
            f"{'-' if not cosines else 'yes' if min(cosines) >= bound else 'NO'} | "
            f"{'yes' if min(vs_compile) > 1 else 'NO'} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
