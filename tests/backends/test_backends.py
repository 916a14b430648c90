import importlib.util
import logging
import os
import signal
import time
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from ufo_nas.backends import BACKEND_MODULES, BackendError, Target, get_backend
from ufo_nas.onnx_io import export_for_backend, export_onnx
from ufo_nas.supernet import extract

TASKS = ("face", "object")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None,
    reason='openvino is not installed: pip install -e ".[openvino]"',
)


@pytest.fixture(scope="module")
def subnet(tiny, tiny_supernet):
    arch = tiny.parse("d5-h4,2,3,4,3-m3,2,4,4,2-face:smtsm-object:sstmt")
    return extract(tiny_supernet, arch, TASKS)


@pytest.fixture(scope="module")
def onnx_path(subnet, tmp_path_factory):
    return export_onnx(subnet, tmp_path_factory.mktemp("onnx") / "subnet.onnx", opset=18)


def reference(subnet, images: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [out.numpy() for out in subnet(torch.from_numpy(images))]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize(
    "name, precision",
    [
        ("torch", "fp32"),
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
        pytest.param("openvino", "fp32", marks=needs_openvino),
    ],
)
def test_backend_reproduces_pytorch(subnet, onnx_path, tmp_path, name, precision):
    backend = get_backend(name)(Target(precision=precision, threads=1))
    run = backend.compile(subnet, onnx_path, tmp_path)
    images = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    got, want = run(images), reference(subnet, images)
    assert len(got) == len(TASKS)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == np.float32
        if precision == "fp32":
            assert np.abs(g - w).max() <= 1e-4
        else:
            assert cosine(g, w) >= 0.99
    assert run(images)[0] is not got[0]  # every call returns fresh arrays


@needs_cuda
@pytest.mark.parametrize("precision, least_cosine", [("fp32", 0.999999), ("fp16", 0.999)])
def test_torch_on_cuda_reproduces_the_cpu_module(subnet, tmp_path, precision, least_cosine):
    run = get_backend("torch")(Target(device="cuda", precision=precision)).compile(
        subnet, None, tmp_path
    )
    images = np.random.default_rng(1).standard_normal((2, 3, 64, 64), dtype=np.float32)
    got, want = run(images), reference(subnet, images)
    assert len(got) == len(TASKS)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == np.float32
        assert cosine(g, w) >= least_cosine
    assert next(subnet.parameters()).device.type == "cpu"  # the caller's module stays put


@needs_openvino
def test_openvino_compiles_with_the_asked_properties(onnx_path):
    import openvino
    import openvino.properties as props
    import openvino.properties.hint as hints

    compiled = get_backend("openvino")(Target(threads=1)).compiled_model(onnx_path)
    assert compiled.get_property(hints.inference_precision) == openvino.Type.f32
    assert compiled.get_property(props.inference_num_threads) == 1
    assert compiled.get_property(props.num_streams) == 1
    assert compiled.get_property(hints.performance_mode) == "LATENCY"  # read back as a str


@needs_openvino
def test_openvino_fp16_is_f16_or_refused(onnx_path):
    import openvino
    import openvino.properties.hint as hints

    backend = get_backend("openvino")(Target(precision="fp16", threads=1))
    try:
        compiled = backend.compiled_model(onnx_path)
    except BackendError as exc:  # e.g. a CPU that would run bf16 instead
        assert "not the f16 asked for" in str(exc)
    else:
        assert compiled.get_property(hints.inference_precision) == openvino.Type.f16


@pytest.mark.parametrize(
    "name, target, match",
    [
        ("torch", Target(precision="fp16"), "supports cpu: fp32; cuda: fp32/fp16"),
        ("torch", Target(device="tpu"), "unknown device 'tpu'"),
        ("onnxruntime", Target(precision="fp16"), "cannot run fp16 on cpu"),
        ("onnxruntime", Target(device="npu"), "allowed: cpu, cuda, tensorrt"),
        pytest.param("openvino", Target(device="xpu"), "available: CPU", marks=needs_openvino),
    ],
)
def test_backends_refuse_what_they_cannot_serve(name, target, match):
    with pytest.raises(BackendError, match=match):
        get_backend(name)(target)


@needs_openvino
def test_openvino_int8_export_needs_calibration_images(tmp_path):
    """An export quantises on the user's images (profiling on random inputs: see
    test_openvino_quantize); a model that is not there is one line naming it."""
    backend = get_backend("openvino")(Target(precision="int8"))
    with pytest.raises(BackendError, match=r"could not read .*m\.onnx"):
        backend.compile(torch.nn.Identity(), tmp_path / "m.onnx", tmp_path)
    with pytest.raises(BackendError, match="needs calibration images"):
        backend.export(tmp_path / "m.onnx", tmp_path)


class ThreadProbe(torch.nn.Module):
    """Records torch's thread count while it runs (in a class list: the backend deep-copies)."""

    seen: list[int] = []

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return x * 2


def test_torch_runs_at_its_threads_and_gives_the_callers_back(tmp_path):
    caller = torch.get_num_threads()
    ThreadProbe.seen.clear()
    run = get_backend("torch")(Target(threads=caller + 1)).compile(ThreadProbe(), None, tmp_path)
    run(np.ones((1, 3), np.float32))
    assert ThreadProbe.seen == [caller + 1]
    assert torch.get_num_threads() == caller


class ParallelOp(torch.nn.Module):
    """A forward large enough for torch to run it in parallel."""

    def forward(self, x):
        return x + 0 * torch.rand(1_000_000).erfinv_().sum()


def test_a_fork_after_a_torch_run_at_more_threads_does_not_deadlock(tmp_path):
    """libgomp's pool is not fork-safe: a child forked while the parent is left at more
    threads hangs in its first parallel op (what hung mutmut's children)."""
    torch.set_num_threads(1)
    run = get_backend("torch")(Target(threads=2)).compile(ParallelOp(), None, tmp_path)
    run(np.ones((1, 3), np.float32))  # starts libgomp's pool of 2
    pid = os.fork()
    if pid == 0:  # child: a parallel op, then exit without pytest's teardown
        torch.rand(1_000_000).erfinv_()
        os._exit(0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung in a parallel torch op")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible")
def test_torch_refuses_cuda_without_a_gpu():
    with pytest.raises(BackendError, match="no CUDA GPU"):
        get_backend("torch")(Target(device="cuda"))


def test_onnxruntime_names_its_providers_for_a_missing_one():
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(BackendError, match="available: .*CPUExecutionProvider"):
        get_backend("onnxruntime")(Target(device="cuda"))


def test_tensorrt_says_why_it_is_unusable():
    backend = get_backend("tensorrt")
    reason = backend.unavailable_reason()
    if reason is None:
        pytest.skip("tensorrt and a CUDA GPU are available here")
    assert isinstance(reason, str) and reason
    with pytest.raises(BackendError, match="not usable here") as info:
        backend(Target(device="cuda"))
    assert reason in str(info.value)


def test_unknown_backend_lists_the_allowed_names():
    with pytest.raises(BackendError, match="unknown backend 'nope'") as info:
        get_backend("nope")
    assert all(name in str(info.value) for name in BACKEND_MODULES)


def test_unknown_precision_is_refused():
    with pytest.raises(BackendError, match="unknown precision 'int4'"):
        get_backend("torch")(Target(precision="int4"))


@pytest.mark.parametrize(
    "name, match",
    [
        ("torch", "cannot run bf16 on cpu"),
        ("onnxruntime", "cannot run bf16 on cpu"),
    ],
)
def test_bf16_is_refused_where_the_backend_has_none(name, match):
    with pytest.raises(BackendError, match=match):
        get_backend(name)(Target(precision="bf16"))


@needs_openvino
def test_openvino_bf16_runs_bf16_or_is_refused_before_any_work(onnx_path):
    import openvino
    import openvino.properties.hint as hints

    try:
        backend = get_backend("openvino")(Target(precision="bf16", threads=1))
    except BackendError as exc:  # a CPU without AVX-512 BF16 / AMX: refused on construction
        assert "has no bf16 compute here" in str(exc) and "FP32" in str(exc)
        return
    compiled = backend.compiled_model(onnx_path)
    assert compiled.get_property(hints.inference_precision) == openvino.Type.bf16


def test_onnxruntime_fp16_model_keeps_float32_io(subnet, onnx_path, tmp_path):
    import onnxruntime

    from ufo_nas.backends.onnxruntime import convert_fp16

    session = onnxruntime.InferenceSession(
        str(convert_fp16(onnx_path, tmp_path)), providers=["CPUExecutionProvider"]
    )
    assert {io.type for io in session.get_inputs() + session.get_outputs()} == {"tensor(float)"}
    images = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    for g, w in zip(session.run(None, {"images": images}), reference(subnet, images)):
        assert np.abs(g - w).max() <= 1e-2


def test_onnxruntime_cpu_threads_spin_within_a_run_and_stop_when_it_returns(onnx_path, tmp_path):
    """What `SPINNING_RECIPE` records: worker threads spin while a run lasts (asleep, they
    wake for every operator) and stop when it returns (spinning on, they steal the cores of
    the next session timed beside them)."""
    backend = get_backend("onnxruntime")(Target("cpu", "fp32", threads=2))
    options = backend.session(onnx_path, tmp_path).get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    assert options.intra_op_num_threads == 2


def test_int8_quantisation_keeps_its_advice_to_itself(onnx_path, tmp_path, caplog):
    from ufo_nas.backends.onnxruntime import quantize_int8

    with caplog.at_level(logging.WARNING):
        quantize_int8(onnx_path, tmp_path)
    assert (tmp_path / "model_int8.onnx").is_file()
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage()]
    assert logging.getLogger().filters == []  # the filter is gone afterwards


