"""OpenVINO int8: NNCF quantisation in a child process, so that a native crash can't kill us."""

import importlib.util
import sys

import numpy as np
import pytest
from conftest import DATASETS

from ufo_nas.backends import BackendError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None,
    reason='OpenVINO int8 needs openvino and nncf: pip install -e ".[openvino]"',
)


@pytest.fixture(scope="module")
def fp32_model():
    """A small conv net of OpenVINO ops: conv, relu, conv, global mean, linear (32 outputs)."""
    import openvino
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    x = ops.parameter([1, 3, 16, 16], openvino.Type.f32, name="images")
    h = ops.relu(ops.convolution(x, weights(16, 3, 3, 3), [1, 1], [1, 1], [1, 1], [1, 1]))
    h = ops.convolution(h, weights(16, 16, 3, 3), [1, 1], [1, 1], [1, 1], [1, 1])
    h = ops.reduce_mean(h, np.array([2, 3]), keep_dims=False)
    y = ops.matmul(h, weights(32, 16), transpose_a=False, transpose_b=True)
    return openvino.Model([y], [x], "tiny")


def calibration_images(count: int = 16) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((count, 3, 16, 16), dtype=np.float32)


def outputs(model, images: np.ndarray) -> np.ndarray:
    import openvino
    import openvino.properties as props
    import openvino.properties.hint as hints

    config = {hints.inference_precision: openvino.Type.f32, props.inference_num_threads: 1}
    request = openvino.Core().compile_model(model, "CPU", config).create_infer_request()
    return np.concatenate([request.infer({0: image[None]})[0] for image in images])


def test_quantising_in_a_child_process_gives_an_int8_model_close_to_fp32(fp32_model):
    from ufo_nas.backends.openvino import quantize_nncf

    images = calibration_images()
    int8 = quantize_nncf(fp32_model, images)
    assert any(op.get_type_name() == "FakeQuantize" for op in int8.get_ops())
    assert not any(op.get_type_name() == "FakeQuantize" for op in fp32_model.get_ops())
    want, got = outputs(fp32_model, images), outputs(int8, images)
    cosine = (want * got).sum(1) / (np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1))
    assert got.shape == want.shape and cosine.min() > 0.99


def counting(monkeypatch, code: str) -> list[str]:
    """Replaces the child with `python -c code`; returns the list of folders it was run on."""
    import ufo_nas.backends.openvino as backend

    runs: list[str] = []

    def command(work) -> list[str]:
        runs.append(str(work))
        return [sys.executable, "-c", code]

    monkeypatch.setattr(backend, "_child_command", command)
    return runs


@pytest.mark.skipif(sys.platform == "win32", reason="no death by POSIX signal")
def test_a_child_killed_by_a_signal_is_retried_once_then_reported_in_one_line(
    monkeypatch, fp32_model
):
    from ufo_nas.backends.openvino import quantize_nncf

    runs = counting(monkeypatch, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(BackendError) as error:
        quantize_nncf(fp32_model, calibration_images(2))
    message = str(error.value)
    assert message.startswith(
        "OpenVINO NNCF int8 quantisation crashed (signal 11, SIGSEGV) twice in a child process; "
    )
    assert "\n" not in message
    assert len(runs) == 2 and runs[0] == runs[1]


def test_a_python_error_in_the_child_is_reported_with_its_last_line(monkeypatch, fp32_model):
    from ufo_nas.backends.openvino import quantize_nncf

    runs = counting(monkeypatch, "print('progress'); raise ValueError('no images')")
    match = r"failed \(exit 1: ValueError: no images\) twice in a child process; "
    with pytest.raises(BackendError, match=match) as error:
        quantize_nncf(fp32_model, calibration_images(2))
    assert "\n" not in str(error.value) and len(runs) == 2


def test_without_nncf_nothing_is_started(monkeypatch, fp32_model):
    import ufo_nas.backends.openvino as backend

    runs = counting(monkeypatch, "pass")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "nncf" else find_spec(name)
    )
    with pytest.raises(BackendError, match="openvino int8 needs NNCF"):
        backend.quantize_nncf(fp32_model, calibration_images(2))
    assert runs == []


def test_int8_export_runs_every_linear_of_the_profiled_graph_in_int8(tiny, tiny_supernet, tmp_path):
    """The graph `ufo export` builds from feeds each weight through Transpose (and Slice);
    unfolded, NNCF left all but one of a ViT-Base subnet's Linears in f32 (int8 ran as fast
    as fp32)."""
    import torch

    from ufo_nas.backends import Target, get_backend
    from ufo_nas.onnx_io import export_for_backend
    from ufo_nas.supernet import extract

    arch = tiny.parse("d5-h4,2,3,4,3-m3,2,4,4,2-face:smtsm-object:sstmt")
    subnet = extract(tiny_supernet, arch, ("face", "object"))
    graph = export_for_backend(subnet, tmp_path / "subnet.onnx", 1)
    images = np.random.default_rng(0).standard_normal((16, 3, 64, 64), dtype=np.float32)
    backend = get_backend("openvino")(Target("cpu", "int8", 1, {"batch": 1}))
    backend.export(graph, tmp_path / "int8", images)
    compiled = backend.compiled_model(tmp_path / "int8" / "model.xml")
    precisions = [
        op.get_rt_info()["runtimePrecision"].astype(str)
        for op in compiled.get_runtime_model().get_ordered_ops()
        if op.get_rt_info()["layerType"].astype(str) == "FullyConnected"
    ]
    linears = sum(isinstance(module, torch.nn.Linear) for module in subnet.modules())
    # 32 Linears; a layer after the tasks' paths part runs once per task: 40 matmuls (which
    # OpenVINO may split further)
    assert linears == 32 and len(precisions) >= 40
    assert [p for p in precisions if p not in ("i8", "u8")] == []


