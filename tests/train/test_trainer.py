"""The trainer on the micro set-up: learning, exact resume after SIGKILL, NaN stop, DDP."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.train.micro import write_setup
from ufo_nas.checkpoint import load_supernet, save_supernet
from ufo_nas.errors import CheckpointError
from ufo_nas.evaluate import evaluate_archs
from ufo_nas.supernet import SuperViT
from ufo_nas.train import Trainer, TrainingError, load_recipe
from ufo_nas.train.distributed import start_processes
from ufo_nas.train.monitor import read_metrics


def train(tmp_path, out="run", resume=False, init=None, **changes):
    _, path = write_setup(tmp_path, **changes)
    recipe, space = load_recipe(path)
    trainer = Trainer(recipe, space, tmp_path / out, start_processes(), init=init, progress=False)
    return trainer, trainer.run(resume=resume)


def cli(tmp_path, *args, wait=True):
    env = {**os.environ, "UFO_NAS_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "ufo_nas", "train", "--recipe", str(tmp_path / "recipe.yaml"),
               "--threads", "1", *args]  # fmt: skip
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_losses_fall_and_validation_scores_as_ufo_eval_does(tmp_path, data_root):
    stages = {"task": {"steps": 40}, "chip": {"steps": 10, "random_subnets": 1}}
    trainer, result = train(tmp_path, stages=stages, validate_every=20, checkpoint_every=20)
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    face = [r.value for r in rows if r.kind == "train" and r.task == "face" and r.stage == "task"]
    assert len(face) == 40 and np.mean(face[-8:]) < 0.8 * np.mean(face[:8])
    val = {(r.stage, r.step, r.task, r.subnet): r.value for r in rows if r.kind == "val"}
    assert set(val) >= {("task", 20, "face", "largest"), ("chip", 10, "object", "smallest")}
    supernet = load_supernet(tmp_path / "run" / "chip-stage.safetensors")
    arch = trainer.space.parse("d1-h1-m1-face:m-object:m")
    [again] = evaluate_archs(supernet, [arch], "object", trainer.val_data["object"])
    assert again.metrics["recall@1"] == pytest.approx(
        val["chip", 10, "object", "smallest"], abs=1e-6
    )
    assert (tmp_path / "run" / "curves.png").stat().st_size > 10_000
    assert result.supernet.is_file() and result.steps == {"task": 40, "chip": 10}


def test_a_non_finite_loss_stops_naming_step_and_task_and_keeps_the_checkpoint(tmp_path, data_root):
    optimizer = {"name": "sgd", "lr": 1e12, "momentum": 0.0, "weight_decay": 0.0, "clip_norm": 0}
    with pytest.raises(TrainingError) as err:
        train(tmp_path, optimizer=optimizer, warmup_steps=0, checkpoint_every=1,
              stages={"task": {"steps": 50}})  # fmt: skip
    text = str(err.value)
    assert (
        "of the task stage: the loss of task" in text
        and "stopped before the optimiser step" in text
    )
    step = int(text.split()[1])
    assert f"the last good checkpoint is {tmp_path / 'run' / 'checkpoints'}" in text
    kept = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    assert kept.name == f"task-{step - 1:07d}"
    assert all(torch.isfinite(v).all() for v in weights(kept / "supernet.safetensors").values())


def test_resume_after_sigkill_ends_with_the_weights_of_an_unbroken_run(tmp_path, data_root):
    # killed after the task stage's first checkpoint (of four), so the resumed run redoes
    # steps of both stages
    stages = {"task": {"steps": 8}, "chip": {"steps": 8, "random_subnets": 1}}
    write_setup(tmp_path, stages=stages, drop_path_rate=0.1)
    whole = cli(tmp_path, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    run = cli(tmp_path, "--out", str(tmp_path / "broken"), wait=False)
    first = tmp_path / "broken" / "checkpoints" / "task-0000002"
    deadline = time.monotonic() + 120
    while not first.is_dir() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    run.send_signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    assert not (tmp_path / "broken" / "supernet.safetensors").exists()
    resumed = cli(tmp_path, "--out", str(tmp_path / "broken"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = (
        weights(tmp_path / "whole" / "supernet.safetensors"),
        weights(tmp_path / "broken" / "supernet.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = read_metrics(tmp_path / "broken" / "metrics.csv")
    steps = [
        (r.stage, r.step)
        for r in rows
        if (r.task, r.kind, r.subnet) == ("face", "train", "largest")
    ]
    assert steps == [("task", s) for s in range(1, 9)] + [("chip", s) for s in range(1, 9)]
    again = cli(tmp_path, "--out", str(tmp_path / "whole"))
    assert again.returncode == 2 and "already exists and is not empty" in again.stderr


def test_checkpoints_redraw_the_curves_at_most_every_30_s_and_each_stage_end(
    tmp_path, data_root, monkeypatch
):
    import ufo_nas.train.trainer as trainer_module

    drawn = []
    real = trainer_module.write_curves
    monkeypatch.setattr(trainer_module, "write_curves", lambda *a: drawn.append(a[2]) or real(*a))
    stages = {"task": {"steps": 4}, "chip": {"steps": 2, "random_subnets": 1}}
    train(tmp_path, stages=stages, checkpoint_every=1)
    assert len(drawn) == 2  # 6 checkpoints in a few seconds: each stage's last
    assert (tmp_path / "run" / "curves.png").stat().st_size > 10_000
    monkeypatch.setattr(trainer_module, "CURVES_EVERY_S", 0.0)
    train(tmp_path, out="every", stages=stages, checkpoint_every=1)
    assert len(drawn) == 2 + 6


def test_resume_refuses_a_changed_recipe(tmp_path, data_root):
    train(tmp_path, stages={"task": {"steps": 4}})
    with pytest.raises(TrainingError, match="was written by another recipe"):
        train(tmp_path, resume=True, stages={"task": {"steps": 4}}, seed=11)


def test_init_from_another_space_is_refused_before_training(tmp_path, data_root):
    _, path = write_setup(tmp_path)
    _, space = load_recipe(path)
    other = yaml.safe_load((tmp_path / "micro.yaml").read_text())
    other["backbone"].update(embed_dim=24, head_dim=12)
    from ufo_nas.spec import space_spec_from_dict

    foreign = tmp_path / "foreign.safetensors"
    save_supernet(SuperViT(space_spec_from_dict(other)), foreign)
    with pytest.raises(CheckpointError, match="was saved for space 'micro'"):
        train(tmp_path, init=foreign)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, data_root):
    """DDP over gloo: both ranks end identical, and equal to one process within 1e-5."""
    write_setup(tmp_path, stages={"task": {"steps": 4}, "chip": {"steps": 3, "random_subnets": 1}})
    one = cli(tmp_path, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    env = {**os.environ, "UFO_NAS_DATA": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(29500 + os.getpid() % 1000), "-m", "ufo_nas", "train",
         "--recipe", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "two"),
         "--threads", "1"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 processes: the weights are identical on every rank" in two.stdout
    a, b = (
        weights(tmp_path / "one" / "supernet.safetensors"),
        weights(tmp_path / "two" / "supernet.safetensors"),
    )
    moved = max(
        float((a[k] - load_file(str(tmp_path / "one" / "task-stage.safetensors"))[k]).abs().max())
        for k in a
    )
    assert moved > 1e-3
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


def test_bf16_autocast_on_cpu_trains_with_finite_losses(tmp_path, data_root):
    train(tmp_path, amp=True, stages={"task": {"steps": 3}, "chip": {"steps": 2}})
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    losses = [r.value for r in rows if r.kind == "train" and r.metric == "loss"]
    assert len(losses) == 3 * 2 + 2 * 2 * 4 and all(np.isfinite(losses))  # 2 random subnets


def test_router_lr_scale_and_init_from_a_run_folder_with_its_heads(tmp_path, data_root):
    stages = {"task": {"steps": 3}}
    trainer, _ = train(tmp_path, stages=stages, router={"tau": 5.0, "lr_scale": 10.0})
    groups = trainer._param_groups("task")
    router = [g for g in groups if any(p is trainer.supernet.blocks[0].router_logits
                                       for p in g["params"])]  # fmt: skip
    assert len(router) == 1 and router[0]["lr"] == pytest.approx(0.5)
    assert all(g["lr"] == pytest.approx(0.05) for g in groups if g is not router[0])
    heads = {k: v.clone() for k, v in trainer.model.heads.state_dict().items()}
    chip, _ = train(tmp_path, out="chip", init=tmp_path / "run", stages={"chip": {"steps": 1}})
    assert chip.stages == ["chip"]
    recipe, space = load_recipe(tmp_path / "recipe.yaml")
    fresh = Trainer(recipe, space, tmp_path / "x", start_processes(), progress=False)
    fresh._load_init(tmp_path / "run")
    assert all(torch.equal(fresh.model.heads.state_dict()[k], v) for k, v in heads.items())
    with pytest.raises(TrainingError, match="neither a checkpoint .* nor a run folder"):
        fresh._load_init(tmp_path / "data")
