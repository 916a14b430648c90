"""`ufo search`: one NSGA-II search per device over a space's subnets for some tasks,
collected into a SearchReport."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import numpy as np
import pymoo

import ufo_nas
from ufo_nas.errors import UfoError
from ufo_nas.search.engine import SearchSettings, nsga2
from ufo_nas.search.pareto import Normalisation
from ufo_nas.search.problem import Budgets, InfeasibleBudgetError, UfoProblem
from ufo_nas.search.report import DeviceFront, ParetoRow, SearchReport
from ufo_nas.space import SearchSpace

Progress = Callable[[str, int, int], None]  # (device, generation, evaluations)


def prepare(
    space: SearchSpace,
    tasks: Sequence[str],
    devices: Sequence[str],
    minimise: Sequence[str] = ("latency",),
    budgets: Budgets = Budgets(),
    risk: float = 0.0,
    search_unseen: bool = False,
) -> list[UfoProblem]:
    """One problem per device, every device, task and budget checked before any search;
    `search_unseen` also searches choices the predictors never saw (see UfoProblem)."""
    if len(set(devices)) != len(devices):
        raise UfoError(f"devices must be distinct, got {', '.join(devices)}")
    problems: list[UfoProblem] = []
    for device in devices:
        shared = problems[0].accuracy if problems else None
        problems.append(
            UfoProblem(
                space, tasks, device, minimise, budgets, risk, shared, search_unseen=search_unseen
            )
        )
    for problem in problems:
        problem.check_budgets()
    return problems


def search_devices(
    problems: Sequence[UfoProblem],
    settings: SearchSettings = SearchSettings(),
    progress: Progress | None = None,
) -> SearchReport:
    """Search each prepared problem (one per device) into one report."""
    fronts = [_search_one(problem, settings, progress) for problem in problems]
    first = problems[0]
    space, budgets = first.space, first.budgets
    return SearchReport(
        space=space.name,
        space_fingerprint=space.spec.fingerprint(),
        tasks=list(first.tasks),
        objectives=[o.name for o in first.objectives],
        score_targets={t: m.target for t, m in first.accuracy.items()},
        risk=first.risk,
        budgets={"latency_ms": budgets.latency_ms, "params": budgets.params},
        settings={
            "population": settings.population,
            "generations": settings.generations,
            "seed": settings.seed,
            "search_unseen": first.search_unseen,
        },
        fronts=fronts,
        provenance={
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(sys.argv),
            "versions": {
                "ufo_nas": ufo_nas.__version__,
                "pymoo": pymoo.__version__,
                "numpy": np.__version__,
            },
        },
        unseen=[u.to_dict() for u in first.unseen],
    )


def _search_one(
    problem: UfoProblem, settings: SearchSettings, progress: Progress | None
) -> DeviceFront:
    step = None if progress is None else (lambda gen, n: progress(problem.device, gen, n))
    run = nsga2(problem.gene_space, problem.objectives, problem.constraints, settings, step)
    archive, front = run.archive, run.front
    if front.size == 0:
        raise InfeasibleBudgetError(
            f"no subnet found for {','.join(problem.tasks)} on {problem.device} meeting the "
            f"latency and params budgets together after {run.evaluations} subnets; each can be "
            "met alone: loosen one"
        )
    normalisation = Normalisation.of(archive.minimisation(archive.values[front]))
    hypervolume = run.hypervolume_by_generation(normalisation)
    figures = problem.figures(archive.genes[front])
    order = np.lexsort((-figures.score_mean[problem.tasks[0]], figures.latency_ms))
    rows = [
        ParetoRow(
            arch=problem.space.short_string(figures.archs[i], problem.tasks),
            score={t: float(figures.score_mean[t][i]) for t in problem.tasks},
            score_std={t: float(figures.score_std[t][i]) for t in problem.tasks},
            latency_ms=float(figures.latency_ms[i]),
            params=int(figures.params[i]),
            macs=int(figures.macs[i]),
        )
        for i in order
    ]
    return DeviceFront(
        device=problem.device,
        latency_measured=problem.latency.measured,
        latency_source=problem.latency.source,
        rows=rows,
        evaluations=run.evaluations,
        generations=len(run.generation_sizes),
        seconds=round(run.seconds, 3),
        hypervolume=[round(h, 6) for h in hypervolume],
    )
