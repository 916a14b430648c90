"""Exports of a ufo_vit_tiny subnet to every format this machine can run, checked."""

import hashlib
import importlib.util
import json
from dataclasses import replace
from functools import partial

import numpy as np
import onnx
import pytest

from tests.conftest import DATASETS
from ufo_nas.backends import BackendError
from ufo_nas.backends.onnxruntime import (
    INT8_RECIPE,
    REDUCED_RANGE_RECIPE,
    SPINNING_RECIPE,
    int8_saturates_here,
)
from ufo_nas.backends.openvino import INT8_RECIPE as NNCF_RECIPE
from ufo_nas.data import read_image_folder
from ufo_nas.errors import ArchError, UfoError
from ufo_nas.export import (
    PAYS,
    export_subject,
    export_subnet,
    export_target,
    fp32_runner,
    onnx_runner,
    precision_note,
    verify_onnx,
)
from ufo_nas.hardware import load_profile
from ufo_nas.latency.measure import ProfileSettings, matched_anchor_ms
from ufo_nas.latency.predictor import latency_predictor
from ufo_nas.onnx_io import export_for_backend, export_onnx, read_onnx_metadata
from ufo_nas.search.report import DeviceFront, ParetoRow, SearchReport
from ufo_nas.space import Arch
from ufo_nas.supernet import extract
from ufo_nas.verification import MIN_COSINE, VERIFY_IMAGES, verification_images, verify

UNTRAINED = {"checkpoint": None, "trained": False}
HAVE_TVM = importlib.util.find_spec("tvm") is not None
HAVE_NNCF = importlib.util.find_spec("nncf") is not None


ARCH = "d4-h2,3,2,4-m2,3,4,2-face:stms-object:ssss"


@pytest.fixture(autouse=True)
def unfilled_retiming(monkeypatch):
    """Re-timing in 15 rounds, as before filled rounds (a fill takes each chunk to 10 s)."""
    import ufo_nas.export as export_module

    unfilled = partial(export_module.retime, settings=ProfileSettings(fill_seconds=None))
    monkeypatch.setattr(export_module, "retime", unfilled)


def _export(tiny, supernet, where, out, **kwargs):
    arch = tiny.parse(ARCH)
    kwargs.setdefault("time_it", False)
    return export_subnet(supernet, tiny, arch, ("face", "object"), where, out, UNTRAINED, **kwargs)