def test_int8_runs_every_linear_of_the_profiled_graph_as_an_int8_matmul(subnet, tmp_path):
    """The graph profiling and `ufo export` build from feeds each weight through Transpose
    (and Slice); unless folded first, the quantiser left every Linear in fp32."""
    from ufo_nas.backends.onnxruntime import quantize_int8

    graph = export_for_backend(subnet, tmp_path / "subnet.onnx", 1)
    quantised = onnx.load(str(quantize_int8(graph, tmp_path)), load_external_data=False)
    ops = Counter(node.op_type for node in quantised.graph.node)
    linears = sum(isinstance(module, torch.nn.Linear) for module in subnet.modules())
    # 32 Linears; a layer after the tasks' paths part runs once per task: 40 matmuls
    assert (linears, ops["MatMulInteger"]) == (32, 40)
    assert ops["Gemm"] == 0
    assert ops["ConvInteger"] == 0  # the patch embedding stays fp32 (no fast int8 kernel)
    initializers = {init.name for init in quantised.graph.initializer}
    float_weights = [
        node.name
        for node in quantised.graph.node
        if node.op_type == "MatMul" and any(name in initializers for name in node.input)
    ]
    assert float_weights == []


def test_int8_quantisation_of_an_unreadable_graph_names_it(tmp_path):
    from ufo_nas.backends.onnxruntime import quantize_int8

    broken = tmp_path / "subnet.onnx"
    broken.write_bytes(b"not a graph")
    with pytest.raises(BackendError, match=r"onnxruntime could not load .*subnet\.onnx"):
        quantize_int8(broken, tmp_path)


