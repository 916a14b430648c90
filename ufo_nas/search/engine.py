"""Multi-objective search over a GeneSpace: NSGA-II (pymoo) with a run-wide archive.

Objectives and constraints are vectorised functions of canonical gene rows (n, v) -> (n,).
Every distinct row is evaluated once and kept, in order, in an `Archive` (a row NSGA-II
meets again is answered from it); budgets count distinct rows, and the result is the
archive's feasible non-dominated set, not only the last population. Random search uses
the same archive, so the two are compared on equal terms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.problem import Problem
from pymoo.termination import get_termination

from ufo_nas.errors import UfoError
from ufo_nas.search.genes import GeneSpace
from ufo_nas.search.pareto import Normalisation, non_dominated
from ufo_nas.search.variation import (
    GeneCrossover,
    GeneMutation,
    GeneRepair,
    GeneSampling,
    RowDuplicates,
    row_key,
)

GeneFunction = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Objective:
    """A value of each solution to minimise (or maximise), with its unit for display."""

    name: str
    evaluate: GeneFunction
    maximise: bool = False
    unit: str = ""


@dataclass(frozen=True)
class Constraint:
    """Feasible where evaluate(genes) <= limit."""

    name: str
    evaluate: GeneFunction
    limit: float


class Archive:
    """Every distinct row evaluated, in evaluation order, with its objective values
    (as given: maximised ones stay positive) and constraint violations."""

    def __init__(
        self,
        space: GeneSpace,
        objectives: tuple[Objective, ...],
        constraints: tuple[Constraint, ...] = (),
    ):
        if not objectives:
            raise UfoError("a search needs at least one objective")
        self.space, self.objectives, self.constraints = space, objectives, constraints
        self._index: dict[bytes, int] = {}
        self._genes: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._violation: list[np.ndarray] = []
        self._sign = np.array([-1.0 if o.maximise else 1.0 for o in objectives])

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def evaluate(self, genes: np.ndarray) -> np.ndarray:
        """Archive indices of the rows (canonical), evaluating only the new ones."""
        genes = np.asarray(genes, dtype=np.int64)
        keys = [row_key(row) for row in genes]
        new = {}
        for key, row in zip(keys, genes):
            if key not in self._index and key not in new:
                new[key] = row
        if new:
            rows = np.stack(list(new.values()))
            values = np.stack([np.asarray(o.evaluate(rows), float) for o in self.objectives], 1)
            violation = (
                np.stack(
                    [np.asarray(c.evaluate(rows), float) - c.limit for c in self.constraints], 1
                )
                if self.constraints
                else np.zeros((len(rows), 0))
            )
            for key in new:
                self._index[key] = len(self._index)
            self._genes.append(rows)
            self._values.append(values)
            self._violation.append(violation)
        return np.array([self._index[key] for key in keys], dtype=np.int64)

    @property
    def genes(self) -> np.ndarray:
        return _stack(self._genes, (0, len(self.space)), np.int64)

    @property
    def values(self) -> np.ndarray:
        return _stack(self._values, (0, len(self.objectives)), float)

    @property
    def violation(self) -> np.ndarray:
        return _stack(self._violation, (0, len(self.constraints)), float)

    def minimisation(self, values: np.ndarray) -> np.ndarray:
        """Objective values turned into all-minimised form."""
        return values * self._sign

    def front(self, upto: int | None = None) -> np.ndarray:
        """Indices of the feasible non-dominated rows among the first `upto` evaluated."""
        values, violation = self.values[:upto], self.violation[:upto]
        feasible = np.flatnonzero((violation <= 0).all(axis=1))
        if feasible.size == 0:
            return feasible
        keep = non_dominated(self.minimisation(values[feasible]))
        return feasible[keep]


def _stack(parts: list[np.ndarray], empty: tuple[int, int], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(empty, dtype=dtype)


@dataclass(frozen=True)
class SearchSettings:
    """NSGA-II population, generations and seed; an optional cap on distinct evaluations."""

    population: int = 64
    generations: int = 100
    seed: int = 0
    max_evaluations: int | None = None
    crossover_eta: float = 3.0
    mutation_eta: float = 3.0

    def __post_init__(self) -> None:
        if self.population < 4:
            raise UfoError(f"population must be at least 4, got {self.population}")
        if self.generations < 1:
            raise UfoError(f"generations must be at least 1, got {self.generations}")


@dataclass
class SearchRun:
    """An archive, its feasible front, and the archive size after each generation."""

    archive: Archive
    generation_sizes: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def front(self) -> np.ndarray:
        return self.archive.front()

    @property
    def evaluations(self) -> int:
        return len(self.archive)

    def fronts_by_generation(self) -> list[np.ndarray]:
        """Archive indices of the feasible front after each generation."""
        values = self.archive.minimisation(self.archive.values)
        feasible = (self.archive.violation <= 0).all(axis=1)
        fronts, front, start = [], np.zeros(0, dtype=np.int64), 0
        for size in self.generation_sizes:
            new = start + np.flatnonzero(feasible[start:size])
            candidates = np.concatenate([front, new])
            front = candidates[non_dominated(values[candidates])]
            fronts.append(front)
            start = size
        return fronts

    def hypervolume_by_generation(self, normalisation: Normalisation) -> list[float]:
        """Hypervolume of the feasible front after each generation."""
        values = self.archive.minimisation(self.archive.values)
        return [
            normalisation.hypervolume(values[f]) if f.size else 0.0
            for f in self.fronts_by_generation()
        ]


class _ArchiveProblem(Problem):
    """pymoo view of an archive: F in minimisation form, G = value - limit."""

    def __init__(self, archive: Archive):
        space = archive.space
        super().__init__(
            n_var=len(space),
            n_obj=len(archive.objectives),
            n_ieq_constr=len(archive.constraints),
            xl=np.zeros(len(space)),
            xu=(space.cardinalities - 1).astype(float),
            vtype=int,
        )
        self.archive = archive

    def _evaluate(self, x, out, *args, **kwargs):
        index = self.archive.evaluate(np.rint(x).astype(np.int64))
        out["F"] = self.archive.minimisation(self.archive.values[index])
        if self.archive.constraints:
            out["G"] = self.archive.violation[index]


def nsga2(
    space: GeneSpace,
    objectives: tuple[Objective, ...],
    constraints: tuple[Constraint, ...] = (),
    settings: SearchSettings = SearchSettings(),
    progress: Callable[[int, int], None] | None = None,
) -> SearchRun:
    """NSGA-II over the space; `progress(generation, evaluations)` after each generation."""
    start = time.perf_counter()
    archive = Archive(space, objectives, constraints)
    algorithm = NSGA2(
        pop_size=settings.population,
        sampling=GeneSampling(space),
        crossover=GeneCrossover(space, eta=settings.crossover_eta),
        mutation=GeneMutation(space, eta=settings.mutation_eta),
        repair=GeneRepair(space),
        eliminate_duplicates=RowDuplicates(),
    )
    algorithm.setup(
        _ArchiveProblem(archive),
        termination=get_termination("n_gen", settings.generations),
        seed=settings.seed,
        verbose=False,
    )
    run = SearchRun(archive)
    while algorithm.has_next():
        algorithm.next()
        run.generation_sizes.append(len(archive))
        if progress is not None:
            progress(len(run.generation_sizes), len(archive))
        if settings.max_evaluations is not None and len(archive) >= settings.max_evaluations:
            break
    run.seconds = time.perf_counter() - start
    return run


def random_search(
    space: GeneSpace,
    objectives: tuple[Objective, ...],
    constraints: tuple[Constraint, ...] = (),
    evaluations: int = 1000,
    seed: int = 0,
) -> SearchRun:
    """Uniform random distinct rows until `evaluations` are evaluated (or none are left)."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    archive = Archive(space, objectives, constraints)
    run = SearchRun(archive)
    stale = 0
    while len(archive) < evaluations and stale < 100:
        before = len(archive)
        rows = space.sample(rng, evaluations - len(archive))
        fresh = [row for row in rows if row_key(row) not in archive]
        unique = {row_key(row): row for row in fresh}
        if unique:
            archive.evaluate(np.stack(list(unique.values()))[: evaluations - before])
        stale = stale + 1 if len(archive) == before else 0
        run.generation_sizes.append(len(archive))
    run.seconds = time.perf_counter() - start
    return run


def coordinate_minimum(
    space: GeneSpace, evaluate: GeneFunction, start: np.ndarray | None = None, sweeps: int = 20
) -> tuple[np.ndarray, float]:
    """A row minimising `evaluate`, by exact line search over one gene at a time until a
    sweep changes nothing: the global minimum when the function is separable per gene."""
    best = space.repair(np.zeros((1, len(space))) if start is None else start[None, :])[0]
    best_value = float(evaluate(best[None, :])[0])
    for _ in range(sweeps):
        improved = False
        for k, card in enumerate(space.cardinalities):
            trials = np.repeat(best[None, :], card, axis=0)
            trials[:, k] = np.arange(card)
            trials = space.repair(trials)
            values = np.asarray(evaluate(trials), float)
            j = int(np.argmin(values))
            if values[j] < best_value - 1e-12:
                best, best_value, improved = trials[j], float(values[j]), True
        if not improved:
            break
    return best, best_value
