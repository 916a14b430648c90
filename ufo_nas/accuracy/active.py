"""Active sampling (GP-NAS's mutual-information sampler): which subnets to evaluate next.

The information a set S of noisy evaluations carries about the GP is
I(y_S; f) = 1/2 log det(I + K_SS / sigma^2). Adding archs one at a time, the gain of x is
1/2 log(1 + var(x) / sigma^2), so the greedy choice is the arch of highest posterior
variance; the variance update after a choice needs no evaluation (no y), so a whole batch
is chosen before anything is measured.
"""

from __future__ import annotations

import numpy as np

from ufo_nas.accuracy.gpnas import GPNAS


def select_informative(model: GPNAS, pool: np.ndarray, k: int) -> np.ndarray:
    """Indices of `k` rows of the gene matrix `pool` chosen greedily by information gain.

    Uses the model's posterior (or its prior when unfitted). Archs already in the
    training set carry little variance and are naturally avoided.
    """
    if k > len(pool):
        raise ValueError(f"cannot choose {k} archs from a pool of {len(pool)}")
    w_cov, noise = model.weight_belief()
    phi = model.design(pool)
    projected = phi @ w_cov  # (n, d)
    variance = np.einsum("ij,ij->i", projected, phi)
    chosen: list[int] = []
    for _ in range(k):
        variance[chosen] = -np.inf
        best = int(np.argmax(variance))
        chosen.append(best)
        gain = projected[best].copy()  # w_cov @ phi_best
        denom = noise + gain @ phi[best]
        cross = phi @ gain  # covariance of every pool arch with the chosen one
        projected -= np.outer(cross, gain) / denom
        variance -= cross**2 / denom
    return np.asarray(chosen)
