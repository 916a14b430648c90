"""A training recipe: a validated YAML file of what `ufo train` does, stage by stage.

    space: ufo_vit_tiny
    seed: 0
    tasks:                      # every task trained; each must be a task of the space
      face:
        loss: cosface           # cosface | cosface+triplet (default by the task's kind)
        margin: 0.3             # CosFace margin and scale
        scale: 50
        weight: 1.0             # loss weight
        lr_scale: 2.0           # LR of the task's own parameters (neck, head, task FFNs)
        classes_per_batch: 8    # P x K identity batches ...
        images_per_class: 4
        batch_size: 32          # ... or plain random batches (classification)
        data: orl_faces         # default: the space's `data` of the task
        flip: true              # augmentation: random horizontal flips ...
        shift: 4                # ... and random shifts of up to 4 pixels (edge-padded)
    optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 1.0e-4, clip_norm: 5.0}
    warmup_steps: 50            # linear warm-up, then cosine to min_lr, in every stage
    min_lr: 1.0e-5
    drop_path_rate: 0.1         # DropPath 0 -> rate over depth
    router: {tau: 5.0, hard: true, lr_scale: 1.0}  # lr_scale: LR of the router logits
    amp: false                  # bf16 autocast on CPU, fp16 (with loss scaling) on CUDA
    batches: heterogeneous      # every task in every step (UFO) | round_robin (one task a step)
    checkpoint_every: 100
    validate_every: 100
    stages:
      task: {steps: 600, freeze_shared: false}   # arch: <arch string> trains that subnet only
      chip: {steps: 600, random_subnets: 2, paths: router, temperature: 1.0,
             distill_weight: 1.0, label_weight: 0.0}

Every error names the file, the key and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ufo_nas.errors import UfoError
from ufo_nas.formats import parse, read_text
from ufo_nas.space import SearchSpace, load_space

LOSSES = ("cosface", "cosface+triplet")
DEFAULT_LOSS = {
    "face_verification": "cosface",
    "classification": "cosface",
    "reidentification": "cosface+triplet",
    "retrieval": "cosface+triplet",
}
OPTIMIZERS = ("sgd", "adamw")
BATCHES = ("heterogeneous", "round_robin")
STAGES = ("task", "chip")
CHIP_PATHS = ("router", "sampled")


class RecipeError(UfoError):
    """A training recipe cannot be used."""


@dataclass(frozen=True)
class TaskRecipe:
    name: str
    loss: str
    margin: float
    scale: float
    weight: float = 1.0
    lr_scale: float = 1.0
    classes_per_batch: int = 0  # P; 0 with batch_size > 0: random batches
    images_per_class: int = 0  # K
    batch_size: int = 0
    triplet_margin: float = 0.0  # 0: soft margin, log(1 + exp(d_ap - d_an))
    triplet_weight: float = 1.0
    data: str | None = None
    flip: bool = False
    shift: int = 0

    @property
    def images_per_step(self) -> int:
        """Images of this task in one global step (all ranks together)."""
        return self.batch_size or self.classes_per_batch * self.images_per_class

    @property
    def identity_batches(self) -> bool:
        return self.classes_per_batch > 0


@dataclass(frozen=True)
class OptimizerRecipe:
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    clip_norm: float = 5.0  # 0: no clipping


@dataclass(frozen=True)
class TaskStageRecipe:
    steps: int = 0
    freeze_shared: bool = False
    arch: str | None = None  # train this one subnet instead of the largest (a baseline)


@dataclass(frozen=True)
class ChipStageRecipe:
    steps: int = 0
    random_subnets: int = 2
    paths: str = "router"  # router: each task's mix path wherever allowed; sampled: random
    temperature: float = 1.0
    distill_weight: float = 1.0
    label_weight: float = 0.0


@dataclass(frozen=True)
class Recipe:
    source: str
    space: str
    tasks: tuple[TaskRecipe, ...]
    seed: int = 0
    optimizer: OptimizerRecipe = field(default_factory=OptimizerRecipe)
    warmup_steps: int = 0
    min_lr: float = 1e-5
    drop_path_rate: float = 0.0
    router_tau: float = 5.0
    router_hard: bool = True
    router_lr_scale: float = 1.0
    amp: bool = False
    batches: str = "heterogeneous"
    checkpoint_every: int = 100
    validate_every: int = 100
    task_stage: TaskStageRecipe = field(default_factory=TaskStageRecipe)
    chip_stage: ChipStageRecipe = field(default_factory=ChipStageRecipe)

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def task(self, name: str) -> TaskRecipe:
        return next(t for t in self.tasks if t.name == name)

    def stage_steps(self, stage: str) -> int:
        return self.task_stage.steps if stage == "task" else self.chip_stage.steps

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("source")
        return data

    def fingerprint(self) -> str:
        """A hash of everything that shapes the training (not where the file came from)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_overrides(self, **values: Any) -> Recipe:
        """This recipe with top-level values replaced (None leaves a value as it is);
        `task_steps`, `chip_steps` and `lr` reach into their sections."""
        values = {k: v for k, v in values.items() if v is not None}
        if "task_steps" in values:
            values["task_stage"] = replace(self.task_stage, steps=values.pop("task_steps"))
        if "chip_steps" in values:
            values["chip_stage"] = replace(self.chip_stage, steps=values.pop("chip_steps"))
        if "lr" in values:
            values["optimizer"] = replace(self.optimizer, lr=values.pop("lr"))
        return replace(self, **values)


