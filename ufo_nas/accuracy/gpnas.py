"""GP-NAS (Li et al., CVPR 2020): Gaussian-process regression of subnet accuracy.

    score(x) = mu + phi(x)^T w + noise,   w ~ N(0, diag(s_g)),  noise ~ N(0, sigma^2)

phi(x) is the one-hot encoding of the arch's genes (`ArchFeatures`) plus, optionally,
the predictions of proxy models (a ridge fit on cheap proxy data, or the GP-NAS models of
correlated tasks: the paper's linear mean prior, learnt rather than fixed). Marginalising
w gives a GP whose kernel, k(x, x') = sum_g s_g [x_g == x'_g] + sum_p s_p p(x) p(x'), is an
additive categorical kernel with one relevance s_g per gene and one per proxy. All
relevances and the noise are fitted by maximising the marginal likelihood (scipy's
L-BFGS-B with analytic gradients). The algebra runs in weight space (features, not
samples), so a fit on 500 archs takes milliseconds and prediction is a matrix product.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize

from ufo_nas.accuracy.features import ArchFeatures
from ufo_nas.errors import ArchError, UfoError
from ufo_nas.fileio import write_atomic
from ufo_nas.formats import VersionedFormat
from ufo_nas.space import Arch, SearchSpace
from ufo_nas.spec import load_space_spec

SCHEMA = 1
_LOG_BOUNDS = (-14.0, 6.0)  # of a kind's log relevance and of the log noise
_DEVIATION_BOUNDS = (-10.0, 10.0)  # of a gene's log relevance from its kind's
# what a saved predictor may hold: the fitter's ranges, and finite scores far from overflow
_LOG_RELEVANCE_RANGE = (
    _LOG_BOUNDS[0] + _DEVIATION_BOUNDS[0],
    _LOG_BOUNDS[1] + _DEVIATION_BOUNDS[1],
)
_SPREAD_RANGE = (1e-3, 1e3)
_MAGNITUDE = 1e6  # bound on |y|, a proxy's intercept and weights
DEFAULT_LOG_RELEVANCE = float(np.log(0.1))  # start of the marginal-likelihood search
DEFAULT_LOG_NOISE = float(np.log(0.5))


class PredictorError(UfoError):
    """Bad training data or a predictor file that does not fit."""


PREDICTOR_FORMAT = VersionedFormat(
    "GP-NAS predictor",
    SCHEMA,
    PredictorError,
    format="ufo-nas-gpnas",
    required=("space", "space_fingerprint"),
)


@dataclass
class LinearProxy:
    """A linear model on the same features: intercept + features @ weights."""

    name: str
    intercept: float
    weights: np.ndarray

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return self.intercept + features @ self.weights

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "intercept": self.intercept, "weights": self.weights.tolist()}


@dataclass
class GPNAS:
    """Per-task GP-NAS predictor over one space; higher scores are better subnets."""

    space: SearchSpace
    task: str
    proxies: list[LinearProxy] = field(default_factory=list)
    target: str = "score"  # what y means, written into the saved file
    relevance_spread: float = 1.0  # prior std of a gene's log relevance around its kind's
    log_relevance: np.ndarray | None = None  # per group, fitted
    log_noise: float = 0.0
    archs: list[Arch] = field(default_factory=list)
    y: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.space.spec.task(self.task)
        self.features = ArchFeatures(self.space, self.task)
        n_genes = len(self.features.group_names)
        self._groups = np.concatenate(
            [self.features.groups, n_genes + np.arange(len(self.proxies))]
        )
        self.group_names = self.features.group_names + [f"proxy.{p.name}" for p in self.proxies]
        self._proxy_mean = np.zeros(len(self.proxies))  # set from the training set by fit()
        self._proxy_scale = np.ones(len(self.proxies))

    # --- design ---------------------------------------------------------------------------
    def design(self, archs: Sequence[Arch] | np.ndarray) -> np.ndarray:
        """phi(x): one-hot genes, then one column per proxy (standardised on training)."""
        onehot = self.features.transform(archs)
        if not self.proxies:
            return onehot
        cols = np.stack([p(onehot) for p in self.proxies], axis=1)
        return np.hstack([onehot, (cols - self._proxy_mean) / self._proxy_scale])

    def _group_kinds(self) -> list[str]:
        """Genes of one kind (heads, mlp, path of a task) share a prior on their relevance."""
        kinds = []
        for name in self.group_names:
            parts = name.split(".")
            kinds.append(name if parts[0] == "proxy" else ".".join(parts[:-1]) or name)
        return kinds

    def _check_targets(self, archs: Sequence[Arch] | np.ndarray, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        n = len(archs)
        if y.shape != (n,):
            raise PredictorError(f"need one target per arch: {n} archs, targets of shape {y.shape}")
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            raise PredictorError(
                f"target {bad[0]} of task '{self.task}' is {y[bad[0]]} (NaN or missing); "
                "drop that arch or give it a finite score"
            )
        if n < 2:
            raise PredictorError(f"need at least 2 evaluated archs to fit, got {n}")
        return y

    # --- fitting --------------------------------------------------------------------------
    def fit(self, archs: Sequence[Arch] | np.ndarray, y: Sequence[float] | np.ndarray) -> GPNAS:
        """Fit relevances and noise by marginal likelihood, then the posterior."""
        archs = self._as_archs(archs)
        y = self._check_targets(archs, y)
        self.archs, self.y = archs, y
        if self.proxies:
            onehot = self.features.transform(archs)
            raw = np.stack([p(onehot) for p in self.proxies], axis=1)
            self._proxy_mean, self._proxy_scale = raw.mean(0), raw.std(0) + 1e-12
        phi = self.design(archs)
        yc = self._standardise(y)
        seen = self._identified(phi)
        kinds, kind_of_group = np.unique(self._group_kinds(), return_inverse=True)
        params0 = np.concatenate(
            [
                np.full(len(kinds), DEFAULT_LOG_RELEVANCE),
                np.zeros(len(kind_of_group)),
                [DEFAULT_LOG_NOISE],
            ]
        )
        seen_phi = phi[:, seen]
        stats = (
            seen_phi.T @ seen_phi,
            seen_phi.T @ yc,
            float(yc @ yc),
            len(yc),
            self._groups[seen],
        )
        result = minimize(
            _hierarchical_objective,
            params0,
            args=(stats, kind_of_group, self.relevance_spread),
            jac=True,
            method="L-BFGS-B",
            bounds=[_LOG_BOUNDS] * len(kinds)
            + [_DEVIATION_BOUNDS] * len(kind_of_group)
            + [_LOG_BOUNDS],
        )
        kind_log_s, deviation = result.x[: len(kinds)], result.x[len(kinds) : -1]
        self.log_relevance = kind_log_s[kind_of_group] + deviation
        self.log_noise = float(result.x[-1])
        self._posterior(phi, yc)
        return self

    def _standardise(self, y: np.ndarray) -> np.ndarray:
        self._mu = float(y.mean())
        self._scale = float(y.std()) or 1.0
        return (y - self._mu) / self._scale

    def _identified(self, phi: np.ndarray) -> np.ndarray:
        """Design columns whose weights the training set informs (see ArchFeatures)."""
        onehot = self.features.width
        proxies_vary = phi[:, onehot:].std(axis=0) > 0
        return np.concatenate([self.features.identified(phi[:, :onehot]), proxies_vary])

    def _posterior(self, phi: np.ndarray, yc: np.ndarray) -> None:
        """Weight posterior. The training set says nothing of an unidentified column's
        effect: if always 0 (a choice never evaluated) it keeps its prior N(0, s); if
        ever 1, its effect is the intercept's or depth's, so it adds no uncertainty."""
        s = np.exp(self.log_relevance)[self._groups]
        noise = np.exp(self.log_noise)
        varying = self._identified(phi)
        seen_phi = phi[:, varying]
        a = seen_phi.T @ seen_phi / noise + np.diag(1.0 / s[varying])
        self._w_cov = np.diag(np.where(phi.any(axis=0), 0.0, s))
        block = np.ix_(varying, varying)
        self._w_cov[block] = cho_solve(cho_factor(a, lower=True), np.eye(varying.sum()))
        self._w_mean = np.zeros(len(s))
        self._w_mean[varying] = self._w_cov[block] @ (seen_phi.T @ yc) / noise

    def _as_archs(self, archs: Sequence[Arch] | np.ndarray) -> list[Arch]:
        if isinstance(archs, np.ndarray):
            return self.space.decode_batch(archs)
        for arch in archs:
            self.space.check(arch)
        return list(archs)

    def weight_belief(self) -> tuple[np.ndarray, float]:
        """Covariance of the weights (standardised units) and the noise variance: the
        posterior once fitted, else the prior at the current hyper-parameters."""
        if self.fitted:
            return self._w_cov, float(np.exp(self.log_noise))
        log_s = self.log_relevance
        if log_s is None:
            log_s = np.full(len(self.group_names), DEFAULT_LOG_RELEVANCE)
        return np.diag(np.exp(log_s)[self._groups]), float(np.exp(DEFAULT_LOG_NOISE))

    # --- prediction -----------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self.y is not None

    def predict(
        self, archs: Sequence[Arch] | np.ndarray, return_std: bool = True
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Posterior mean score (and std of the latent score) of each arch."""
        if not self.fitted:
            raise PredictorError(f"the GP-NAS predictor of task '{self.task}' is not fitted")
        phi = self.design(archs)
        mean = self._mu + self._scale * (phi @ self._w_mean)
        if not return_std:
            return mean
        var = np.einsum("ij,jk,ik->i", phi, self._w_cov, phi)
        return mean, self._scale * np.sqrt(np.maximum(var, 0.0))

    @property
    def noise_std(self) -> float:
        return self._scale * float(np.exp(0.5 * self.log_noise))

    def relevance(self) -> dict[str, float]:
        """Fitted prior std of each gene's (or proxy's) effect, in score units."""
        std = self._scale * np.exp(0.5 * self.log_relevance)
        return dict(zip(self.group_names, std.tolist()))

    def as_proxy(self, name: str | None = None) -> LinearProxy:
        """The posterior mean as a linear model on one-hot features (to prior other tasks)."""
        if not self.fitted:
            raise PredictorError(f"the GP-NAS predictor of task '{self.task}' is not fitted")
        d = self.features.width
        weights = self._scale * self._w_mean[:d]
        intercept = self._mu
        for k, proxy in enumerate(self.proxies):  # fold proxies back into the weights
            coef = self._scale * self._w_mean[d + k] / self._proxy_scale[k]
            weights = weights + coef * proxy.weights
            intercept += coef * (proxy.intercept - self._proxy_mean[k])
        return LinearProxy(name or self.task, float(intercept), weights)

    # --- plain-data persistence -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        if not self.fitted:
            raise PredictorError("only a fitted predictor can be saved")
        spec = self.space.spec
        return {
            "format": PREDICTOR_FORMAT.format,
            "schema": SCHEMA,
            "space": spec.name,
            "space_fingerprint": spec.fingerprint(),
            "task": self.task,
            "target": self.target,
            "hyperparameters": {
                "log_relevance": dict(zip(self.group_names, self.log_relevance.tolist())),
                "log_noise": self.log_noise,
                "relevance_spread": self.relevance_spread,
            },
            "proxies": [p.to_dict() for p in self.proxies],
            "training_set": [
                {"arch": a.to_string(), "y": float(v)} for a, v in zip(self.archs, self.y)
            ],
        }

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        text = json.dumps(self.to_dict(), indent=1)
        try:
            return write_atomic(path, lambda tmp: tmp.write_text(text), overwrite)
        except OSError as exc:
            raise PredictorError(f"cannot write {path}: {exc.strerror or exc}") from None

    @classmethod
    def from_dict(cls, data: Any, space: SearchSpace, source: str = "<dict>") -> GPNAS:
        data = PREDICTOR_FORMAT.check(data, source)
        if data["space_fingerprint"] != space.spec.fingerprint():
            raise PredictorError(
                f"{source} was fitted on space '{data['space']}' "
                f"(fingerprint {data['space_fingerprint']}), not on '{space.name}' "
                f"(fingerprint {space.spec.fingerprint()})"
            )
        read = _Reader(source)
        hyper = read.mapping(data, "hyperparameters")
        log_relevance = read.mapping(hyper, "log_relevance", "hyperparameters.")
        model = cls(
            space,
            read.string(data, "task"),
            proxies=[
                LinearProxy(
                    read.string(p, "name", f"proxies.{k}."),
                    read.number(p, "intercept", f"proxies.{k}."),
                    np.array(read.numbers(p, "weights", f"proxies.{k}.")),
                )
                for k, p in enumerate(read.items(data, "proxies"))
            ],
            target=read.string(data, "target"),
            relevance_spread=read.number(
                hyper, "relevance_spread", "hyperparameters.", _SPREAD_RANGE
            ),
        )
        if list(log_relevance) != model.group_names:
            raise PredictorError(f"{source}: hyper-parameter groups do not match the space")
        where = "hyperparameters.log_relevance."
        model.log_relevance = np.array(
            [read.number(log_relevance, g, where, _LOG_RELEVANCE_RANGE) for g in log_relevance]
        )
        model.log_noise = read.number(hyper, "log_noise", "hyperparameters.", _LOG_BOUNDS)
        width = model.features.width
        for k, proxy in enumerate(model.proxies):
            if proxy.weights.shape != (width,):
                raise PredictorError(
                    f"{source}: proxies.{k}.weights has {proxy.weights.size} entries, "
                    f"expected {width} (one per feature of the space)"
                )
        archs, targets = [], []
        for k, row in enumerate(read.items(data, "training_set")):
            try:
                archs.append(space.parse(read.string(row, "arch", f"training_set.{k}.")))
            except ArchError as exc:
                raise PredictorError(f"{source}: training_set.{k}.arch: {exc}") from None
            targets.append(read.number(row, "y", f"training_set.{k}."))
        y = model._check_targets(archs, np.array(targets))
        model.archs, model.y = archs, y
        if model.proxies:
            raw = np.stack([p(model.features.transform(archs)) for p in model.proxies], axis=1)
            model._proxy_mean, model._proxy_scale = raw.mean(0), raw.std(0) + 1e-12
        yc = model._standardise(y)
        model._posterior(model.design(archs), yc)
        return model

    @classmethod
    def load(cls, path: str | os.PathLike, space: SearchSpace | None = None) -> GPNAS:
        """Load a predictor; with no space given, the shipped space it names."""
        path = Path(path)
        data = PREDICTOR_FORMAT.load(path)
        if space is None:
            space = SearchSpace(load_space_spec(PREDICTOR_FORMAT.check(data, str(path))["space"]))
        return cls.from_dict(data, space, str(path))