@pytest.mark.parametrize("saturates", [False, True])
def test_int8_weights_are_7_bit_on_a_cpu_whose_int8_kernels_saturate(
    subnet, tmp_path, monkeypatch, saturates
):
    """Without VNNI, ONNX Runtime's u8 x s8 kernels add pairs of products in 16 bits and
    saturate on 8-bit weights: there the weights are quantised to 7 bits (and the recipe
    says so); with VNNI, to the full 8."""
    from onnx import numpy_helper

    import ufo_nas.backends.onnxruntime as ort_backend

    monkeypatch.setattr(ort_backend, "int8_saturates_here", lambda: saturates)
    graph = export_for_backend(subnet, tmp_path / "subnet.onnx", 1)
    quantised = onnx.load(str(ort_backend.quantize_int8(graph, tmp_path)))
    weights = [
        numpy_helper.to_array(init)
        for init in quantised.graph.initializer
        if init.data_type == onnx.TensorProto.INT8 and init.name.endswith("_quantized")
    ]
    assert len(weights) == 32  # every Linear's weight (40 matmuls: some run once per task)
    largest = max(int(abs(w.astype(int)).max()) for w in weights)
    assert largest == (64 if saturates else 127)
    recipe = get_backend("onnxruntime").recipe(Target("cpu", "int8"))
    assert (ort_backend.REDUCED_RANGE_RECIPE in recipe) is saturates


