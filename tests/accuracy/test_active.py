import numpy as np

from ufo_nas.accuracy import GPNAS, select_informative


def information(model, phi, noise):
    """I(y_S; f) = 1/2 log det(I + phi S phi^T / noise) of a chosen set."""
    w_cov, _ = model.weight_belief()
    gram = phi @ w_cov @ phi.T / noise
    return 0.5 * np.linalg.slogdet(np.eye(len(phi)) + gram)[1]


def test_greedy_choice_carries_more_information_than_random(tiny):
    pool = tiny.sample_genes(np.random.default_rng(0), 500)
    model = GPNAS(tiny, "face")
    _, noise = model.weight_belief()
    chosen = select_informative(model, pool, 15)
    assert len(set(chosen.tolist())) == 15
    greedy = information(model, model.design(pool[chosen]), noise)
    rng = np.random.default_rng(1)
    randoms = [
        information(model, model.design(pool[rng.choice(500, 15, replace=False)]), noise)
        for _ in range(20)
    ]
    assert greedy > max(randoms)


def test_fitted_model_avoids_what_it_has_seen(tiny):
    rng = np.random.default_rng(2)
    train = tiny.sample_genes(rng, 30)
    model = GPNAS(tiny, "face")
    effects = rng.normal(size=model.features.width)
    model.fit(train, model.features.transform(train) @ effects + rng.normal(0, 0.1, 30))
    pool = np.vstack([train, tiny.sample_genes(rng, 30)])
    chosen = select_informative(model, pool, 5)
    assert np.all(chosen >= 30)  # the fresh half is more informative than repeats
