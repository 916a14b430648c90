"""pymoo operators that respect a GeneSpace.

Ordered genes are varied as integers (pymoo's simulated binary crossover and polynomial
mutation, then rounded), unordered ones categorically (uniform swap, reset to another
choice). Repair rounds and maps rows to their canonical form, so duplicate elimination
(by hashing rows) sees equal solutions as equal.
"""

from __future__ import annotations

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling
from pymoo.operators.crossover.sbx import cross_sbx
from pymoo.operators.mutation.pm import mut_pm

from ufo_nas.search.genes import GeneSpace


def row_key(row: np.ndarray) -> bytes:
    """Hashable identity of one canonical gene row."""
    return np.asarray(row, dtype=np.int64).tobytes()


def _cells(space: GeneSpace) -> tuple[np.ndarray, np.ndarray]:
    """Real bounds of the ordered genes: rounding gives every choice a cell of width 1."""
    return np.full(len(space), -0.5), space.cardinalities - 0.5


class GeneSampling(Sampling):
    """Uniform random rows, led by the all-lowest and all-highest choice rows: for ordered
    genes these are the cheapest and costliest solutions, the ends of most fronts."""

    def __init__(self, space: GeneSpace):
        super().__init__()
        self.space = space

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        ends = np.stack([np.zeros(len(self.space)), self.space.cardinalities - 1])
        rows = np.vstack([ends, self.space.sample(random_state, n_samples)])[:n_samples]
        return rows.astype(float)


class GeneRepair(Repair):
    """Round, clip and canonicalise rows."""

    def __init__(self, space: GeneSpace):
        super().__init__()
        self.space = space

    def _do(self, problem, X, **kwargs):
        return self.space.repair(X).astype(float)


class GeneCrossover(Crossover):
    """SBX on ordered genes (eta small: integer steps), uniform crossover on the others."""

    def __init__(self, space: GeneSpace, eta: float = 3.0, prob: float = 0.9):
        super().__init__(n_parents=2, n_offsprings=2, prob=prob, vtype=float)
        self.space, self.eta = space, eta

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        _, n_matings, n_var = X.shape
        ordered = self.space.ordered
        Q = X.astype(float, copy=True)
        if ordered.any():
            cols = np.flatnonzero(ordered)
            low, high = _cells(self.space)
            Q[:, :, cols] = cross_sbx(
                Q[:, :, cols],
                low[cols],
                high[cols],
                np.full((n_matings, 1), self.eta),
                np.full((n_matings, 1), 0.5),
                np.full((n_matings, 1), 0.5),
                random_state=random_state,
            )
        if (~ordered).any():
            swap = (random_state.random((n_matings, n_var)) < 0.5) & ~ordered[None, :]
            Q[0][swap], Q[1][swap] = X[1][swap], X[0][swap]
        return Q


class GeneMutation(Mutation):
    """Polynomial mutation on ordered genes, reset to another choice on the others; each
    gene mutates with probability `prob_var` (default 1 / genes)."""

    def __init__(self, space: GeneSpace, eta: float = 3.0, prob_var: float | None = None):
        super().__init__(prob=1.0, vtype=float)
        self.space, self.eta = space, eta
        self.rate = prob_var if prob_var is not None else 1.0 / len(space)

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        X = np.asarray(X, dtype=float)
        n = X.shape[0]
        ordered, card = self.space.ordered, self.space.cardinalities
        Xp = X.copy()
        if ordered.any():
            cols = np.flatnonzero(ordered)
            low, high = _cells(self.space)
            Xp[:, cols] = mut_pm(
                X[:, cols],
                low[cols],
                high[cols],
                np.full(n, self.eta),
                np.full(n, self.rate),
                at_least_once=False,
                random_state=random_state,
            )
        flip = (random_state.random(X.shape) < self.rate) & ~ordered[None, :] & (card > 1)
        if flip.any():
            shift = random_state.integers(1, np.maximum(card, 2)[None, :], size=X.shape)
            Xp[flip] = (np.rint(X[flip]) + shift[flip]) % np.broadcast_to(card, X.shape)[flip]
        return Xp


class RowDuplicates(DuplicateElimination):
    """Drops rows equal to an earlier row of the batch or to a row of `other` (the
    population, the offspring so far), by hashing the rounded rows."""

    def _do(self, pop, other, is_duplicate):
        keys = [row_key(np.rint(x)) for x in pop.get("X")]
        if other is None:
            seen: set[bytes] = set()
            for i, key in enumerate(keys):
                is_duplicate[i] |= key in seen
                seen.add(key)
        else:
            others = {row_key(np.rint(x)) for x in other.get("X")}
            is_duplicate |= np.array([key in others for key in keys], dtype=bool)
        return is_duplicate
