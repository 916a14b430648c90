"""Per-task predictors of a space: fit from its accuracy table, share strength, store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ufo_nas.accuracy.gpnas import GPNAS, PredictorError
from ufo_nas.accuracy.table import AccuracyTable
from ufo_nas.paths import project_root
from ufo_nas.space import SearchSpace


def predictor_path(space: SearchSpace, task: str) -> Path:
    """Where the shipped predictor of a task lives: `predictors/<space>/<task>.json`."""
    return project_root() / "predictors" / space.name / f"{task}.json"


def share_strength(models: Mapping[str, GPNAS]) -> dict[str, GPNAS]:
    """Refit each fitted model with the other models' posterior means as proxies.

    A proxy whose task does not help gets its relevance shrunk towards zero by the
    marginal likelihood, so unrelated (or anti-correlated) tasks cost little.
    """
    shared = {}
    for name, model in models.items():
        proxies = [other.as_proxy(key) for key, other in models.items() if key != name]
        refit = GPNAS(model.space, model.task, proxies=proxies, target=model.target)
        shared[name] = refit.fit(model.archs, model.y)
    return shared


def fit_task_predictors(
    table: AccuracyTable, tasks: Sequence[str], share: bool = False
) -> dict[str, GPNAS]:
    """One GP-NAS per task from the table's targets; with `share`, each task's model
    also uses the other tasks' models as proxies (see `share_strength`)."""
    models = {}
    for task in tasks:
        targets = table.targets(task)
        models[task] = GPNAS(table.space, task, target=targets.description).fit(
            targets.archs, targets.y
        )
    return share_strength(models) if share and len(models) > 1 else models


def load_task_predictor(space: SearchSpace, task: str) -> GPNAS:
    """The shipped predictor of `task`; a clear error if the space has none."""
    path = predictor_path(space, task)
    if not path.is_file():
        space.spec.task(task)
        raise PredictorError(
            f"no accuracy predictor for task '{task}' of space '{space.name}' at {path}; "
            f"fit one with `ufo fit-predictor --space {space.name} --task {task}`"
        )
    return GPNAS.load(path, space)
