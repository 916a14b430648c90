"""Toy problems with fronts known in closed form, for engine tests."""

from __future__ import annotations

import numpy as np

from ufo_nas.search.engine import Objective
from ufo_nas.search.genes import GeneSpace, Variable


def zdt_space(variables: int = 5, choices: int = 5, ordered: bool = True) -> GeneSpace:
    return GeneSpace(
        tuple(Variable(f"x{i}", tuple(range(choices)), ordered) for i in range(variables))
    )


def zdt_objectives(choices: int = 5) -> tuple[Objective, ...]:
    """ZDT1 on a grid: the front is x1.. = 0, one point per choice of x0."""
    top = choices - 1

    def f1(g: np.ndarray) -> np.ndarray:
        return g[:, 0] / top

    def f2(g: np.ndarray) -> np.ndarray:
        gg = 1 + g[:, 1:].sum(axis=1) / top
        return gg * (1 - np.sqrt(f1(g) / gg))

    return (Objective("f1", f1), Objective("f2", f2))
