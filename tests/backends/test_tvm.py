import importlib.util
import json
import time
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from ufo_nas.backends import BackendError, Target, get_backend
from ufo_nas.backends.tvm import FAST_TAKE_WARNING, gather_indices_are_constant
from ufo_nas.onnx_io import export_onnx
from ufo_nas.supernet import extract

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tvm") is None,
    reason='Apache TVM is not installed: pip install -e ".[tvm]"',
)
UNTUNED = {"tuning_trials": 0}


@pytest.fixture(scope="module")
def subnet(tiny, tiny_supernet):
    return extract(tiny_supernet, tiny.smallest(), "face")


@pytest.fixture(scope="module")
def onnx_path(subnet, tmp_path_factory):
    return export_onnx(subnet, tmp_path_factory.mktemp("onnx") / "subnet.onnx", opset=18)


def images(batch: int = 1) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, 3, 64, 64), dtype=np.float32)


def assert_reproduces(run, subnet, batch: int = 1) -> None:
    x = images(batch)
    with torch.no_grad():
        want = subnet(torch.from_numpy(x)).numpy()
    (got,) = run(x)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-4


def tvm_backend(**options):
    return get_backend("tvm")(Target(threads=2, options=options))


def test_untuned_build_reproduces_pytorch(subnet, onnx_path, tmp_path, capfd):
    run = tvm_backend(**UNTUNED).compile(subnet, onnx_path, tmp_path)
    assert_reproduces(run, subnet)
    assert run(images())[0] is not run(images())[0]  # every call returns fresh arrays
    assert not (tmp_path / "tvm_tuning").exists()  # no tuning, no database
    # its Gathers (heads, class token) take constant indices: TVM's warning about each says
    # nothing and is not passed on
    model = onnx.load(str(onnx_path))
    assert any(node.op_type == "Gather" for node in model.graph.node)
    assert gather_indices_are_constant(model)
    assert FAST_TAKE_WARNING not in capfd.readouterr().err


def test_dynamic_batch_is_fixed_by_the_batch_option(subnet, onnx_path, tmp_path):
    run = tvm_backend(batch=2, **UNTUNED).compile(subnet, onnx_path, tmp_path)
    assert_reproduces(run, subnet, batch=2)
    with pytest.raises(BackendError, match=r"compiled for input \(2, 3, 64, 64\)"):
        run(images(1))


def test_refuses_what_it_cannot_run():
    with pytest.raises(BackendError, match="fp32 only, not fp16"):
        get_backend("tvm")(Target(precision="fp16"))
    with pytest.raises(BackendError, match="device 'cpu' here, not 'gpu'"):
        get_backend("tvm")(Target(device="gpu"))
    with pytest.raises(BackendError, match="rejects tvm_target"):
        tvm_backend(tvm_target={"kind": "no-such-kind"})
    rpc = {"tracker_host": "127.0.0.1", "tracker_port": 9190, "key": "board"}
    with pytest.raises(BackendError, match="needs options.tvm_target"):
        tvm_backend(rpc=rpc)


def test_default_target_is_this_host():
    target = tvm_backend().tvm_target
    assert target.kind.name == "llvm"
    assert int(target.attrs["num-cores"]) == 2  # MetaSchedule needs it; from Target.threads


def compile_or_skip(backend, subnet, onnx_path, work_dir):
    """Skip where this TVM install cannot tune (the backend says how to fix it)."""
    try:
        return backend.compile(subnet, onnx_path, work_dir)
    except BackendError as exc:
        if "psutil" in str(exc) or "tvm-ffi" in str(exc):
            pytest.skip(str(exc))
        raise


def test_each_tuning_budget_keeps_a_database_of_its_own(tmp_path):
    """Kernels tuned with 4 trials are not what a 16-trial compile should reuse."""
    folders = {tvm_backend(tuning_trials=n).tuning_dir(tmp_path) for n in (4, 16)}
    assert len(folders) == 2 and tvm_backend().tuning_dir(tmp_path) in folders  # default 16


@pytest.mark.slow
def test_tuning_database_is_saved_and_reused(subnet, onnx_path, tmp_path):
    backend = tvm_backend(tuning_trials=4)
    started = time.perf_counter()
    run = compile_or_skip(backend, subnet, onnx_path, tmp_path)
    tuning_s = time.perf_counter() - started
    assert_reproduces(run, subnet)
    records = backend.tuning_dir(tmp_path) / "database_tuning_record.json"
    assert (backend.tuning_dir(tmp_path) / "database_workload.json").is_file()
    tuned = records.read_text()
    per_kernel = Counter(json.loads(line)[0] for line in tuned.splitlines())
    assert len(per_kernel) >= 8 and max(per_kernel.values()) == 4  # the budget is per kernel
    # all 4 for most kernels (a shared budget of 4 would give most of them 0 or 1); a kernel
    # whose search finds fewer distinct schedules (an element-wise one) gets fewer
    assert sum(n == 4 for n in per_kernel.values()) >= len(per_kernel) / 2

    started = time.perf_counter()
    run = backend.compile(subnet, onnx_path, tmp_path)
    assert time.perf_counter() - started < tuning_s / 2
    assert records.read_text() == tuned  # nothing re-tuned
    assert_reproduces(run, subnet)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("tornado") is None,
    reason='the local TVM RPC tracker needs tornado: pip install "apache-tvm[rpc]"',
)
def test_tunes_and_runs_through_an_rpc_tracker(subnet, onnx_path, tmp_path):
    from tvm import rpc
    from tvm.rpc.tracker import Tracker

    tracker = Tracker("127.0.0.1", port=9190, port_end=9290, silent=True)
    server = rpc.Server(
        "127.0.0.1",
        port=9300,
        port_end=9400,
        tracker_addr=("127.0.0.1", tracker.port),
        key="board",
        silent=True,
    )
    try:
        remote = {"tracker_host": "127.0.0.1", "tracker_port": tracker.port, "key": "board"}
        board = {"kind": "llvm", "num-cores": 2}
        backend = tvm_backend(tuning_trials=2, tvm_target=board, rpc=remote)
        run = compile_or_skip(backend, subnet, onnx_path, tmp_path)
        assert_reproduces(run, subnet)
        assert (tmp_path / "model.so").is_file()  # the library uploaded to the board
        records = backend.tuning_dir(tmp_path) / "database_tuning_record.json"
        assert records.read_text().count("\n") >= 8  # measured on the board
    finally:
        server.terminate()
        tracker.terminate()


def test_a_model_exported_where_another_was_runs_itself(tiny, tiny_supernet, tmp_path):
    """The loader caches libraries by path: held-out chunks and re-exports write a new
    `model.so` where an earlier one was loaded, and must run the new one."""
    import shutil

    folder = tmp_path / "subnet-0"
    backend = tvm_backend(**UNTUNED)
    second = tiny.parse(tiny.smallest().to_string().replace("-h2,", "-h4,", 1))  # small: quick
    for k, arch in enumerate((tiny.smallest(), second)):
        subnet = extract(tiny_supernet, arch, "face")
        onnx_file = export_onnx(subnet, tmp_path / f"model-{k}.onnx", opset=18)
        folder.mkdir()
        exported = backend.export(onnx_file, folder)
        assert_reproduces(exported.runner, subnet)
        del exported
        shutil.rmtree(folder)
