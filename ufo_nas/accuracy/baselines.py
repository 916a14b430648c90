"""Baseline accuracy predictors that GP-NAS is measured against (tools/bench_predictors.py).

Each has `fit(genes, y)` and `predict(genes)` on gene matrices of one space.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import RidgeCV

from ufo_nas.accuracy.features import ArchFeatures
from ufo_nas.space import SearchSpace


class RidgeOneHot:
    """Ridge regression on one-hot gene features, its penalty by leave-one-out CV."""

    def __init__(self, space: SearchSpace):
        self.features = ArchFeatures(space)
        self.model = RidgeCV(alphas=np.logspace(-2, 3, 21))

    def fit(self, genes: np.ndarray, y: np.ndarray) -> RidgeOneHot:
        self.model.fit(self.features.transform(genes), y)
        return self

    def predict(self, genes: np.ndarray) -> np.ndarray:
        return self.model.predict(self.features.transform(genes))


class BoostedStumps:
    """Gradient boosting (scikit-learn) of depth-1 trees on one-hot gene features."""

    def __init__(self, space: SearchSpace, seed: int = 0):
        self.features = ArchFeatures(space)
        self.model = GradientBoostingRegressor(
            n_estimators=400, max_depth=1, learning_rate=0.05, subsample=0.8, random_state=seed
        )

    def fit(self, genes: np.ndarray, y: np.ndarray) -> BoostedStumps:
        self.model.fit(self.features.transform(genes), y)
        return self

    def predict(self, genes: np.ndarray) -> np.ndarray:
        return self.model.predict(self.features.transform(genes))


class FixedKernelGPNAS:
    """GP-NAS as PaddleSlim ships it (paddleslim.nas.GPNAS), re-implemented from its
    equations: integer gene codes plus a bias, a ridge prior mean for the weights
    (penalty 1e-5), prior weight covariance 0.1 I, and a fixed residual kernel
    0.5 exp(-|x - x'|^2 / 16); no hyper-parameter is fitted and no variance is returned.
    Codes are choice index + 1, and 0 for layers past the depth (the competition's digits).
    """

    ridge, prior_cov = 1e-5, 0.1

    def __init__(self, space: SearchSpace):
        self.space = space
        min_depth = min(space.spec.depths)
        self._layer = np.array(
            [-1] + [int(name.rsplit(".", 1)[1]) for name, _ in space.variables[1:]]
        )
        self._min_depth = min_depth

    def _codes(self, genes: np.ndarray) -> np.ndarray:
        genes = self.space.canonical_genes(genes)
        depth = np.asarray(self.space.spec.depths)[genes[:, 0]]
        present = self._layer[None, :] < depth[:, None]
        codes = np.where(present, genes + 1, 0).astype(float)
        return np.hstack([codes, np.ones((len(codes), 1))])

    @staticmethod
    def _kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        sq = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return 0.5 * np.exp(-sq / 16.0)

    def fit(self, genes: np.ndarray, y: np.ndarray) -> FixedKernelGPNAS:
        x = self._codes(genes)
        d = x.shape[1]
        w0 = np.linalg.solve(x.T @ x + self.ridge * np.eye(d), x.T @ y)
        cov_w = self.prior_cov * np.eye(d)
        k = self._kernel(x, x) + x @ cov_w @ x.T + self.ridge * np.eye(len(y))
        self.w = w0 + cov_w @ x.T @ np.linalg.solve(k, y - x @ w0)
        return self

    def predict(self, genes: np.ndarray) -> np.ndarray:
        return self._codes(genes) @ self.w