@pytest.mark.parametrize(
    "fmt, precision, calibrate",
    [
        ("onnx", "fp32", False),
        ("onnxruntime", "fp32", False),
        ("onnxruntime", "int8", False),
        ("openvino", "fp32", False),
        ("openvino", "fp16", False),
        pytest.param(
            "openvino",
            "int8",
            True,
            marks=pytest.mark.skipif(not HAVE_NNCF, reason="needs nncf (.[openvino])"),
        ),
        pytest.param(
            "tvm",
            "fp32",
            False,
            marks=pytest.mark.skipif(not HAVE_TVM, reason="needs apache-tvm (.[tvm])"),
        ),
    ],
)
def test_every_format_here_exports_files_that_match_pytorch(
    tmp_path, tiny, tiny_supernet, fmt, precision, calibrate
):
    where = export_target(None, fmt, precision)
    if fmt == "tvm":  # untuned: the tuning path is tested in tests/latency/test_tvm.py
        where = replace(where, target=replace(where.target, options={"tuning_trials": 0}))
    calibration = None
    if calibrate:
        calibration = read_image_folder(DATASETS / "orl_faces", tiny.spec, limit=128).numpy()
    out = tmp_path / "export"
    manifest = _export(tiny, tiny_supernet, where, out, calibration=calibration)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    alone = tmp_path / "artefact-alone"  # the listed files are all a deployment needs
    alone.mkdir()
    for f in manifest["artefact"]["files"]:
        data = (out / f["path"]).read_bytes()
        assert len(data) == f["bytes"] and hashlib.sha256(data).hexdigest() == f["sha256"]
        (alone / f["path"]).write_bytes(data)
    zeros = np.zeros((1, 3, 64, 64), np.float32)
    if fmt == "onnxruntime":
        import onnxruntime as ort

        session = ort.InferenceSession(
            str(alone / "model.ort.onnx"), providers=["CPUExecutionProvider"]
        )
        assert [o.shape for o in session.run(None, {"images": zeros})] == [(1, 128), (1, 128)]
    if fmt == "openvino":
        import openvino

        compiled = openvino.Core().compile_model(str(alone / "model.xml"), "CPU")
        assert [tuple(o.shape) for o in compiled(zeros).values()] == [(1, 128), (1, 128)]
    meta = read_onnx_metadata(out / "subnet.onnx")
    assert meta["arch"] == manifest["subnet"]["arch"] and meta["tasks"] == ["face", "object"]
    recipes = {  # how the engine was built and runs
        "tvm": "untuned (TVM's default schedules)",
        "onnxruntime": "; ".join(
            [INT8_RECIPE, *[REDUCED_RANGE_RECIPE] * int8_saturates_here(), SPINNING_RECIPE]
        )
        if precision == "int8"
        else SPINNING_RECIPE,
        "openvino": NNCF_RECIPE if precision == "int8" else "",
    }
    assert manifest["artefact"]["recipe"] == recipes.get(fmt, "")
    graph = manifest["artefact"]["onnx"]
    assert graph["opset"] >= 17
    if fmt == "onnx":  # shipped as a graph: any batch
        assert graph["batch"] == "batch" and graph["weights"] is None
    else:  # the graph profiling builds from: the target's batch, weights beside it
        assert graph["batch"] == 1 and (out / graph["weights"]).is_file()
    assert manifest["subnet"]["input"]["shape"][0] == graph["batch"]
    check = manifest["verification"]
    assert check["passed"] and check["min_cosine_required"] == MIN_COSINE[precision]
    assert set(check["outputs"]) == {"face", "object"}
    for out_check in check["outputs"].values():
        assert out_check["min_cosine"] >= MIN_COSINE[precision]
    if precision == "fp32":
        assert max(o["max_abs_diff"] for o in check["outputs"].values()) < 1e-4
    if calibrate:
        assert check["inputs"] == "held-out calibration images"
        assert manifest["artefact"]["calibration_images"] == 128 - 8
    assert manifest["weights"] == UNTRAINED and manifest["latency"] is None
    assert not list(tmp_path.glob(".export.tmp-*"))  # nothing half-written left behind


@pytest.mark.parametrize("profile", ["cpu-onnxruntime", "cpu-openvino"])
def test_profiling_times_the_very_artefact_export_ships(
    tmp_path, tiny, tiny_supernet, monkeypatch, profile
):
    """The same graph, through the backend's own export, loaded back: no plain compile."""
    from ufo_nas.backends import get_backend
    from ufo_nas.latency.measure import Profiler

    where = export_target(load_profile(profile))
    backend = get_backend(where.format)
    built, real_export = [], backend.export

    def spy_export(self, onnx_path, out_dir, calibration=None):
        graph = onnx.load(str(onnx_path), load_external_data=False)
        dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
        built.append(([n.op_type for n in graph.graph.node], dims))
        exported = real_export(self, onnx_path, out_dir, calibration)
        built[-1] += (sorted(f.name for f in exported.files),)
        return exported

    def no_compile(*args):
        raise AssertionError("a subnet was compiled, not exported")

    monkeypatch.setattr(backend, "export", spy_export)
    _export(tiny, tiny_supernet, where, tmp_path / "e")
    monkeypatch.setattr(backend, "compile", no_compile)
    profiler = Profiler(tiny, where.profile, tmp_path / "work")
    try:
        runner, images = profiler.compile_subnet(tiny.parse(ARCH), ("face", "object"))
        assert [o.shape for o in runner(images)] == [(1, 128), (1, 128)]
    finally:
        profiler.close()
    (shipped_ops, shipped_dims, files), (profiled_ops, profiled_dims, same_files) = built
    assert shipped_ops == profiled_ops and shipped_dims == profiled_dims == [1, 3, 64, 64]
    assert files == same_files
    assert not [p for p in (tmp_path / "work").rglob("*") if p.is_file()]  # all removed


