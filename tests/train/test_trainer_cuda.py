"""The trainer on a CUDA GPU (skipped without one): the CPU run's numbers, fp16 AMP."""

import copy

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.train import micro
from ufo_nas.train import Trainer, load_recipe
from ufo_nas.train.distributed import start_processes
from ufo_nas.train.monitor import read_metrics

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def train(tmp_path, device: str, out: str, **changes):
    _, path = micro.write_setup(tmp_path, **changes)
    recipe, space = load_recipe(path)
    trainer = Trainer(recipe, space, tmp_path / out, start_processes(device), progress=False)
    return trainer.run()


def losses(run) -> list[float]:
    rows = read_metrics(run / "metrics.csv")
    return [r.value for r in rows if r.kind == "train" and r.metric == "loss"]


def test_cuda_training_follows_the_cpu_run(tmp_path, data_root, monkeypatch):
    """Same seed and batches, and no random draw on the device (Gumbel noise and DropPath
    draw from the device's generator, so no mix path here): the GPU ends where the CPU does."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    space = copy.deepcopy(micro.SPACE)
    space["tasks"]["face"]["paths"] = ["shared", "task"]
    space["tasks"]["object"]["paths"] = ["shared"]
    monkeypatch.setattr(micro, "SPACE", space)
    stages = {"task": {"steps": 4}, "chip": {"steps": 3, "random_subnets": 1}}
    cpu = train(tmp_path, "cpu", "cpu", stages=stages)
    gpu = train(tmp_path, "cuda", "cuda", stages=stages)
    assert "mix" not in (tmp_path / "micro.yaml").read_text()
    a, b = losses(tmp_path / "cpu"), losses(tmp_path / "cuda")
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4)
    start = load_file(str(tmp_path / "cpu" / "task-stage.safetensors"))
    want, got = load_file(str(cpu.supernet)), load_file(str(gpu.supernet))
    assert max(float((want[k] - start[k]).abs().max()) for k in want) > 1e-3  # it trained
    assert max(float((want[k] - got[k]).abs().max()) for k in want) < 1e-3


def test_fp16_amp_with_loss_scaling_learns_and_validates_on_cuda(tmp_path, data_root):
    stages = {"task": {"steps": 40}, "chip": {"steps": 4, "random_subnets": 1}}
    train(tmp_path, "cuda", "amp", amp=True, stages=stages, checkpoint_every=20,
          validate_every=20)  # fmt: skip
    rows = read_metrics(tmp_path / "amp" / "metrics.csv")
    face = [r.value for r in rows if r.kind == "train" and r.task == "face" and r.stage == "task"]
    assert len(face) == 40 and all(np.isfinite(losses(tmp_path / "amp")))
    assert np.mean(face[-8:]) < 0.8 * np.mean(face[:8])
    val = {(r.stage, r.step, r.task, r.subnet) for r in rows if r.kind == "val"}
    assert {("task", 40, "face", "largest"), ("chip", 4, "object", "smallest")} <= val
    state = (tmp_path / "amp" / "checkpoints").glob("chip-*/state.json")
    assert any('"scale"' in p.read_text() for p in state)  # the scaler's state is saved
