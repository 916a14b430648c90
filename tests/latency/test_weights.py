"""The weights timed models carry (latency/weights.py): no exact zeros or ones, seeded, and
what OpenVINO builds of them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from ufo_nas.hardware import load_profile
from ufo_nas.latency.measure import Profiler
from ufo_nas.latency.operator_modules import build_operator
from ufo_nas.latency.operator_set import space_operators
from ufo_nas.latency.weights import NOISE_STD, trained_like_
from ufo_nas.onnx_io import export_for_backend
from ufo_nas.space import SearchSpace
from ufo_nas.supernet import SuperViT, extract


def _values(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().ravel() for p in module.parameters()])


def test_noise_leaves_no_exact_zero_or_one_and_is_seeded(tiny: SearchSpace):
    def supernet(noise_seed: int | None) -> torch.nn.Module:
        torch.manual_seed(0)
        init = SuperViT(tiny.spec)
        return init if noise_seed is None else trained_like_(init, seed=noise_seed)

    before = _values(supernet(None))
    assert (before == 0).sum() > 1000 and (before == 1).sum() > 100  # biases, norm scales
    after = _values(supernet(3))
    assert torch.equal(after, _values(supernet(3)))
    assert not torch.equal(after, _values(supernet(4)))
    assert (after == 0).sum() == 0 and (after == 1).sum() == 0
    noise = (after - before).numpy()
    assert abs(noise.mean()) < 1e-3 and noise.std() == pytest.approx(NOISE_STD, rel=0.01)


def test_profiled_operators_and_subnets_carry_trained_like_weights(tiny: SearchSpace, tmp_path):
    for op in space_operators(tiny.spec):
        module, _ = build_operator(tiny.spec, op, copies=2 if op.kind in ("attn", "ffn") else 1)
        values = _values(module)
        assert (values == 0).sum() == 0 and (values == 1).sum() == 0, op.key
    profiler = Profiler(tiny, load_profile("cpu-onnxruntime"), tmp_path)
    subnet = profiler.subnet(tiny.largest(), tuple(tiny.tasks))
    values = _values(subnet)
    assert (values == 0).sum() == 0 and (values == 1).sum() == 0


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="needs OpenVINO")
def test_openvino_builds_a_profiled_subnet_as_it_builds_a_trained_one(
    tiny: SearchSpace, tmp_path: Path
):
    """OpenVINO drops the adds of zeros and multiplies by ones of init weights (the subnet
    runs faster than a trained one); the profiled subnet keeps every op a trained one has."""
    import openvino as ov

    core = ov.Core()

    def runtime_ops(subnet: torch.nn.Module, name: str) -> list[str]:
        onnx_path = export_for_backend(subnet, tmp_path / f"{name}.onnx", 1)
        compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU")
        return sorted(op.get_type_name() for op in compiled.get_runtime_model().get_ops())

    arch, tasks = tiny.largest(), ("face",)
    torch.manual_seed(0)
    init = SuperViT(tiny.spec).eval()
    trained = trained_like_(SuperViT(tiny.spec), seed=7).eval()  # any weights without 0 or 1
    profiled = Profiler(tiny, load_profile("cpu-openvino"), tmp_path).subnet(arch, tasks)
    want = runtime_ops(extract(trained, arch, tasks), "trained")
    assert runtime_ops(profiled, "profiled") == want
    assert len(runtime_ops(extract(init, arch, tasks), "init")) < len(want)
