"""GP-NAS posterior checked against an independent function-space computation.

`GPNAS` works in weight space on one-hot gene features. Marginalising the weights gives
a GP with the additive categorical kernel k(x, x') = sum_j s_j phi_j(x) phi_j(x'), a
weighted dot product of one-hot features, over the columns the code keeps uncertain:

- *identified* columns (they vary over the training set and their gene took at least two
  real choices): fitted jointly with the data;
- columns never set in the training set: they keep their prior N(0, s_j);
- every other column (always set, or confounded with depth / the intercept) is given
  zero weight variance: its effect is absorbed into the mean.

The mean function is the constant mean of the training targets; targets are standardised
(y - mean) / std (population std) and the posterior is scaled back, so predictions and
std are in units of y. The std is that of the *latent* score: noise is not included.
exp(log_noise) is the noise variance in standardised units.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import DotProduct

from ufo_nas import SearchSpace
from ufo_nas.accuracy import GPNAS
from ufo_nas.space import Arch

TASK = "face"


def one_hot(space: SearchSpace, archs: list[Arch], task: str) -> tuple[np.ndarray, list[str]]:
    """One-hot features built from the arch fields (not from `ArchFeatures`), with the gene
    name of each column: depth; per layer heads, mlp, the task's path, each with an
    "absent" column for layers past the smallest depth."""
    spec = space.spec
    min_depth = min(spec.depths)
    genes: list[tuple[str, tuple, int]] = [("depth", tuple(spec.depths), -1)]
    genes += [(f"heads.{i}", tuple(spec.num_heads[i]), i) for i in range(space.layers)]
    genes += [(f"mlp.{i}", tuple(spec.mlp_ratios[i]), i) for i in range(space.layers)]
    paths = spec.task(task).paths
    genes += [(f"path.{task}.{i}", tuple(paths[i]), i) for i in range(space.layers)]
    rows = []
    for arch in archs:
        row: list[float] = []
        for name, choices, layer in genes:
            block = [0.0] * (len(choices) + (1 if layer >= min_depth else 0))
            if layer >= arch.depth:
                block[-1] = 1.0
            else:
                kind = name.split(".")[0]
                value = {
                    "depth": arch.depth,
                    "heads": arch.num_heads[layer],
                    "mlp": arch.mlp_ratio[layer],
                    "path": arch.task_paths(task)[layer] if kind == "path" else None,
                }[kind]
                block[list(choices).index(value)] = 1.0
            row += block
        rows.append(row)
    names = [
        name
        for name, choices, layer in genes
        for _ in range(len(choices) + (1 if layer >= min_depth else 0))
    ]
    return np.array(rows), names


def kept_columns(phi: np.ndarray, names: list[str], absent: np.ndarray) -> np.ndarray:
    """Columns with non-zero posterior weight variance: identified ones, and never-set ones."""
    varies = phi.std(axis=0) > 0
    real_choice_seen = phi.any(axis=0) & ~absent
    n_seen = {g: real_choice_seen[[n == g for n in names]].sum() for g in set(names)}
    identified = varies & np.array([n_seen[n] >= 2 for n in names])
    return identified | ~phi.any(axis=0)


def restricted_genes(space: SearchSpace, genes: np.ndarray) -> np.ndarray:
    """Training genes that leave columns unidentified: every FFN path shared (task/mix
    columns never set), heads.0 always its first choice (a column always set) and heads of
    the last layer at one choice when present (set, but confounded with depth)."""
    genes = genes.copy()
    genes[:, 1 + 2 * space.layers :] = 0
    genes[:, 1] = 0
    genes[:, space.layers] = 1
    return genes


@pytest.fixture(scope="module", params=["random", "restricted"])
def case(request: pytest.FixtureRequest, tiny: SearchSpace) -> dict:
    rng = np.random.default_rng(7)
    genes = tiny.sample_genes(rng, 15)
    if request.param == "restricted":
        genes = restricted_genes(tiny, genes)
    archs = tiny.decode_batch(genes)
    probe = [tiny.sample(rng) for _ in range(25)] + archs[:3]
    # an unstandardised target: a hidden additive signal around 50 with spread ~10
    phi_all, _ = one_hot(tiny, archs, TASK)
    effects = np.random.default_rng(1).normal(0, 1, phi_all.shape[1])
    signal = phi_all @ effects
    y = 50.0 + 10.0 * (signal - signal.mean()) / signal.std() + rng.normal(0, 2.0, len(archs))
    model = GPNAS(tiny, TASK).fit(archs, y)
    return {"space": tiny, "archs": archs, "probe": probe, "y": y, "model": model}


def reference_posterior(case: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Scaled features Z (Z Z^T = kernel) of train and probe, and the noise variance in y
    units."""
    space, model = case["space"], case["model"]
    phi, names = one_hot(space, case["archs"], TASK)
    phi_star, _ = one_hot(space, case["probe"], TASK)
    assert names == [model.group_names[g] for g in model.features.groups]
    absent = np.zeros(len(names), dtype=bool)
    for j in range(len(names) - 1):
        # the last column of a block whose gene is a layer gene past the smallest depth
        layer = -1 if names[j] == "depth" else int(names[j].rsplit(".", 1)[1])
        layer_gene = layer >= min(space.spec.depths)
        absent[j] = layer_gene and names[j + 1] != names[j]
    absent[-1] = True
    s = np.exp(model.log_relevance)[[model.group_names.index(n) for n in names]]
    keep = kept_columns(phi, names, absent)
    scale = np.sqrt(s * keep)
    return phi * scale, phi_star * scale, keep, float(np.exp(model.log_noise))


