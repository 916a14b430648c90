"""Pareto utilities on minimisation-form objective arrays (n, m): moocore does the work."""

from __future__ import annotations

from dataclasses import dataclass

import moocore
import numpy as np

REFERENCE_MARGIN = 0.1  # the hypervolume reference point sits 10% of the range past the nadir


def non_dominated(F: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows; of rows with equal objectives, the first is kept."""
    F = np.asarray(F, dtype=float)
    if len(F) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(moocore.is_nondominated(F, keep_weakly=False))


@dataclass(frozen=True)
class Normalisation:
    """Maps objectives to [0, 1] between an ideal and a nadir point; the hypervolume
    reference point is (1 + REFERENCE_MARGIN) in every normalised objective."""

    ideal: np.ndarray
    nadir: np.ndarray

    @classmethod
    def of(cls, F: np.ndarray) -> Normalisation:
        """Ideal and nadir of a front (min and max of each objective)."""
        F = np.asarray(F, dtype=float)
        return cls(F.min(axis=0), F.max(axis=0))

    def __call__(self, F: np.ndarray) -> np.ndarray:
        span = np.where(self.nadir > self.ideal, self.nadir - self.ideal, 1.0)
        return (np.asarray(F, dtype=float) - self.ideal) / span

    def hypervolume(self, F: np.ndarray) -> float:
        """Hypervolume of the normalised set w.r.t. the reference point (points beyond the
        reference count nothing)."""
        F = self(F)
        ref = np.full(F.shape[1], 1.0 + REFERENCE_MARGIN)
        inside = (F < ref).all(axis=1)
        if not inside.any():
            return 0.0
        return float(moocore.hypervolume(F[inside], ref=ref))