@pytest.mark.parametrize(
    ("machine", "isa", "checked", "saturates"),
    [
        ("x86_64", ["avx2"], True, True),  # the AVX2 EPYC
        ("x86_64", ["avx2", "avx512f"], True, True),  # AVX-512 before VNNI
        ("x86_64", ["avx2", "avx512f", "avx512_vnni"], True, False),
        ("x86_64", ["avx2", "avx_vnni"], True, False),
        ("x86_64", ["avx2"], False, False),  # a fingerprint that did not look for VNNI
        ("aarch64", ["neon", "asimd"], True, False),
    ],
)
def test_which_hosts_int8_kernels_saturate_and_what_recipe_their_tables_name(
    machine, isa, checked, saturates
):
    from ufo_nas.backends.onnxruntime import REDUCED_RANGE_RECIPE, int8_saturates
    from ufo_nas.hardware import ISA_FLAGS

    host = {"machine": machine, "isa": isa}
    if checked:
        host["isa_checked"] = list(ISA_FLAGS)
    assert int8_saturates(host) is saturates
    recipe = get_backend("onnxruntime").recipe(Target("cpu", "int8"), host)
    assert (REDUCED_RANGE_RECIPE in recipe) is saturates
    assert REDUCED_RANGE_RECIPE not in get_backend("onnxruntime").recipe(Target("cpu"), host)


def test_onnxruntimes_int8_and_fp16_and_tvms_tuning_are_the_recipes_a_table_records(monkeypatch):
    """What a table records of how its engines were built: the graph as given ("") except
    ONNX Runtime's int8 quantisation, CUDA fp16 conversion and how its CPU threads wait, and
    TVM's tuning budget (kernels tuned with another budget run at other speeds)."""
    import ufo_nas.backends.onnxruntime as ort_backend
    from ufo_nas.backends.onnxruntime import FP16_RECIPE, INT8_RECIPE, SPINNING_RECIPE

    monkeypatch.setattr(ort_backend, "int8_saturates_here", lambda: False)  # a VNNI CPU
    ort = get_backend("onnxruntime")
    assert ort.recipe(Target("cpu", "int8")) == f"{INT8_RECIPE}; {SPINNING_RECIPE}"
    assert "constants folded first" in INT8_RECIPE  # what the fp32-timing tables lacked
    assert ort.recipe(Target("cpu", "fp32")) == SPINNING_RECIPE  # how its threads wait
    assert ort.recipe(Target("cuda", "fp16")) == FP16_RECIPE
    assert ort.recipe(Target("cuda", "fp32")) == ort.recipe(Target("tensorrt", "fp16")) == ""
    tvm = get_backend("tvm")
    for options, recipe in [
        ({}, "MetaSchedule, 16 trials per kernel"),
        ({"tuning_trials": 4}, "MetaSchedule, 4 trials per kernel"),
        ({"tuning_trials": 0}, "untuned (TVM's default schedules)"),
    ]:
        assert tvm.recipe(Target("cpu", "fp32", options=options)) == recipe
    with pytest.raises(BackendError, match=r"options.tuning_trials must be >= 0 .*got -1"):
        tvm.recipe(Target("cpu", "fp32", options={"tuning_trials": -1}))
    for name in BACKEND_MODULES:
        if name not in ("onnxruntime", "tvm"):
            assert get_backend(name).recipe(Target("cpu", "fp32")) == ""


def test_tvm_reads_every_constant_of_the_profiling_export_as_the_same_tensor(subnet, tmp_path):
    """TVM's ONNX frontend reads only tensor-valued Constants; the profiling export also
    writes ints and floats, which must become tensors of the same values and dtypes."""
    import onnxruntime as ort

    from ufo_nas.backends.tvm import constants_as_tensors

    path = export_for_backend(subnet, tmp_path / "model.onnx", 1)
    model = onnx.load(str(path))
    kinds = Counter(n.attribute[0].name for n in model.graph.node if n.op_type == "Constant")
    assert kinds["value_ints"] and kinds["value_float"]  # what the frontend would reject
    fixed = constants_as_tensors(onnx.load(str(path)))
    constants = [n for n in fixed.graph.node if n.op_type == "Constant"]
    assert len(constants) == sum(kinds.values())
    assert {n.attribute[0].name for n in constants} == {"value"}
    images = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    outputs = []
    for graph in (model, fixed):
        session = ort.InferenceSession(
            graph.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        outputs.append(session.run(None, {session.get_inputs()[0].name: images}))
    for before, after in zip(*outputs):
        assert np.array_equal(before, after)
