"""Subnet -> ONNX -> deployable artefact, verified against PyTorch and re-timed.

Formats: `onnx` (the exported graph, dynamic batch, optionally simplified); the backends
build from the graph profiling builds from (fixed batch, see `_graph`), so a device's table
predicts what is shipped: `onnxruntime` (the graph after ONNX Runtime's portable
optimisations, optionally dynamic int8), `openvino` (IR, fp32/fp16, int8 by NNCF on
calibration images), `tvm` (a MetaSchedule-tuned library; the profiling run's tuning
database is reused), `tensorrt` (a serialised plan). The artefact is loaded
back from its files and run on fixed inputs next to the PyTorch subnet, then timed with the
profiling code (interleaved with the table's anchor and reference subnets, so the time is on
the table's scale and compares with the predicted latency) and, for a reduced precision,
beside the fp32 artefact of the same graph (does the precision pay on this CPU?);
torch eager is timed in its own round.
Everything goes to a temporary folder first, then renamed into place with `manifest.json`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

import ufo_nas
from ufo_nas.backends import (
    BACKEND_MODULES,
    EXPORT_FORMATS,
    Backend,
    BackendError,
    Exported,
    Runner,
    Target,
    get_backend,
)
from ufo_nas.cost import CostModel
from ufo_nas.cvpr22 import parse_arch
from ufo_nas.errors import UfoError
from ufo_nas.fileio import (
    check_empty_folder,
    check_writable,
    remove_stale_temporaries,
    sha256_file,
    temporary_name,
)
from ufo_nas.hardware import HardwareProfile, host_difference, host_fingerprint, runs_here
from ufo_nas.latency.measure import Profiler, ProfileSettings, default_work_dir
from ufo_nas.latency.table import LatencyTable
from ufo_nas.latency.timing import Timing
from ufo_nas.onnx_io import (
    export_for_backend,
    export_onnx,
    external_data,
    onnx_metadata,
    save_with_weights_beside,
)
from ufo_nas.search.report import SearchReport
from ufo_nas.space import Arch, SearchSpace, load_space
from ufo_nas.supernet import SubnetViT, SuperViT, extract
from ufo_nas.verification import VERIFY_SEED, failure, held_out, verification_images, verify

FORMAT, SCHEMA = "ufo-nas-export", 1
FORMATS = EXPORT_FORMATS
NOISY_SPREAD = 0.2  # (p90 - p10) / p10 of timing rounds beyond which a speed-up is noisy
PAYS = 1.1  # a reduced precision at least this much faster than fp32 pays for its accuracy cost
MANIFEST = "manifest.json"


class ExportVerificationError(UfoError):
    """The exported artefact's outputs differ from PyTorch's beyond the stated bound."""


@dataclass(frozen=True)
class ExportTarget:
    """What to write and where it runs: a format, its backend target, and the hardware
    profile it came from (None for an ad-hoc `--backend`; then nothing is predicted)."""

    format: str
    target: Target
    profile: HardwareProfile | None = None

    @property
    def predicts(self) -> bool:
        """Whether the profile's latency table describes this very setup."""
        p = self.profile
        return p is not None and p.backend == self.format and p.precision == self.target.precision


def export_subject(
    space: str,
    arch: str | None = None,
    tasks: Sequence[str] | None = None,
    pareto: str | os.PathLike | None = None,
    row: int | None = None,
    device: str | None = None,
) -> tuple[SearchSpace, Arch, tuple[str, ...], str | None]:
    """What to export: (space, arch, tasks, device of the Pareto front), either from row
    `row` of a search result `pareto` (its front for `device`, needed where it holds
    several), or from `arch` (see `parse_arch`) and `tasks` (default all) of `space`."""
    if pareto is None:
        if row is not None:
            raise UfoError("--row needs --pareto (a ufo-search result)")
        if arch is None:
            raise UfoError("give --pareto with --row, or --arch")
        loaded = load_space(space)
        return loaded, parse_arch(loaded, arch), loaded.select_tasks(tasks), None
    if arch:
        raise UfoError("give either --pareto with --row, or --arch, not both")
    if row is None:
        raise UfoError("--pareto needs --row N (the index column of pareto.csv)")
    report = SearchReport.load(pareto)
    loaded = load_space(report.space)
    if loaded.spec.fingerprint() != report.space_fingerprint:
        raise UfoError(
            f"{pareto} was loaded on another version of space '{report.space}' "
            f"(fingerprint {report.space_fingerprint}, now {loaded.spec.fingerprint()})"
        )
    if device:
        front = report.front(device)
    elif len(report.fronts) == 1:
        front = report.fronts[0]
    else:
        devices = ", ".join(f.device for f in report.fronts)
        raise UfoError(f"{pareto} holds fronts for {devices}; pick one with --device")
    if not 0 <= row < len(front.rows):
        raise UfoError(
            f"row {row} is out of range: the {front.device} front in {pareto} has "
            f"{len(front.rows)} subnets (rows 0-{len(front.rows) - 1})"
        )
    return loaded, loaded.parse(front.rows[row].arch), tuple(report.tasks), front.device


