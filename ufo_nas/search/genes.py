"""A search space as the engine sees it: named categorical variables, each with choices.

A variable is `ordered` when its choices carry meaning in their order (heads, widths,
depths, ratios): the engine then varies it with integer operators, which move to nearby
choices; an unordered one (an FFN path) is varied by uniform swap and random reset. An
optional `canonical` map sends every gene row to one representative of the solution it
encodes (for UFO: genes of layers past the depth are zeroed), so equal solutions get equal
rows and are evaluated once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ufo_nas.errors import UfoError


@dataclass(frozen=True)
class Variable:
    """One gene: its name, its choices, and whether their order means something."""

    name: str
    choices: tuple
    ordered: bool = True

    def __post_init__(self) -> None:
        if len(self.choices) < 1:
            raise UfoError(f"search variable '{self.name}' has no choices")


@dataclass(frozen=True)
class GeneSpace:
    """Variables in gene order, and the map to canonical gene rows (identity by default)."""

    variables: tuple[Variable, ...]
    canonical: Callable[[np.ndarray], np.ndarray] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        names = [v.name for v in self.variables]
        if not names:
            raise UfoError("a search space needs at least one variable")
        if len(set(names)) != len(names):
            raise UfoError(f"search variables must have distinct names, got {names}")

    @property
    def cardinalities(self) -> np.ndarray:
        return np.array([len(v.choices) for v in self.variables], dtype=np.int64)

    @property
    def ordered(self) -> np.ndarray:
        return np.array([v.ordered for v in self.variables], dtype=bool)

    @property
    def size(self) -> int:
        """Gene rows there are (an upper bound on distinct solutions under `canonical`)."""
        return int(np.prod(self.cardinalities.astype(object)))

    def repair(self, genes: np.ndarray) -> np.ndarray:
        """Round, clip into range, then map to the canonical row; (n, v) int64."""
        g = np.clip(np.rint(np.asarray(genes, dtype=float)), 0, self.cardinalities - 1)
        g = g.astype(np.int64)
        return self.canonical(g) if self.canonical is not None else g

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n canonical rows, each gene uniform over its choices."""
        return self.repair(rng.integers(0, self.cardinalities[None, :], size=(n, len(self))))

    def enumerate(self, limit: int = 5_000_000) -> np.ndarray:
        """Every distinct canonical row (for small spaces: exact fronts in tests and benches)."""
        if self.size > limit:
            raise UfoError(f"the space has {self.size:,} gene rows, more than {limit:,} to list")
        grids = np.meshgrid(*[np.arange(c) for c in self.cardinalities], indexing="ij")
        rows = self.repair(np.stack([g.ravel() for g in grids], axis=1))
        return np.unique(rows, axis=0)

    def describe(self, genes: Sequence[int]) -> dict[str, object]:
        """{variable name: chosen value} of one row."""
        return {v.name: v.choices[int(k)] for v, k in zip(self.variables, genes)}

    def __len__(self) -> int:
        return len(self.variables)