@pytest.mark.skipif(
    not (DATASETS / "orl_faces").is_dir(), reason=f"orl_faces not found in {DATASETS}"
)
def test_int8_export_of_the_trained_supernet_keeps_face_embeddings_on_held_out_faces(tmp_path):
    """The shipped trained supernet's middle face-front subnet, NNCF int8 calibrated on ORL
    s1-s30, against PyTorch on the 100 images of s31-s40: min cosine 0.99961; with NNCF's
    default SmoothQuant for transformers (alpha 0.95) it was 0.99841."""
    from ufo_nas import load_space
    from ufo_nas.backends import Target, get_backend
    from ufo_nas.checkpoint import load_supernet, shipped_supernet
    from ufo_nas.data import load_task_data
    from ufo_nas.onnx_io import export_for_backend
    from ufo_nas.supernet import extract
    from ufo_nas.verification import verify

    space = load_space("ufo_vit_tiny")
    supernet = load_supernet(shipped_supernet(space), space)
    subnet = extract(supernet, space.parse("d5-h2,3,4,4,4-m2,2,3,2,3-face:mstss"), ("face",))
    calibration = load_task_data(space.spec, "face", "train", root=DATASETS).images[:128]
    held_out = load_task_data(space.spec, "face", "val", root=DATASETS).images.numpy()
    graph = export_for_backend(subnet, tmp_path / "subnet.onnx", 1)
    backend = get_backend("openvino")(Target("cpu", "int8", 1, {"batch": 1}))
    exported = backend.export(graph, tmp_path / "int8", calibration.numpy())
    check = verify(exported.runner, subnet, held_out, 1, "int8")["outputs"]["face"]
    assert len(held_out) == 100 and check["min_cosine"] >= 0.999


def int8_linear_precisions(monkeypatch, build) -> list[str]:
    """The runtime precision of every FullyConnected of the model `build()` compiles."""
    import ufo_nas.backends.openvino as backend

    compiled = []
    runner = backend.request_runner
    monkeypatch.setattr(backend, "request_runner", lambda c: compiled.append(c) or runner(c))
    build()
    return [
        op.get_rt_info()["runtimePrecision"].astype(str)
        for op in compiled[-1].get_runtime_model().get_ordered_ops()
        if op.get_rt_info()["layerType"].astype(str) == "FullyConnected"
    ]


def test_int8_profiling_quantises_an_operator_on_random_inputs_of_its_shape(
    tiny, tmp_path, monkeypatch
):
    """A table times what an int8 export runs: every Linear of a profiled operator model
    (tokens in, tokens out: no images to calibrate on) runs in int8, and its outputs stay
    those of the fp32 operator."""
    import torch

    from ufo_nas.backends import Target, get_backend
    from ufo_nas.latency.operator_modules import build_operator
    from ufo_nas.latency.operator_set import space_operators
    from ufo_nas.onnx_io import export_module

    ffn = next(op for op in space_operators(tiny.spec) if op.kind == "ffn")
    module, example = build_operator(tiny.spec, ffn, 1, 2)
    export_module(module, example, tmp_path / "op.onnx")
    backend = get_backend("openvino")(Target("cpu", "int8", 1))
    runners = []
    precisions = int8_linear_precisions(
        monkeypatch, lambda: runners.append(backend.compile(module, tmp_path / "op.onnx", tmp_path))
    )
    linears = sum(isinstance(m, torch.nn.Linear) for m in module.modules())
    assert linears == 4 and len(precisions) >= linears
    assert [p for p in precisions if p not in ("i8", "u8")] == []
    with torch.no_grad():
        want = module(example).flatten().numpy()
    got = runners[0](example.numpy())[0].flatten()
    assert np.dot(want, got) / (np.linalg.norm(want) * np.linalg.norm(got)) > 0.99


def test_an_int8_table_times_subnets_quantised_as_exports_are(tiny, tmp_path, monkeypatch):
    """The profiler builds an int8 subnet through the export path, on random images: every
    Linear runs in int8, and the table's recipe says how its engines were built."""
    from ufo_nas.backends.openvino import INT8_RECIPE
    from ufo_nas.hardware import load_profile
    from ufo_nas.latency.measure import Profiler, new_table

    profile = load_profile("cpu-openvino-int8")
    profiler = Profiler(tiny, profile, tmp_path)
    arch = tiny.parse("d4-h4,2,2,3-m3,4,3,3-face:smsm-object:mmtt-digits:msst")
    precisions = int8_linear_precisions(
        monkeypatch, lambda: profiler.compile_subnet(arch, ("face",))
    )
    profiler.close()
    assert len(precisions) >= 4 * 4 and [p for p in precisions if p not in ("i8", "u8")] == []
    assert new_table(tiny, profile).provenance["recipe"] == INT8_RECIPE