def export_target(
    profile: HardwareProfile | None,
    backend: str | None = None,
    precision: str | None = None,
    threads: int = 0,
) -> ExportTarget:
    """From a hardware profile (its backend is the format), or a format run on this CPU."""
    if profile is not None:
        if backend is not None and backend != profile.backend:
            raise UfoError(
                f"--backend {backend} contradicts device {profile.name}, whose backend is "
                f"{profile.backend}; give one of them"
            )
        if profile.backend not in FORMATS:
            raise UfoError(
                f"device {profile.name} runs {profile.backend}, which has no deployable "
                f"artefact (the reference); export formats: {', '.join(FORMATS)}"
            )
        target = profile.target()
        if precision is not None:
            target = replace(target, precision=precision)
        if threads:
            target = replace(target, threads=threads)
        return ExportTarget(profile.backend, target, profile)
    if backend is None:
        raise UfoError("give a hardware profile (--device) or a format (--backend)")
    if backend not in FORMATS:
        raise UfoError(f"unknown export format '{backend}'; allowed: {', '.join(FORMATS)}")
    return ExportTarget(backend, Target("cpu", precision or "fp32", threads, {"batch": 1}))


ONNX_PRECISIONS = ("fp32",)  # the plain exported graph


def check_export(where: ExportTarget, calibrated: bool, out_dir: str | os.PathLike) -> Path:
    """Everything that would make the export fail, checked before any work: the format
    writes this precision, its backend runs here, int8 has its calibration images, and
    `out_dir` is a new or empty folder in a writable place. Returns `out_dir`."""
    fmt, precision = where.format, where.target.precision
    if fmt == "onnx":
        writes = ONNX_PRECISIONS
        runner = get_backend("onnxruntime")
    else:
        runner = get_backend(fmt)
        writes = runner.export_precisions
    if precision not in writes:
        raise UfoError(
            f"format {fmt} writes {'/'.join(writes)}, not {precision}"
            + ("; for int8 use --backend onnxruntime or openvino" if fmt == "onnx" else "")
        )
    reason = runner.unavailable_reason()
    if reason:
        needs = f"device {where.profile.name} needs" if where.profile else f"format {fmt} needs"
        raise BackendError(f"{needs} backend '{runner.name}', not usable here: {reason}")
    if fmt != "onnx":
        runner(where.target)  # refuses a device, precision or option it cannot serve
    if precision == "int8" and runner.int8_needs_images and not calibrated:
        raise UfoError(f"{fmt} int8 quantises on calibration images: give --calibration FOLDER")
    out_dir = check_empty_folder(out_dir)
    check_writable(out_dir)
    return out_dir


def _batch(target: Target) -> int:
    return int(target.options.get("batch", 1))


def onnx_runner(onnx_path: Path, target: Target, work_dir: Path) -> Runner:
    """An ONNX graph run by ONNX Runtime for `target` (its build files in `work_dir`)."""
    backend = get_backend("onnxruntime")(target)
    return backend.compile(torch.nn.Identity(), onnx_path, work_dir)


def verify_onnx(onnx_path: Path, subnet: SubnetViT) -> dict[str, Any]:
    """`verify` an exported ONNX graph of `subnet`, run by ONNX Runtime on this CPU in fp32,
    on the standard verification images (seeded standard normal)."""
    images = verification_images(subnet.spec, None, 1)
    with tempfile.TemporaryDirectory() as work:
        runner = onnx_runner(onnx_path, Target("cpu", "fp32", 0, {"batch": 1}), Path(work))
        return verify(runner, subnet, images, len(images), "fp32")


def fp32_runner(
    where: ExportTarget, space: SearchSpace, onnx_path: Path, work_dir: Path
) -> Runner | None:
    """The artefact `--precision fp32` would export from the same graph, loaded back from
    `work_dir`, to time beside a reduced precision; None for an fp32 export."""
    if where.target.precision == "fp32":
        return None
    fp32 = replace(where, target=replace(where.target, precision="fp32"))
    work_dir.mkdir(parents=True, exist_ok=True)
    return _artefact(fp32, space, onnx_path, work_dir, None).runner