def test_retiming_compares_with_the_devices_table_and_torch(tmp_path, tiny, tiny_supernet):
    where = export_target(load_profile("cpu-onnxruntime"))
    manifest = _export(tiny, tiny_supernet, where, tmp_path / "e", time_it=True)
    t = manifest["latency"]
    assert len(t["chunks"]) == 3 and t["chunks"][t["median_chunk"]]["scaled_ms"] == t["scaled_ms"]
    assert t["measured_ms"] > 0 and t["scaled_ms"] > 0 and t["anchor_ms"] > 0
    assert t["anchor_alone_ms"] > 0  # the anchor's own time; anchor_ms is implied with references
    predictor = latency_predictor(tiny, "cpu-onnxruntime")
    table, refs = predictor.table, predictor.reference_subnets()
    # the scale of its size, from the manifest's numbers, each rounded to 1e-4: the times
    # (weights summing to 1) and the result move it by 1e-4 at most, the predicted time by
    # as much as the interpolation's slope makes of 5e-5 ms
    implied = [
        matched_anchor_ms(t["anchor_ms"], refs, t["reference_ms"], ms / table.reference_anchor_ms)
        for ms in (t["predicted_ms"] - 5e-5, t["predicted_ms"] + 5e-5)
    ]
    assert min(implied) - 1e-4 <= t["size_anchor_ms"] <= max(implied) + 1e-4
    scaled = t["measured_ms"] * table.reference_anchor_ms / t["size_anchor_ms"]
    assert t["scaled_ms"] == pytest.approx(scaled, rel=1e-3)
    assert t["predicted_ms"] > 0 and "measured table" in t["predicted_from"]
    assert abs(t["prediction_error_pct"]) < 50
    assert t["speedup_vs_torch"] == pytest.approx(t["torch_eager_ms"] / t["measured_ms"], rel=1e-2)
    assert manifest["runs_on"]["profile"] == "cpu-onnxruntime"
    assert "fp32_ms" not in t and "precision_note" not in t  # fp32 is its own baseline


@pytest.mark.parametrize("device", ["cpu-onnxruntime", None])
def test_a_chunk_that_ran_the_export_slow_is_outvoted_by_the_others(
    tmp_path, tiny, tiny_supernet, monkeypatch, device
):
    """Three chunks, each its own order of visits (seed); the second runs the export 30%
    slow: the reported time is the others' (the median chunk), each chunk's kept."""
    from ufo_nas.latency import measure as measure_module
    from ufo_nas.latency.timing import Timing

    where = export_target(load_profile(device)) if device else export_target(None, "onnxruntime")
    predictor = latency_predictor(tiny, "cpu-onnxruntime") if device else None
    anchors = {
        f"__reference-{k}__": ref.anchors
        for k, ref in enumerate(predictor.reference_subnets() if predictor else ())
    }
    seeds = []

    def fake(runners, inputs, rounds, calls, seed=0, **kwargs):
        seeds.append(seed)
        export_ms = 2.0 * (1.3 if seed == 1 else 1.0)
        ms = {"__anchor__": 1.0, "export": export_ms, "torch": 5.0} | anchors
        return {name: Timing(ms[name], ms[name], 0.01, 2 * rounds) for name in runners}

    monkeypatch.setattr(measure_module, "time_interleaved", fake)
    t = _export(tiny, tiny_supernet, where, tmp_path / "e", time_it=True)["latency"]
    # a chunk timed while other processes loaded the CPU is timed again with its seed
    assert list(dict.fromkeys(seeds)) == [0, 1, 2] and len(t["chunks"]) == 3
    assert [c["measured_ms"] for c in t["chunks"]] == [2.0, 2.6, 2.0]
    assert t["median_chunk"] != 1 and t["measured_ms"] == 2.0
    assert t["speedup_vs_torch"] == 2.5
    if predictor is None:
        assert "scaled_ms" not in t and "predicted_ms" not in t
        return
    ref = predictor.table.reference_anchor_ms
    want = [2 * ref, 2.6 * ref, 2 * ref]  # the manifest's times are rounded to 1e-4
    assert [c["scaled_ms"] for c in t["chunks"]] == pytest.approx(want, abs=1e-4)
    assert t["scaled_ms"] == pytest.approx(2 * ref, abs=1e-4) and t["anchor_ms"] == 1.0
    errors = [c["prediction_error_pct"] for c in t["chunks"]]
    assert t["prediction_error_pct"] == errors[0] == errors[2]
    predicted = t["predicted_ms"]
    assert errors[1] == pytest.approx(100 * (predicted / (2.6 * ref) - 1), abs=0.05)


