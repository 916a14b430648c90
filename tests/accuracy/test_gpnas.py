import json

import numpy as np
import pytest
from conftest import DATASETS
from scipy.optimize import approx_fprime
from scipy.stats import kendalltau

from ufo_nas import ArchError
from ufo_nas.accuracy import GPNAS, PredictorError, share_strength
from ufo_nas.accuracy.gpnas import _neg_log_evidence


def additive_task(space, n, noise, seed, shared_paths=False):
    """Archs with a known additive score: a fixed effect per gene choice, plus noise."""
    rng = np.random.default_rng(seed)
    genes = space.sample_genes(rng, n)
    if shared_paths:
        genes[:, 1 + 2 * space.layers :] = 0
    model = GPNAS(space, space.tasks[0])
    effects = np.random.default_rng(100).normal(0, 1, model.features.width)
    clean = model.features.transform(genes) @ effects
    return genes, clean, clean + rng.normal(0, noise, n)


def test_recovers_an_additive_function(tiny):
    genes, _, y = additive_task(tiny, 200, noise=0.5, seed=0)
    test_genes, clean, _ = additive_task(tiny, 300, noise=0.5, seed=1)
    model = GPNAS(tiny, "face").fit(genes, y)
    mean, std = model.predict(test_genes)
    assert kendalltau(mean, clean).statistic > 0.85
    assert 0.35 < model.noise_std < 0.7  # the true noise is 0.5
    assert np.all(std > 0)


def test_std_is_larger_for_choices_never_seen(tiny):
    genes, _, y = additive_task(tiny, 100, noise=0.1, seed=2, shared_paths=True)
    path_genes = slice(1 + 2 * tiny.layers, None)  # the data only ever takes the shared FFN
    model = GPNAS(tiny, "face").fit(genes, y)
    _, seen_std = model.predict(genes)
    novel = genes.copy()
    novel[:, path_genes] = 1  # task-specific paths: columns the data never set
    _, novel_std = model.predict(novel)
    assert seen_std.max() < model.noise_std < novel_std.min()


def test_gradient_matches_finite_differences(tiny):
    genes, _, y = additive_task(tiny, 40, noise=0.3, seed=3)
    model = GPNAS(tiny, "face")
    phi = model.design(genes)
    yc = (y - y.mean()) / y.std()
    stats = (phi.T @ phi, phi.T @ yc, float(yc @ yc), len(yc), model._groups)
    theta = np.random.default_rng(0).normal(-1.5, 0.5, len(model.group_names) + 1)
    numeric = approx_fprime(theta, lambda t: _neg_log_evidence(t, *stats)[0], 1e-6)
    assert np.abs(numeric - _neg_log_evidence(theta, *stats)[1]).max() < 1e-4


def test_json_round_trip_predicts_the_same(tiny, tmp_path):
    genes, _, y = additive_task(tiny, 60, noise=0.3, seed=4)
    model = GPNAS(tiny, "object", target="synthetic").fit(genes, y)
    path = model.save(tmp_path / "object.json")
    data = json.loads(path.read_text())  # plain JSON, no pickle
    assert data["task"] == "object" and len(data["training_set"]) == 60
    loaded = GPNAS.load(path)
    probe = tiny.sample_genes(np.random.default_rng(9), 50)
    for got, want in zip(loaded.predict(probe), model.predict(probe)):
        assert np.allclose(got, want)
    with pytest.raises(Exception, match="already exists"):
        model.save(path)


def test_as_proxy_reproduces_the_posterior_mean(tiny):
    genes, _, y = additive_task(tiny, 80, noise=0.3, seed=5)
    first = GPNAS(tiny, "face").fit(genes, y)
    second = GPNAS(tiny, "object", proxies=[first.as_proxy()]).fit(genes, y + 1.0)
    probe = tiny.sample_genes(np.random.default_rng(10), 30)
    for model in (first, second):
        onehot = model.features.transform(probe)
        assert np.allclose(model.as_proxy()(onehot), model.predict(probe, return_std=False))