class _Reader:
    """Typed look-ups in a predictor file: each failure is one PredictorError naming the
    file and the key."""

    def __init__(self, source: str):
        self.source = source

    def _get(self, data: dict, key: str, where: str) -> Any:
        if key not in data:
            raise PredictorError(f"{self.source}: {where}{key} is missing")
        return data[key]

    def _fail(self, where: str, key: str, value: Any, expected: str) -> PredictorError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else f"{shown[:60]}..."
        return PredictorError(f"{self.source}: {where}{key} is {shown}; expected {expected}")

    def mapping(self, data: dict, key: str, where: str = "") -> dict:
        value = self._get(data, key, where)
        if not isinstance(value, dict):
            raise self._fail(where, key, value, "a mapping")
        return value

    def items(self, data: dict, key: str, where: str = "") -> list[dict]:
        value = self._get(data, key, where)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self._fail(where, key, value, "a list of mappings")
        return value

    def string(self, data: dict, key: str, where: str = "") -> str:
        value = self._get(data, key, where)
        if not isinstance(value, str):
            raise self._fail(where, key, value, "a string")
        return value

    def number(
        self,
        data: dict,
        key: str,
        where: str = "",
        bounds: tuple[float, float] = (-_MAGNITUDE, _MAGNITUDE),
    ) -> float:
        """A number within `bounds` (an int of any size is compared exactly, not converted)."""
        value = self._get(data, key, where)
        low, high = bounds
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or not low <= value <= high:  # NaN is in no range
            raise self._fail(where, key, value, f"a number in [{low:g}, {high:g}]")
        return float(value)

    def numbers(self, data: dict, key: str, where: str = "") -> list[float]:
        value = self._get(data, key, where)
        if not isinstance(value, list):
            raise self._fail(where, key, value, "a list of finite numbers")
        return [self.number(dict(enumerate(value)), k, f"{where}{key}.") for k in range(len(value))]