def test_a_precision_other_than_the_tables_is_not_predicted(tmp_path, tiny, tiny_supernet):
    where = export_target(load_profile("cpu-onnxruntime"), precision="int8")
    assert where.format == "onnxruntime" and not where.predicts
    once = {"time_it": True, "timing_chunks": 1}  # one chunk: this test is not about chunks
    t = _export(tiny, tiny_supernet, where, tmp_path / "e", **once)["latency"]
    assert "predicted_ms" not in t and t["torch_eager_ms"] > 0
    assert t["speedup_vs_fp32"] == pytest.approx(t["fp32_ms"] / t["measured_ms"], rel=1e-2)


def test_int8_is_timed_beside_its_fp32_build_on_the_tables_scale(tmp_path, tiny, tiny_supernet):
    where = export_target(load_profile("cpu-onnxruntime-int8"))
    assert where.predicts
    once = {"time_it": True, "timing_chunks": 1}  # one chunk: this test is not about chunks
    t = _export(tiny, tiny_supernet, where, tmp_path / "e", **once)["latency"]
    assert t["predicted_ms"] > 0 and t["scaled_ms"] > 0 and t["fp32_ms"] > 0
    assert t["speedup_vs_fp32"] == pytest.approx(t["fp32_ms"] / t["measured_ms"], rel=1e-2)
    assert ("precision_note" in t) == (t["speedup_vs_fp32"] < PAYS)


def test_the_build_timed_beside_a_reduced_precision_is_fp32(tmp_path, tiny, tiny_supernet):
    subnet = extract(tiny_supernet.eval(), tiny.parse(ARCH), ("face", "object"))
    onnx_path = export_for_backend(subnet, tmp_path / "subnet.onnx", 1, 18)
    assert fp32_runner(export_target(None, "onnxruntime"), tiny, onnx_path, tmp_path / "w") is None
    int8 = export_target(None, "onnxruntime", "int8")
    images = verification_images(tiny.spec, None, 1)
    fp32_build = verify(
        fp32_runner(int8, tiny, onnx_path, tmp_path / "w"), subnet, images, 1, "fp32"
    )
    int8_build = verify(
        onnx_runner(onnx_path, int8.target, tmp_path / "q"), subnet, images, 1, "int8"
    )
    for task in ("face", "object"):
        exact = fp32_build["outputs"][task]
        assert exact["min_cosine"] > 0.99999 and exact["max_abs_diff"] < 1e-3
        assert int8_build["outputs"][task]["max_abs_diff"] > 10 * exact["max_abs_diff"]


@pytest.mark.parametrize(
    "speedup, pays", [(0.58, False), (0.98, False), (1.09, False), (PAYS, True), (1.67, True)]
)
def test_a_precision_that_does_not_pay_on_this_cpu_is_named(speedup, pays):
    note = precision_note("int8", speedup)
    assert (note is None) == pays
    if not pays:
        assert note.startswith(f"int8 ran {speedup:.2f}x as fast as the fp32 build")
        assert "--precision fp32" in note


