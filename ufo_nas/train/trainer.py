"""`ufo train`: the task stage, then the chip stage, on one process or many.

Each step: seed torch from (seed, stage, step) (the same on every rank, so the router's
Gumbel noise agrees), draw every task's batch (`TaskBatches`), run the stage's subnets
(`Stage.subnets`) over the heterogeneous batch, accumulating gradients (DDP reduces on the
last), check the losses on every rank, clip, step the optimiser and the LR schedule.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from tqdm import tqdm

from ufo_nas.checkpoint import load_supernet, save_supernet
from ufo_nas.data import PRIMARY_METRIC, DataError, ImageSet, load_task_data
from ufo_nas.errors import UfoError
from ufo_nas.evaluate import evaluate_archs
from ufo_nas.space import SearchSpace
from ufo_nas.supernet import SuperViT
from ufo_nas.train.batches import TaskBatches
from ufo_nas.train.checkpointing import (
    STAGE_ORDER,
    TrainState,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from ufo_nas.train.curves import write_curves
from ufo_nas.train.distributed import (
    Processes,
    barrier,
    mean_over_processes,
    replica_difference,
    wrap,
)
from ufo_nas.train.heads import TaskHead
from ufo_nas.train.model import MultiTaskModel
from ufo_nas.train.monitor import MetricRow, MetricsLog, read_metrics
from ufo_nas.train.recipe import Recipe
from ufo_nas.train.stages import Stage, make_stage

RANDOM_SCHEME = (
    "torch.manual_seed(seed, stage, step) each step; batches and subnets from (seed, step)"
)
NO_DECAY = ("pos_embed", "cls_token", "router_logits")
ROUTER = " router"  # the parameter group of the router logits (no task is named so)
CURVES_EVERY_S = 30.0  # a checkpoint redraws curves.png if the last draw is this old


class TrainingError(UfoError):
    """Training cannot go on (a non-finite loss, a checkpoint of another recipe, ...)."""


@dataclass(frozen=True)
class TrainResult:
    supernet: Path  # the final supernet checkpoint
    steps: dict[str, int]
    seconds: float
    processes: int


def step_seed(seed: int, stage: str, step: int) -> int:
    return (seed * 1_000_003 + STAGE_ORDER.index(stage) * 10_000_019 + step) % (2**63)


class Trainer:
    def __init__(
        self,
        recipe: Recipe,
        space: SearchSpace,
        out: Path,
        procs: Processes,
        init: Path | None = None,
        stages: tuple[str, ...] = STAGE_ORDER,
        progress: bool = True,
    ):
        self.recipe, self.space, self.out, self.procs = recipe, space, Path(out), procs
        self.stages = [s for s in stages if recipe.stage_steps(s) > 0]
        if not self.stages:
            raise TrainingError(
                f"{recipe.source}: none of the stages {', '.join(stages)} has steps"
            )
        self.progress = progress and procs.main
        spec = replace(space.spec, drop_path_rate=recipe.drop_path_rate)
        self.train_data = {t: self._data(t, "train") for t in recipe.task_names}
        self.val_data = {t: self._data(t, "val") for t in recipe.task_names}
        self.batches = {
            t: TaskBatches(self.train_data[t], recipe.task(t), recipe.seed, procs.rank, procs.world)
            for t in recipe.task_names
        }
        torch.manual_seed(recipe.seed)
        supernet = SuperViT(spec)
        heads = {t: self._head(t, spec) for t in recipe.task_names}
        self.model = MultiTaskModel(supernet, heads).to(procs.device)
        self.init = init
        self._curves_drawn = time.monotonic()  # of the last curves.png (or the start)
        self.supernet.set_gumbel(recipe.router_tau, recipe.router_hard)

    @property
    def supernet(self) -> SuperViT:
        return self.model.supernet

    def _data(self, task: str, split: str) -> ImageSet:
        spec = self.space.spec
        folder = self.recipe.task(task).data
        if folder is not None:
            spec = replace(
                spec,
                tasks=tuple(replace(t, data=folder) if t.name == task else t for t in spec.tasks),
            )
        try:
            return load_task_data(spec, task, split)
        except DataError as exc:
            raise DataError(f"task '{task}' of {self.recipe.source}: {exc}") from None

    def _head(self, task: str, spec) -> TaskHead:
        kind = spec.task(task).kind
        classes = self.batches[task].num_classes
        classify = kind == "classification"
        width = spec.task(task).embed_dim
        if classify and width != classes:
            raise TrainingError(
                f"task '{task}' classifies {classes} classes of {self.train_data[task].name}, "
                f"but its embed_dim in {spec.source} is {width}: make it {classes}"
            )
        return TaskHead(
            self.recipe.task(task), spec.embed_dim if classify else width, classes, classify
        )

    # --- set-up of a stage ----------------------------------------------------------------
    def _param_groups(self, stage: str) -> list[dict]:
        """Shared parameters at the base LR, each task's own (neck, head, task FFNs) at its
        lr_scale, the router logits at the router's; no weight decay on biases, norms,
        embeddings and router logits."""
        owner: dict[int, str] = {}
        for task in self.recipe.task_names:
            for module in (self.supernet.necks[task], self.model.heads[task]):
                owner.update({id(p): task for p in module.parameters()})
            for block in self.supernet.blocks:
                if task in block.task_mlps:
                    owner.update({id(p): task for p in block.task_mlps[task].parameters()})
        frozen = set()
        if stage == "task" and self.recipe.task_stage.freeze_shared:
            frozen = {id(p) for block in self.supernet.blocks for p in block.mlp.parameters()}
        for task, head in self.model.heads.items():  # a classifier neck is written, not learnt
            if head.classify:
                frozen |= {id(p) for p in self.supernet.necks[task].parameters()}
        groups: dict[tuple[str, bool], list] = {}
        for name, p in self.model.named_parameters():
            p.requires_grad_(id(p) not in frozen)
            if id(p) in frozen:
                continue
            leaf = name.split(".")[-1]
            decay = p.ndim > 1 and leaf not in NO_DECAY
            group = ROUTER if leaf == "router_logits" else owner.get(id(p), "")
            groups.setdefault((group, decay), []).append(p)
        wd, lr = self.recipe.optimizer.weight_decay, self.recipe.optimizer.lr
        scale = {task: self.recipe.task(task).lr_scale for task in self.recipe.task_names}
        scale.update({"": 1.0, ROUTER: self.recipe.router_lr_scale})
        return [
            {"params": params, "lr": lr * scale[task], "weight_decay": wd if decay else 0.0}
            for (task, decay), params in groups.items()
        ]

    def _optimizer(self, stage: str, steps: int):
        opt = self.recipe.optimizer
        name = {"sgd": "momentum", "adamw": "adamw"}[opt.name]  # timm's "sgd" is Nesterov's
        optimizer = create_optimizer_v2(
            self._param_groups(stage), opt=name, lr=opt.lr, momentum=opt.momentum
        )
        schedule = CosineLRScheduler(
            optimizer,
            t_initial=steps,
            lr_min=self.recipe.min_lr,
            warmup_t=min(self.recipe.warmup_steps, max(0, steps - 1)),
            warmup_lr_init=opt.lr * 0.01,
            t_in_epochs=False,
        )
        return optimizer, schedule

    def _start(self, resume: bool) -> tuple[int, int, TrainState | None, dict | None]:
        """(index of the first stage to run, its first step, resumed state, optimiser state)."""
        found = latest_checkpoint(self.out) if resume else None
        if found is None:
            if self.init is not None:
                self._load_init(self.init)
            else:
                for block in self.supernet.blocks:  # task FFNs start as the shared one
                    for task_mlp in block.task_mlps.values():
                        task_mlp.load_state_dict(block.mlp.state_dict())
            return 0, 0, None, None
        state, optim = load_checkpoint(found, self.supernet, self.model.heads)
        if state.recipe_fingerprint != self.recipe.fingerprint():
            raise TrainingError(
                f"{found} was written by another recipe (fingerprint "
                f"{state.recipe_fingerprint}, this one {self.recipe.fingerprint()} from "
                f"{self.recipe.source}); resume with the recipe and options it was run with"
            )
        if state.stage not in self.stages:
            raise TrainingError(f"{found} is of the {state.stage} stage, not run by this command")
        index = self.stages.index(state.stage)
        if state.step >= self.recipe.stage_steps(state.stage):
            return index + 1, 0, None, None
        return index, state.step, state, optim

    def _load_init(self, init: Path) -> None:
        """Start from a supernet file, or from a checkpoint (or the newest one of a run
        folder) with its task heads, so a chip stage goes on from a task stage's heads."""
        if not init.is_dir():
            self.supernet.load_state_dict(load_supernet(init, self.space).state_dict())
            return
        found = init if (init / "state.json").is_file() else latest_checkpoint(init)
        if found is None:
            raise TrainingError(
                f"--init {init}: a folder, but neither a checkpoint (no state.json) nor a run "
                "folder (no checkpoints/ with one inside); give a supernet .safetensors, a "
                "checkpoint folder or a run folder"
            )
        load_checkpoint(found, self.supernet, self.model.heads)

    # --- the loop ------------------------------------------------------------------------
    def run(self, resume: bool = False) -> TrainResult:
        began = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        first_stage, first_step, state, optim = self._start(resume)
        keep = (state.stage, state.step) if state else None
        if resume and keep is None and first_stage > 0:
            keep = (
                self.stages[first_stage - 1],
                self.recipe.stage_steps(self.stages[first_stage - 1]),
            )
        log = MetricsLog(self.out, keep) if self.procs.main else None
        try:
            for index in range(first_stage, len(self.stages)):
                name = self.stages[index]
                start = first_step if index == first_stage else 0
                self._run_stage(make_stage(name, self.space, self.recipe), start, state, optim, log)
                state = optim = None
        finally:
            if log is not None:
                log.close()
        apart = replica_difference(self.model, self.procs)
        if apart > 0:
            raise TrainingError(
                f"the {self.procs.world} processes ended with different weights (max difference "
                f"{apart:.3g}); not saving {self.out / 'supernet.safetensors'}"
            )
        final = self.out / "supernet.safetensors"
        self.model.write_classifiers()
        if self.procs.main:
            save_supernet(self.supernet, final, overwrite=True)
        barrier(self.procs)
        return TrainResult(final, self._steps(), time.perf_counter() - began, self.procs.world)

    def _run_stage(
        self, stage: Stage, start: int, state: TrainState | None, optim: dict | None, log
    ) -> None:
        optimizer, schedule = self._optimizer(stage.name, stage.steps)
        use_scaler = self.recipe.amp and self.procs.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        if state is not None:
            optimizer.load_state_dict(optim)
            schedule.load_state_dict(state.scheduler)
            scaler.load_state_dict(state.scaler)
        schedule.step_update(start)
        model = wrap(self.model, self.procs)
        model.train()
        bar = tqdm(
            range(start, stage.steps),
            initial=start,
            total=stage.steps,
            desc=f"{stage.name} stage",
            unit="step",
            disable=not self.progress or None,
        )
        shown = stage.subnets(start)[0].role  # the bar shows the losses of the first subnet
        for step in bar:
            rows = self._step(model, stage, step, optimizer, scaler)
            schedule.step_update(step + 1)
            done = step + 1
            lr = optimizer.param_groups[0]["lr"]
            rows.append(MetricRow(stage.name, done, "train", "all", "-", "lr", lr))
            every = self.recipe.validate_every
            if every and (done % every == 0 or done == stage.steps):
                rows += self._validate(stage, done)
            if log is not None:
                log.add(rows, self._global_step(stage.name, done))
                bar.set_postfix_str(
                    " ".join(
                        f"{r.task} {r.value:.3f}"
                        for r in rows
                        if r.subnet == shown and r.kind == "train"
                    )
                    + f" lr {lr:.2e}"
                )
            if done % self.recipe.checkpoint_every == 0 or done == stage.steps:
                self._save(stage, done, optimizer, schedule, scaler)
                if log is not None and (done == stage.steps or self._curves_due()):
                    write_curves(self.out / "curves.png", read_metrics(log.path), self._steps())
                    self._curves_drawn = time.monotonic()
        bar.close()
        self.model.write_classifiers()
        if self.procs.main:
            save_supernet(
                self.supernet, self.out / f"{stage.name}-stage.safetensors", overwrite=True
            )
        barrier(self.procs)

    def _curves_due(self) -> bool:
        """Whether a checkpoint redraws curves.png: at most every `CURVES_EVERY_S` (a draw
        takes about 0.5 s); the end of each stage always does."""
        return time.monotonic() - self._curves_drawn >= CURVES_EVERY_S

    def _steps(self) -> dict[str, int]:
        return {s: self.recipe.stage_steps(s) for s in self.stages}

    def _global_step(self, stage: str, step: int) -> int:
        before = self.stages[: self.stages.index(stage)]
        return sum(self.recipe.stage_steps(s) for s in before) + step

    def _step_tasks(self, step: int) -> list[tuple[str, int]]:
        """(task, batch index) of each task in the step."""
        tasks = self.recipe.task_names
        if self.recipe.batches == "round_robin":
            return [(tasks[step % len(tasks)], step // len(tasks))]
        return [(task, step) for task in tasks]

    def _step(self, model, stage: Stage, step: int, optimizer, scaler) -> list[MetricRow]:
        torch.manual_seed(step_seed(self.recipe.seed, stage.name, step))
        device = self.procs.device
        images, labels = {}, {}
        for task, index in self._step_tasks(step):
            x, y = self.batches[task].batch(index)
            images[task], labels[task] = x.to(device), y.to(device)
        weights = {t: self.recipe.task(t).weight for t in images}
        subnets = stage.subnets(step)
        optimizer.zero_grad(set_to_none=True)
        teacher = None
        losses = []
        amp = torch.autocast(
            device.type,
            dtype=torch.float16 if device.type == "cuda" else torch.bfloat16,
            enabled=self.recipe.amp,
        )
        for k, subnet in enumerate(subnets):
            last = k == len(subnets) - 1
            sync = contextlib.nullcontext() if last or model is self.model else model.no_sync()
            with sync:
                with amp:
                    total, per_task, logits = model(
                        images, labels, subnet.arch, weights, subnet.objective, teacher
                    )
                scaler.scale(total).backward()
            if subnet.teacher:
                teacher = {t: v.detach() for t, v in logits.items()}
            losses.append(torch.stack([per_task[t].detach().float() for t in images]))
        values = mean_over_processes(torch.stack(losses), self.procs)
        self._check_finite(values, stage.name, step, list(images), subnets)
        if self.recipe.optimizer.clip_norm:
            scaler.unscale_(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.recipe.optimizer.clip_norm)
        scaler.step(optimizer)
        scaler.update()
        return [
            MetricRow(stage.name, step + 1, "train", task, s.role, "loss", float(values[k, j]))
            for k, s in enumerate(subnets)
            for j, task in enumerate(images)
        ]

    def _check_finite(self, values, stage: str, step: int, tasks: list[str], subnets) -> None:
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            k, j = (int(v) for v in bad[0])
            kept = latest_checkpoint(self.out)
            where = (
                f"the last good checkpoint is {kept}" if kept else "no checkpoint was written yet"
            )
            raise TrainingError(
                f"step {step + 1} of the {stage} stage: the loss of task '{tasks[j]}' is "
                f"{float(values[k, j])} (subnet {subnets[k].arch}); stopped before the "
                f"optimiser step; {where}; lower the LR or enable clipping"
            )

    @torch.no_grad()
    def _validate(self, stage: Stage, step: int) -> list[MetricRow]:
        """The stage's validation subnets on each task's val split, scored as `ufo eval`
        scores them."""
        self.model.write_classifiers()
        rows = []
        if self.procs.main:
            for role, arch in stage.validation_archs().items():
                for task in self.recipe.task_names:
                    kind = self.space.spec.task(task).kind
                    data = self.val_data[task]
                    [result] = evaluate_archs(self.supernet, [arch], task, data)
                    metric = PRIMARY_METRIC[kind]
                    value = result.metrics[metric]
                    rows.append(MetricRow(stage.name, step, "val", task, role, metric, value))
            self.model.train()
        barrier(self.procs)
        return rows

    def _save(self, stage: Stage, step: int, optimizer, schedule, scaler) -> None:
        self.model.write_classifiers()
        if self.procs.main:
            state = TrainState(
                stage=stage.name,
                step=step,
                recipe_fingerprint=self.recipe.fingerprint(),
                space_fingerprint=self.space.spec.fingerprint(),
                optimizer={},
                scheduler=schedule.state_dict(),
                scaler=scaler.state_dict(),
                batches={t: self.batches[t].position(i) for t, i in self._step_tasks(step)},
                random=RANDOM_SCHEME,
            )
            save_checkpoint(
                self.out, self.supernet, self.model.heads, optimizer.state_dict(), state
            )
        barrier(self.procs)