def precision_note(precision: str, speedup_vs_fp32: float) -> str | None:
    """Why not to ship `precision` where it ran under `PAYS` times as fast as fp32."""
    if speedup_vs_fp32 >= PAYS:
        return None
    return (
        f"{precision} ran {speedup_vs_fp32:.2f}x as fast as the fp32 build of this subnet, "
        f"timed beside it here (under {PAYS}x): on this CPU it does not pay for its accuracy "
        "cost; --precision fp32 exports that build"
    )


# chunks an export is timed in: over 3 processes x 15 tiny exports x 3 builds, a single
# chunk's prediction error was within 5% 390 times of 405, the median of three 134 of 135
# (`tools/check_export_builds.py`)
TIMING_CHUNKS = 3


def retime(
    runner: Runner,
    subnet: SubnetViT,
    images: np.ndarray,
    where: ExportTarget,
    space: SearchSpace,
    settings: ProfileSettings = ProfileSettings(),
    fp32: Runner | None = None,
    chunks: int = TIMING_CHUNKS,
) -> dict[str, Any]:
    """Time the artefact as profiling does (with the table's anchor where the profile's
    table describes this setup), beside `fp32` (the fp32 build, for a reduced precision)
    where given, in `chunks` chunks (each its own order of visits) and report the median
    chunk, by the artefact's time on the table's scale where there is one, else by its own
    (the lower middle one for an even count), with each chunk's times in `chunks`; torch
    eager in a chunk of its own, timed alike (`ProfileSettings.time_models`)."""
    from ufo_nas.latency.predictor import latency_predictor

    if chunks < 1:
        raise UfoError(f"an export is timed in at least one chunk, not {chunks}")
    out: dict[str, Any] = {"percentile": 25, "batch": len(images)}
    models = {"export": (runner, images)} | ({"fp32": (fp32, images)} if fp32 else {})
    predictor = latency_predictor(space, where.profile.name) if where.predicts else None
    if predictor is not None:
        predicted = float(predictor.latency_ms([subnet.arch], subnet.tasks)[0])
    orders = settings.orders(chunks)
    if predictor is not None and predictor.measured:
        profiler = Profiler(
            space,
            where.profile,
            default_work_dir(where.profile.name, space),
            predictor.reference_subnets(),
        )
        try:
            timed, per_chunk = _time_on_table(profiler, predictor.table, predicted, models, orders)
        finally:
            profiler.close()
        recorded = predictor.table.provenance.get("host")
        differs = host_difference(recorded, host_fingerprint()) if recorded else None
        if differs and runs_here(where.profile):
            out["other_host"] = (
                f"the table was measured on another host ({differs}): the prediction and the "
                "time on the table's scale are for that host, not this one"
            )
    else:
        runners = {name: r for name, (r, _) in models.items()}
        inputs = {name: images for name in runners}
        timed = [order.time_models(runners, inputs) for order in orders]
        per_chunk = [{} for _ in timed]
    for record, timings in zip(per_chunk, timed):
        record["measured_ms"] = round(timings["export"].ms, 4)
        if fp32 is not None:
            record["fp32_ms"] = round(timings["fp32"].ms, 4)
    by = "scaled_ms" if "scaled_ms" in per_chunk[0] else "measured_ms"
    middle = sorted(range(chunks), key=lambda k: per_chunk[k][by])[(chunks - 1) // 2]
    out.update({key: value for key, value in per_chunk[middle].items() if key != "measured_ms"})
    out["median_chunk"] = middle
    out["chunks"] = per_chunk
    timing = timed[middle]["export"]
    out["rounds"] = timing.calls // settings.calls_per_round  # more for a fast chunk
    out.update(measured_ms=round(timing.ms, 4), median_ms=round(timing.median_ms, 4))
    out["spread"] = round(timing.spread, 4)
    if fp32 is not None:
        out["speedup_vs_fp32"] = round(timed[middle]["fp32"].ms / timing.ms, 3)
        note = precision_note(where.target.precision, out["speedup_vs_fp32"])
        if note:
            out["precision_note"] = note
    if predictor is not None:
        measured = out.get("scaled_ms", out["measured_ms"])
        out["predicted_ms"] = round(predicted, 4)
        out["predicted_from"] = predictor.source
        out["prediction_error_pct"] = round(100 * (predicted - measured) / measured, 2)
        for record in per_chunk:
            ms = record.get("scaled_ms", record["measured_ms"])
            record["prediction_error_pct"] = round(100 * (predicted - ms) / ms, 2)
    eager = get_backend("torch")(Target("cpu", "fp32", where.target.threads))
    torch_runner = eager.compile(subnet, None, Path("."))
    torch_ms = settings.time_models({"torch": torch_runner}, {"torch": images})
    out["torch_eager_ms"] = round(torch_ms["torch"].ms, 4)
    out["torch_eager_spread"] = round(torch_ms["torch"].spread, 4)
    out["speedup_vs_torch"] = round(torch_ms["torch"].ms / timing.ms, 3)
    out["speedup_noisy"] = torch_ms["torch"].spread > NOISY_SPREAD or timing.spread > NOISY_SPREAD
    return out


def _time_on_table(
    profiler: Profiler,
    table: LatencyTable,
    predicted: float,
    models: dict[str, tuple[Runner, np.ndarray]],
    orders: list[ProfileSettings],
) -> tuple[list[dict[str, Timing]], list[dict[str, Any]]]:
    """Each chunk's timings (one per settings in `orders`) and its record on the table's
    scale: the anchor as it and the references put it, the anchor alone, the references,
    the anchor time for the export's predicted size, the export's time on the scale."""
    timed, per_chunk = [], []
    for k, order in enumerate(orders):
        timings, anchor_ms, steal = profiler.time_chunk(models, order)
        scale = profiler.anchor_for(predicted / table.reference_anchor_ms, k)
        timed.append(timings)
        per_chunk.append(
            {
                "anchor_ms": round(anchor_ms, 4),  # implied with the references
                "anchor_alone_ms": round(profiler.anchor_alone_ms[k], 4),
                "reference_ms": [round(ms, 4) for ms in profiler.reference_ms[k]],
                "size_anchor_ms": round(scale, 4),  # what it implies for the export's size
                "scaled_ms": round(table.scaled_ms(timings["export"].ms, scale), 4),
                "steal_percent": steal,
            }
        )
    return timed, per_chunk


def _graph_batch(where: ExportTarget) -> int | None:
    """The export graph's batch: dynamic (None) for the `onnx` format, shipped as a graph;
    the target's for a backend, as profiling builds it (so the device's table predicts it)."""
    return None if where.format == "onnx" else _batch(where.target)


def _graph(subnet: SubnetViT, where: ExportTarget, path: Path, opset: int) -> Path:
    """The ONNX graph of the export: for the `onnx` format a dynamic-batch, optimised graph
    to ship; for a backend the graph profiling builds its artefacts from (see
    `export_for_backend`)."""
    batch = _graph_batch(where)
    if batch is None:
        return export_onnx(subnet, path, opset=opset)
    return export_for_backend(subnet, path, batch, opset)


def _simplify(path: Path) -> None:
    """Constant folding and dead-code removal (onnxscript's optimiser), metadata kept, the
    weights left where they were (inline, or in the file beside the graph)."""
    import onnxscript.optimizer

    model = onnx.load(str(path))
    props = [(p.key, p.value) for p in model.metadata_props]
    model = onnxscript.optimizer.optimize(model)
    del model.metadata_props[:]
    for key, value in props:
        model.metadata_props.add(key=key, value=value)
    data = external_data(path)
    if data.exists():
        save_with_weights_beside(model, path, data)
    else:
        onnx.save(model, str(path))


def _artefact(
    where: ExportTarget,
    space: SearchSpace,
    onnx_path: Path,
    folder: Path,
    calibration: np.ndarray | None,
) -> Exported:
    """The artefact's files in `folder` and a runner loaded from them."""
    if where.format == "onnx":
        runner = onnx_runner(onnx_path, where.target, folder / ".work")
        return Exported([onnx_path], runner, "run with ONNX Runtime (CPU) here")
    if where.format not in BACKEND_MODULES:
        raise UfoError(f"unknown export format '{where.format}'; allowed: {', '.join(FORMATS)}")
    target = where.target
    if where.format == "tvm" and where.profile is not None and "tuning_dir" not in target.options:
        shared = default_work_dir(where.profile.name, space)  # the profiling run's database
        target = replace(target, options={**target.options, "tuning_dir": str(shared)})
    backend: Backend = get_backend(where.format)(target)
    return backend.export(onnx_path, folder, calibration)


def export_subnet(
    supernet: SuperViT,
    space: SearchSpace,
    arch: Arch,
    tasks: tuple[str, ...],
    where: ExportTarget,
    out_dir: str | os.PathLike,
    weights: dict[str, Any],
    simplify: bool = False,
    calibration: np.ndarray | None = None,
    time_it: bool = True,
    opset: int = 18,
    progress: Callable[[str], None] | None = None,
    timing_chunks: int = TIMING_CHUNKS,
) -> dict[str, Any]:
    """Write the artefact and its manifest into `out_dir` (which must not exist or be
    empty); returns the manifest. Raises ExportVerificationError after writing if the
    outputs differ from PyTorch's beyond the bound."""
    out_dir = check_export(where, calibration is not None, out_dir)
    space.check(arch)
    step = progress or (lambda what: None)
    remove_stale_temporaries(out_dir.parent)  # left by killed exports
    work = out_dir.with_name(temporary_name(f".{out_dir.name}"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        step("extracting and exporting to ONNX")
        subnet = extract(supernet.eval(), arch, tasks)
        spec, batch = space.spec, _batch(where.target)
        onnx_path = _graph(subnet, where, work / "subnet.onnx", opset)
        if simplify:
            step("simplifying the ONNX graph")
            _simplify(onnx_path)
        images = verification_images(spec, calibration, batch)
        if calibration is not None:  # verify on images the quantiser has not seen
            calibration = np.delete(calibration, held_out(len(calibration), len(images)), axis=0)
        step(f"building the {where.format} artefact")
        exported = _artefact(where, space, onnx_path, work, calibration)
        shutil.rmtree(work / ".work", ignore_errors=True)
        step("verifying against PyTorch")
        verification = verify(exported.runner, subnet, images, batch, where.target.precision)
        verification["inputs"] = (
            "held-out calibration images"
            if calibration is not None
            else f"standard normal, seed {VERIFY_SEED}"
        )
        latency = None
        if time_it:
            fp32 = fp32_runner(where, space, onnx_path, work / ".fp32")
            beside = " beside the fp32 build" if fp32 else ""
            step(f"timing{beside} in {timing_chunks} chunk{'s' * (timing_chunks > 1)}")
            latency = retime(
                exported.runner,
                subnet,
                images[:batch],
                where,
                space,
                fp32=fp32,
                chunks=timing_chunks,
            )
            shutil.rmtree(work / ".fp32", ignore_errors=True)
        manifest = _manifest(
            subnet,
            space,
            where,
            exported,
            onnx_path,
            weights,
            verification,
            latency,
            simplify,
            calibration,
        )
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.replace(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = failure(verification, f"{where.format} {where.target.precision}")
    if failed:
        raise ExportVerificationError(f"{failed} (see {out_dir / MANIFEST})")
    return manifest


def _manifest(
    subnet: SubnetViT,
    space: SearchSpace,
    where: ExportTarget,
    exported: Exported,
    onnx_path: Path,
    weights: dict[str, Any],
    verification: dict[str, Any],
    latency: dict[str, Any] | None,
    simplified: bool,
    calibration: np.ndarray | None,
) -> dict[str, Any]:
    graph_batch = _graph_batch(where)
    meta = onnx_metadata(subnet, graph_batch)
    cost = CostModel(space)
    versions = {
        "ufo_nas": ufo_nas.__version__,
        "torch": str(torch.__version__),
        "onnx": onnx.__version__,
    }
    recipe = ""
    if where.format in BACKEND_MODULES:
        backend = get_backend(where.format)
        versions.update(backend.versions())
        recipe = backend.recipe(where.target)
    return {
        "format": FORMAT,
        "schema": SCHEMA,
        "artefact": {
            "format": where.format,
            "precision": where.target.precision,
            "recipe": recipe,
            "files": [
                {"path": f.name, "bytes": f.stat().st_size, "sha256": sha256_file(f)}
                for f in exported.files
            ],
            "runs_here": exported.note or "as built",
            "onnx": {
                "path": onnx_path.name,
                "weights": external_data(onnx_path).name
                if external_data(onnx_path).exists()
                else None,
                "opset": _opset(onnx_path),
                "batch": graph_batch or "batch",
                "simplified": simplified,
            },
            "calibration_images": None if calibration is None else len(calibration),
        },
        "subnet": {
            "space": space.name,
            "space_fingerprint": space.spec.fingerprint(),
            "arch": subnet.arch.to_string(),
            "tasks": list(subnet.tasks),
            "params": int(cost.params([subnet.arch], subnet.tasks)[0]),
            "macs": int(cost.macs([subnet.arch], subnet.tasks)[0]),
            "input": json.loads(meta["input"]),
            "outputs": json.loads(meta["outputs"]),
        },
        "weights": weights,
        "runs_on": {
            "profile": where.profile.name if where.profile else None,
            "device": where.target.device,
            "threads": where.target.threads,
            "batch": _batch(where.target),
        },
        "verification": verification,
        "latency": latency,
        "provenance": {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "versions": versions,
            "host": host_fingerprint(),
        },
    }


def _opset(path: Path) -> int:
    model = onnx.load(str(path), load_external_data=False)
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