def test_tensorrt_fails_with_one_clear_line_and_writes_nothing(tmp_path, tiny, tiny_supernet):
    with pytest.raises(BackendError, match="tensorrt") as info:
        _export(tiny, tiny_supernet, export_target(None, "tensorrt", "fp16"), tmp_path / "t")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "t").exists() and not list(tmp_path.iterdir())


def test_bad_targets_and_subjects_are_refused(tmp_path, tiny, tiny_supernet):
    with pytest.raises(UfoError, match="no deployable artefact"):
        export_target(load_profile("cpu-torch"))
    with pytest.raises(UfoError, match="contradicts device cpu-openvino"):
        export_target(load_profile("cpu-openvino"), "onnxruntime")
    with pytest.raises(UfoError, match="unknown export format 'coreml'"):
        export_target(None, "coreml")
    outside = Arch.parse("d4-h9,2,2,2-m2,2,2,2-face:ssss-object:ssss")
    with pytest.raises(ArchError, match="num_heads 9 not in"):
        export_subnet(
            tiny_supernet,
            tiny,
            outside,
            ("face",),
            export_target(None, "onnx"),
            tmp_path / "x",
            UNTRAINED,
        )
    assert not (tmp_path / "x").exists()


def test_an_existing_output_is_never_touched(tmp_path, tiny, tiny_supernet):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UfoError, match="already exists and is not empty"):
        _export(tiny, tiny_supernet, export_target(None, "onnx"), out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_simplified_onnx_keeps_its_metadata_and_outputs(tmp_path, tiny, tiny_supernet):
    out = tmp_path / "s"
    manifest = _export(tiny, tiny_supernet, export_target(None, "onnx"), out, simplify=True)
    assert manifest["artefact"]["onnx"]["simplified"] and manifest["verification"]["passed"]
    assert read_onnx_metadata(out / "subnet.onnx")["arch"] == manifest["subnet"]["arch"]


def _search_result(tiny, folder, devices=("cpu-onnxruntime",)):
    rows = [ParetoRow(str(tiny.smallest()), {"face": 0.5}, {"face": 0.1}, 1.0, 1, 1)]
    fronts = [DeviceFront(d, True, "table", rows, 10, 1, 0.1, [0.5]) for d in devices]
    fingerprint = tiny.spec.fingerprint()
    report = SearchReport(tiny.name, fingerprint, ["face"], [], {}, 0.0, {}, {}, fronts)
    report.write(folder)
    return folder


def test_export_subject_from_an_arch_or_a_pareto_row(tmp_path, tiny):
    space, arch, tasks, device = export_subject("ufo_vit_tiny", "largest", ["object"])
    assert (space.name, arch, tasks, device) == (tiny.name, tiny.largest(), ("object",), None)
    assert export_subject("ufo_vit_tiny", "smallest")[2] == tiny.tasks
    result = _search_result(tiny, tmp_path / "one")
    space, arch, tasks, device = export_subject("ufo_vit_base", pareto=result, row=0)
    assert space.name == tiny.name and arch == tiny.smallest()  # the result's space, not --space
    assert (tasks, device) == (("face",), "cpu-onnxruntime")
    two = _search_result(tiny, tmp_path / "two", ("cpu-onnxruntime", "rpi4"))
    assert export_subject("ufo_vit_tiny", pareto=two, row=0, device="rpi4")[3] == "rpi4"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"arch": "smallest", "row": 0}, "--row needs --pareto"),
        ({}, "give --pareto with --row, or --arch"),
        ({"arch": "smallest", "pareto": "p", "row": 0}, "not both"),
        ({"pareto": "p"}, "--pareto needs --row"),
        ({"pareto": "two", "row": 0}, "holds fronts for cpu-onnxruntime, rpi4; pick one"),
        ({"pareto": "two", "row": 1, "device": "rpi4"}, "row 1 is out of range: the rpi4 front"),
    ],
)
def test_export_subject_refuses_unclear_subjects(tmp_path, tiny, kwargs, message):
    _search_result(tiny, tmp_path / "two", ("cpu-onnxruntime", "rpi4"))
    if "pareto" in kwargs:
        kwargs = {**kwargs, "pareto": tmp_path / kwargs["pareto"]}
    with pytest.raises(UfoError, match=message):
        export_subject("ufo_vit_tiny", **kwargs)