def test_posterior_matches_numpy_function_space(case: dict) -> None:
    z, z_star, _, noise = reference_posterior(case)
    y = case["y"]
    mu, sd = y.mean(), y.std()
    yc = (y - mu) / sd
    k = z @ z.T + noise * np.eye(len(y))
    k_star = z_star @ z.T
    mean = mu + sd * k_star @ np.linalg.solve(k, yc)
    var = np.sum(z_star**2, axis=1) - np.einsum("ij,ji->i", k_star, np.linalg.solve(k, k_star.T))
    std = sd * np.sqrt(np.maximum(var, 0.0))

    got_mean, got_std = case["model"].predict(case["probe"])
    np.testing.assert_allclose(got_mean, mean, rtol=1e-6)
    np.testing.assert_allclose(got_std, std, rtol=1e-6, atol=1e-9 * sd)
    # latent std, without noise: adding the noise would not match
    with_noise = np.sqrt(std**2 + case["model"].noise_std ** 2)
    assert not np.allclose(got_std[-3:], with_noise[-3:], rtol=1e-3)  # the training archs


def test_posterior_matches_sklearn(case: dict) -> None:
    z, z_star, _, noise = reference_posterior(case)
    gpr = GaussianProcessRegressor(
        kernel=DotProduct(sigma_0=0.0, sigma_0_bounds="fixed"),
        alpha=noise,  # on the standardised targets, added to the training diagonal only
        optimizer=None,
        normalize_y=True,  # (y - mean) / population std, as GPNAS
    ).fit(z, case["y"])
    mean, std = gpr.predict(z_star, return_std=True)
    got_mean, got_std = case["model"].predict(case["probe"])
    np.testing.assert_allclose(got_mean, mean, rtol=1e-6)
    np.testing.assert_allclose(got_std, std, rtol=1e-6, atol=1e-9 * case["y"].std())


def test_std_is_in_units_of_y(case: dict) -> None:
    """Scaling the targets by c scales the std by c and the noise std too; a shift moves
    only the mean."""
    model = case["model"]
    shifted = GPNAS(case["space"], TASK).fit(case["archs"], 3.0 * case["y"] + 100.0)
    mean, std = model.predict(case["probe"])
    mean3, std3 = shifted.predict(case["probe"])
    np.testing.assert_allclose(std3, 3.0 * std, rtol=1e-4)
    np.testing.assert_allclose(mean3, 3.0 * mean + 100.0, rtol=1e-5)
    assert shifted.noise_std == pytest.approx(3.0 * model.noise_std, rel=1e-4)
    # the std is of order the target's spread (~10), not of standardised units (~1)
    seen_std = std[-3:]
    assert np.all(std > 0) and std.max() > 1.0
    assert np.all(seen_std < case["y"].std())
    _, novel_std = model.predict(case["probe"][:25])
    assert novel_std.max() > 1.0


def test_restricted_case_exercises_every_column_kind(tiny: SearchSpace) -> None:
    """The restricted training set has never-set, always-set and confounded columns."""
    genes = restricted_genes(tiny, tiny.sample_genes(np.random.default_rng(7), 15))
    archs = tiny.decode_batch(genes)
    phi, names = one_hot(tiny, archs, TASK)
    features = GPNAS(tiny, TASK).features
    np.testing.assert_array_equal(phi, features.transform(archs))  # same feature map
    identified = features.identified(phi)
    assert (~phi.any(axis=0)).sum() > 0  # never set
    assert phi.all(axis=0).sum() > 0  # always set
    assert (~identified & phi.any(axis=0) & ~phi.all(axis=0)).sum() > 0  # confounded