def _hierarchical_objective(
    params: np.ndarray, stats: tuple, kind_of_group: np.ndarray, spread: float
) -> tuple[float, np.ndarray]:
    """Type-II MAP objective: the negative log evidence at log relevance = kind level +
    gene deviation, plus a N(0, spread^2) prior on the deviations. With few evaluations
    a gene's relevance shrinks to its kind's; with many, the data set it."""
    n_kinds = int(kind_of_group.max()) + 1
    kind_level, deviation = params[:n_kinds], params[n_kinds:-1]
    theta = np.concatenate([kind_level[kind_of_group] + deviation, params[-1:]])
    value, grad = _neg_log_evidence(theta, *stats)
    grad_groups = grad[:-1]
    value += 0.5 * float(deviation @ deviation) / spread**2
    return value, np.concatenate(
        [
            np.bincount(kind_of_group, weights=grad_groups, minlength=n_kinds),
            grad_groups + deviation / spread**2,
            grad[-1:],
        ]
    )


def _neg_log_evidence(
    theta: np.ndarray,
    gram: np.ndarray,
    phi_y: np.ndarray,
    y_y: float,
    n: int,
    groups: np.ndarray,
) -> tuple[float, np.ndarray]:
    """Negative log marginal likelihood of the weight-space GP, and its gradient in
    theta = (log relevance per group, log noise variance), from the sufficient statistics
    gram = phi^T phi, phi_y = phi^T y and y_y = y^T y of n samples."""
    s = np.exp(theta[:-1])[groups]
    noise = np.exp(theta[-1])
    a = gram / noise + np.diag(1.0 / s)
    factor = cho_factor(a, lower=True)
    w_cov = cho_solve(factor, np.eye(len(s)))
    w_mean = w_cov @ phi_y / noise
    resid_sq = y_y - 2.0 * w_mean @ phi_y + w_mean @ gram @ w_mean
    log_det_a = 2.0 * np.log(np.diag(factor[0])).sum()
    value = 0.5 * (
        resid_sq / noise + w_mean @ (w_mean / s) + log_det_a + np.log(s).sum() + n * np.log(noise)
    )
    grad_cols = 0.5 * (1.0 - (np.diag(w_cov) + w_mean**2) / s)
    grad_groups = np.bincount(groups, weights=grad_cols, minlength=len(theta) - 1)
    grad_noise = 0.5 * (n - (resid_sq + np.sum(w_cov * gram)) / noise)
    return float(value), np.concatenate([grad_groups, [grad_noise]])