def test_sharing_weights_a_related_task_above_an_unrelated_one(tiny):
    genes, _, y = additive_task(tiny, 60, noise=1.0, seed=6)
    related = y + np.random.default_rng(7).normal(0, 0.3, len(y))
    unrelated = np.random.default_rng(8).normal(0, 1, len(y))
    models = {
        name: GPNAS(tiny, "face").fit(genes, target)
        for name, target in (("main", y), ("related", related), ("unrelated", unrelated))
    }
    relevance = share_strength(models)["main"].relevance()
    assert relevance["proxy.related"] > 3 * relevance["proxy.unrelated"]


@pytest.mark.skipif(not (DATASETS / "cvpr22_ufo_vit_base").is_dir(), reason="no shared data")
def test_ranks_real_ufo_subnets(base):
    from ufo_nas.accuracy import AccuracyTable, accuracy_table_path

    targets = AccuracyTable(accuracy_table_path(base), base).targets("person")
    order = np.random.default_rng(0).permutation(len(targets.archs))
    train, test = order[:300], order[300:]
    model = GPNAS(base, "person").fit([targets.archs[i] for i in train], targets.y[train])
    pred = model.predict([targets.archs[i] for i in test], return_std=False)
    assert kendalltau(pred, targets.y[test]).statistic > 0.85


def test_bad_input_is_one_clear_line(tiny, base, tmp_path):
    genes, _, y = additive_task(tiny, 20, noise=0.3, seed=11)
    y_nan = y.copy()
    y_nan[3] = np.nan
    with pytest.raises(PredictorError, match=r"target 3 of task 'face' is nan \(NaN or missing\)"):
        GPNAS(tiny, "face").fit(genes, y_nan)
    with pytest.raises(PredictorError, match="need one target per arch: 20 archs"):
        GPNAS(tiny, "face").fit(genes, y[:-1])
    with pytest.raises(ArchError, match="not in"):
        GPNAS(tiny, "face").fit([base.smallest()] * 2, [0.0, 1.0])
    with pytest.raises(PredictorError, match="not fitted"):
        GPNAS(tiny, "face").predict(genes)
    path = GPNAS(tiny, "face").fit(genes, y).save(tmp_path / "p.json")
    with pytest.raises(
        PredictorError, match="fitted on space 'ufo_vit_tiny'.*not on 'ufo_vit_base'"
    ):
        GPNAS.load(path, base)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(PredictorError, match="junk.json is not valid JSON"):
        GPNAS.load(tmp_path / "junk.json", tiny)
    (tmp_path / "other.json").write_text('{"format": "something"}')
    with pytest.raises(PredictorError, match="not a ufo-nas GP-NAS predictor"):
        GPNAS.load(tmp_path / "other.json", tiny)


@pytest.mark.parametrize(
    "key, value, message",
    [  # found by tools/fuzz_loaders.py: TypeError, ValueError (infs) or an inf prediction
        (
            "y",
            10**30,
            r"training_set.1.y is 1000000000000000000000000000000; expected a number in \[-1e\+06",
        ),
        ("y", 1e308, r"training_set.1.y is 1e\+308; expected a number in \[-1e\+06"),
        (
            "depth",
            -49297.98707413005,
            r"log_relevance.depth is -49297.98707413005; expected a number in \[-24, 16\]",
        ),
        ("depth", 1e308, r"log_relevance.depth is 1e\+308; expected a number in \[-24, 16\]"),
        (
            "log_noise",
            float("nan"),
            r"hyperparameters.log_noise is nan; expected a number in \[-14, 6\]",
        ),
    ],
)
def test_a_predictor_file_out_of_the_fitters_ranges_is_one_clear_line(
    tiny, tmp_path, key, value, message
):
    genes, _, y = additive_task(tiny, 20, noise=0.3, seed=11)
    path = GPNAS(tiny, "face").fit(genes, y).save(tmp_path / "p.json")
    data = json.loads(path.read_text())
    hyper = data["hyperparameters"]
    if key == "y":
        data["training_set"][1]["y"] = value
    elif key == "log_noise":
        hyper["log_noise"] = value
    else:
        hyper["log_relevance"][key] = value
    path.write_text(json.dumps(data))
    with pytest.raises(PredictorError, match=message) as info:
        GPNAS.load(path, tiny)
    assert "\n" not in str(info.value)