def test_verify_onnx_runs_the_graph_against_pytorch(tmp_path, tiny, tiny_supernet):
    subnet = extract(tiny_supernet, tiny.smallest(), ("face", "object"))
    check = verify_onnx(export_onnx(subnet, tmp_path / "s.onnx"), subnet)
    assert check["passed"] and check["images"] == VERIFY_IMAGES
    assert set(check["outputs"]) == {"face", "object"}
    assert all(o["max_abs_diff"] < 1e-3 for o in check["outputs"].values())


CHILD_EXPORT = """
import sys, time, torch
from ufo_nas import load_space
from ufo_nas.export import export_subnet, export_target
from ufo_nas.supernet import SuperViT
space = load_space("ufo_vit_tiny")
def hang(what):
    if what.startswith("building"):
        print("ready", flush=True)
        time.sleep(600)
export_subnet(SuperViT(space.spec), space, space.smallest(), ("face",),
              export_target(None, "onnx"), sys.argv[1], {}, time_it=False, progress=hang)
"""


def test_a_killed_export_leaves_a_temporary_the_next_export_removes(tmp_path, tiny, tiny_supernet):
    import os
    import signal
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_EXPORT, str(tmp_path / "a")], stdout=subprocess.PIPE
    )
    try:
        assert child.stdout.readline().strip() == b"ready"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    left = tmp_path / f".a.tmp-{child.pid}"
    assert (left / "subnet.onnx").is_file()
    _export(tiny, tiny_supernet, export_target(None, "onnx"), tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_retiming_on_another_host_and_under_load_says_so(
    tmp_path, tiny, tiny_supernet, monkeypatch
):
    import ufo_nas.export as export_module
    from ufo_nas.errors import UfoWarning
    from ufo_nas.latency import measure as measure_module
    from ufo_nas.latency import predictor as predictor_module
    from ufo_nas.latency.timing import Timing

    other = {"cpu": "Intel(R) Xeon(R) 8480+", "isa": ["avx2", "avx512f"], "machine": "x86_64"}
    monkeypatch.setattr(predictor_module, "_PREDICTORS", {})
    monkeypatch.setattr(predictor_module, "host_fingerprint", lambda: other)
    monkeypatch.setattr(export_module, "host_fingerprint", lambda: other)
    real = measure_module.time_interleaved

    def loaded(runners, inputs, rounds, *args, **kwargs):
        out = real(runners, inputs, rounds, *args, **kwargs)
        return {k: Timing(t.ms, t.median_ms, 0.45, t.calls) for k, t in out.items()}

    monkeypatch.setattr(measure_module, "time_interleaved", loaded)
    where = export_target(load_profile("cpu-onnxruntime"))
    with pytest.warns(UfoWarning, match="measured on another host: AMD EPYC"):
        once = {"time_it": True, "timing_chunks": 1}
        t = _export(tiny, tiny_supernet, where, tmp_path / "e", **once)["latency"]
    # the shipped table names its own host (AVX2 or AVX-512 EPYC), never this Intel one
    assert t["other_host"].startswith("the table was measured on another host (AMD EPYC (")
    assert "vs this host's Intel(R) Xeon(R) 8480+" in t["other_host"]
    assert "for that host, not this one" in t["other_host"]
    assert t["speedup_noisy"] is True and t["torch_eager_spread"] == 0.45