class _Keys:
    """Typed reads of one mapping of the recipe; errors name the file and the key."""

    def __init__(self, source: str, data: Any, where: str, allowed: tuple[str, ...]):
        self.source, self.where = source, where
        if not isinstance(data, dict):
            raise self.fail("", f"expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(map(str, data)) - set(allowed))
        if unknown:
            raise self.fail(unknown[0], f"unknown key; allowed: {', '.join(allowed)}")
        self.data = data

    def fail(self, key: str, message: str) -> RecipeError:
        name = ".".join(k for k in (self.where, key) if k) or "(top level)"
        return RecipeError(f"{self.source}: {name}: {message}")

    def number(self, key: str, default: float, low: float = 0.0, strict: bool = False) -> float:
        value = self.data.get(key, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or value != value or value in (float("inf"), float("-inf")):
            raise self.fail(key, f"expected a finite number, got {value!r}")
        if value < low or (strict and value == low):
            raise self.fail(key, f"must be {'>' if strict else '>='} {low}, got {value}")
        return float(value)

    def integer(self, key: str, default: int, low: int = 0) -> int:
        value = self.data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise self.fail(key, f"expected an integer >= {low}, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.data.get(key, default)
        if value not in allowed:
            raise self.fail(key, f"{value!r} is not allowed; allowed: {', '.join(allowed)}")
        return value


def recipe_from_dict(data: Any, source: str = "<dict>") -> Recipe:
    """A validated Recipe; raises RecipeError naming `source` and the key."""
    top_keys = (
        "space", "seed", "tasks", "optimizer", "warmup_steps", "min_lr", "drop_path_rate",
        "router", "amp", "batches", "checkpoint_every", "validate_every", "stages",
    )  # fmt: skip
    top = _Keys(source, data, "", top_keys)
    space_name = data.get("space")
    if not isinstance(space_name, str) or not space_name:
        raise top.fail("space", "expected the name or file of a search space")
    if not isinstance(data.get("tasks"), dict) or not data["tasks"]:
        raise top.fail("tasks", "expected a mapping of task name -> settings (at least one)")
    tasks = tuple(_task(source, str(name), value) for name, value in data["tasks"].items())
    opt = _Keys(source, data.get("optimizer", {}), "optimizer", tuple(OptimizerRecipe().__dict__))
    optimizer = OptimizerRecipe(
        name=opt.choice("name", "sgd", OPTIMIZERS),
        lr=opt.number("lr", 0.05, strict=True),
        momentum=opt.number("momentum", 0.9),
        weight_decay=opt.number("weight_decay", 1e-4),
        clip_norm=opt.number("clip_norm", 5.0),
    )
    router = _Keys(source, data.get("router", {}), "router", ("tau", "hard", "lr_scale"))
    stages = _Keys(source, data.get("stages", {}), "stages", STAGES)
    task_stage = _Keys(
        source, stages.data.get("task", {}), "stages.task", ("steps", "freeze_shared", "arch")
    )
    fixed_arch = task_stage.data.get("arch")
    if fixed_arch is not None and (not isinstance(fixed_arch, str) or not fixed_arch.strip()):
        raise task_stage.fail("arch", f"expected an arch string, got {fixed_arch!r}")
    chip_keys = tuple(ChipStageRecipe().__dict__)
    chip = _Keys(source, stages.data.get("chip", {}), "stages.chip", chip_keys)
    recipe = Recipe(
        source=source,
        space=space_name,
        tasks=tasks,
        seed=top.integer("seed", 0),
        optimizer=optimizer,
        warmup_steps=top.integer("warmup_steps", 0),
        min_lr=top.number("min_lr", 1e-5),
        drop_path_rate=top.number("drop_path_rate", 0.0),
        router_tau=router.number("tau", 5.0, strict=True),
        router_hard=router.boolean("hard", True),
        router_lr_scale=router.number("lr_scale", 1.0),
        amp=top.boolean("amp", False),
        batches=top.choice("batches", "heterogeneous", BATCHES),
        checkpoint_every=top.integer("checkpoint_every", 100, low=1),
        validate_every=top.integer("validate_every", 100),
        task_stage=TaskStageRecipe(
            steps=task_stage.integer("steps", 0),
            freeze_shared=task_stage.boolean("freeze_shared", False),
            arch=fixed_arch,
        ),
        chip_stage=ChipStageRecipe(
            steps=chip.integer("steps", 0),
            random_subnets=chip.integer("random_subnets", 2),
            paths=chip.choice("paths", "router", CHIP_PATHS),
            temperature=chip.number("temperature", 1.0, strict=True),
            distill_weight=chip.number("distill_weight", 1.0),
            label_weight=chip.number("label_weight", 0.0),
        ),
    )
    if recipe.drop_path_rate >= 1:
        raise top.fail("drop_path_rate", f"must be < 1, got {recipe.drop_path_rate}")
    if recipe.task_stage.steps + recipe.chip_stage.steps == 0:
        raise stages.fail("", "no training steps: set stages.task.steps or stages.chip.steps")
    return recipe


def _task(source: str, name: str, data: Any) -> TaskRecipe:
    keys = tuple(f for f in TaskRecipe.__dataclass_fields__ if f != "name")
    r = _Keys(source, data if data is not None else {}, f"tasks.{name}", keys)
    loss = r.data.get("loss")
    if loss is not None and loss not in LOSSES:
        raise r.fail("loss", f"{loss!r} is not allowed; allowed: {', '.join(LOSSES)}")
    folder = r.data.get("data")
    if folder is not None and not isinstance(folder, str):
        raise r.fail("data", f"expected a data folder name, got {folder!r}")
    task = TaskRecipe(
        name=name,
        loss=loss or "",  # filled from the task's kind in check_against
        margin=r.number("margin", 0.2),
        scale=r.number("scale", 30.0, strict=True),
        weight=r.number("weight", 1.0),
        lr_scale=r.number("lr_scale", 1.0),
        classes_per_batch=r.integer("classes_per_batch", 0),
        images_per_class=r.integer("images_per_class", 0),
        batch_size=r.integer("batch_size", 0),
        triplet_margin=r.number("triplet_margin", 0.0),
        triplet_weight=r.number("triplet_weight", 1.0),
        data=folder,
        flip=r.boolean("flip", False),
        shift=r.integer("shift", 0),
    )
    identity = task.classes_per_batch > 0 or task.images_per_class > 0
    if identity == (task.batch_size > 0):
        raise r.fail(
            "batch_size",
            "give either classes_per_batch and images_per_class (P x K batches) or batch_size",
        )
    if identity and (task.classes_per_batch < 2 or task.images_per_class < 2):
        raise r.fail(
            "classes_per_batch",
            "P x K batches need classes_per_batch >= 2 and images_per_class >= 2, got "
            f"{task.classes_per_batch} x {task.images_per_class}",
        )
    return task


def check_against(recipe: Recipe, space: SearchSpace) -> Recipe:
    """The recipe with each task's default loss filled in; every task must be one of the
    space's, and a triplet loss needs P x K batches."""
    tasks = []
    for task in recipe.tasks:
        if task.name not in space.spec.task_names:
            raise RecipeError(
                f"{recipe.source}: tasks.{task.name}: space '{space.name}' has no such task; "
                f"its tasks: {', '.join(space.spec.task_names)}"
            )
        kind = space.spec.task(task.name).kind
        task = replace(task, loss=task.loss or DEFAULT_LOSS[kind])
        if "triplet" in task.loss and not task.identity_batches:
            raise RecipeError(
                f"{recipe.source}: tasks.{task.name}: loss {task.loss} mines triplets in "
                "P x K batches; set classes_per_batch and images_per_class"
            )
        size = space.spec.image_size
        if task.shift * 2 >= size:
            raise RecipeError(
                f"{recipe.source}: tasks.{task.name}.shift: {task.shift} pixels is not less "
                f"than half the {size}-pixel image"
            )
        tasks.append(task)
    recipe = replace(recipe, tasks=tuple(tasks))
    if recipe.task_stage.arch is not None:
        try:
            arch = space.parse(recipe.task_stage.arch)
        except UfoError as exc:
            raise RecipeError(f"{recipe.source}: stages.task.arch: {exc}") from None
        recipe = replace(recipe, task_stage=replace(recipe.task_stage, arch=arch.to_string()))
    return recipe


def load_recipe(path: str | os.PathLike) -> tuple[Recipe, SearchSpace]:
    """Read, validate and resolve a recipe file against its space."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"no training recipe at {path}: it does not exist or is not a file")
    try:
        data = parse(read_text(path, "a training recipe is a YAML file", RecipeError), "YAML")
    except ValueError as exc:
        raise RecipeError(f"{path}: {exc}") from None
    recipe = recipe_from_dict(data, str(path))
    try:
        space = load_space(recipe.space)
    except UfoError as exc:
        raise RecipeError(f"{path}: space: {exc}") from None
    return check_against(recipe, space), space
