"""The two training stages as parts: which subnets a step trains and what each learns from.

* task stage (UFO's All in One): the largest subnet, each task on its Task-MoE mix path
  wherever the space allows it (else its first path), learning from labels; or, with
  `stages.task.arch`, that one subnet (to train a subnet alone as a baseline);
* chip stage (One for All): the sandwich rule, the largest subnet learning from labels and
  the smallest plus `random_subnets` random ones from the largest's logits (in-place
  distillation); paths are the router's mix (`router`) or drawn per step (`sampled`).

A step's subnets are drawn from a generator seeded by (seed, stage, step), so every rank
agrees without communication and a resumed run draws the same ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ufo_nas.space import Arch, SearchSpace
from ufo_nas.train.model import Objective
from ufo_nas.train.recipe import Recipe

STAGE_IDS = {"task": 1, "chip": 2}


@dataclass(frozen=True)
class StepSubnet:
    arch: Arch
    objective: Objective
    role: str  # its name in metrics.csv: largest, smallest, random<i> or arch
    teacher: bool = False  # its logits teach the rest of the step


def path_genes(space: SearchSpace, genes: np.ndarray, policy: str, rng: np.random.Generator):
    """`genes` with every path gene set by `policy`: router (mix where allowed, else the
    first path) or sampled (uniform over the layer's allowed paths)."""
    genes = genes.copy()
    for k, (name, choices) in enumerate(space.variables):
        if name.startswith("path."):
            if policy == "router":
                genes[k] = choices.index("mix") if "mix" in choices else 0
            else:
                genes[k] = rng.integers(len(choices))
    return genes


class Stage(ABC):
    name = ""

    def __init__(self, space: SearchSpace, recipe: Recipe):
        self.space, self.recipe = space, recipe
        self.steps = recipe.stage_steps(self.name)

    def rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng([self.recipe.seed, STAGE_IDS[self.name], step])

    @abstractmethod
    def subnets(self, step: int) -> list[StepSubnet]:
        """The subnets step `step` trains, the teacher (if any) first."""

    def validation_archs(self) -> dict[str, Arch]:
        """The subnets validated during the stage, by role: the largest and the smallest,
        each task on its router (mix) path."""
        top = self.space.cardinalities - 1
        return {
            "largest": self.space.decode(path_genes(self.space, top, "router", None)),
            "smallest": self.space.decode(
                path_genes(self.space, np.zeros_like(top), "router", None)
            ),
        }


class TaskStage(Stage):
    name = "task"

    def __init__(self, space: SearchSpace, recipe: Recipe):
        super().__init__(space, recipe)
        arch = recipe.task_stage.arch  # one subnet trained alone: a baseline for extraction
        self.fixed = space.parse(arch) if arch is not None else None

    def subnets(self, step: int) -> list[StepSubnet]:
        if self.fixed is not None:
            return [StepSubnet(self.fixed, Objective(label_weight=1.0), "arch")]
        genes = path_genes(self.space, self.space.cardinalities - 1, "router", self.rng(step))
        return [StepSubnet(self.space.decode(genes), Objective(label_weight=1.0), "largest")]

    def validation_archs(self) -> dict[str, Arch]:
        return {"arch": self.fixed} if self.fixed else super().validation_archs()


class ChipStage(Stage):
    name = "chip"

    def subnets(self, step: int) -> list[StepSubnet]:
        chip = self.recipe.chip_stage
        rng = self.rng(step)
        policy = chip.paths
        largest = path_genes(self.space, self.space.cardinalities - 1, policy, rng)
        paths = [k for k, (name, _) in enumerate(self.space.variables) if name.startswith("path.")]
        rows = [np.zeros_like(largest)]
        rows += list(self.space.sample_genes(rng, chip.random_subnets))
        for row in rows:  # one path choice per step, shared by the sandwich
            row[paths] = largest[paths]
        student = Objective(chip.label_weight, chip.distill_weight, chip.temperature)
        roles = ["smallest"] + [f"random{i}" for i in range(chip.random_subnets)]
        return [StepSubnet(self.space.decode(largest), Objective(1.0), "largest", True)] + [
            StepSubnet(self.space.decode(row), student, role) for row, role in zip(rows, roles)
        ]


def make_stage(name: str, space: SearchSpace, recipe: Recipe) -> Stage:
    return {"task": TaskStage, "chip": ChipStage}[name](space, recipe)
