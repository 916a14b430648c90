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


def evidence_stats(space, seed: int):
    """A fresh face model and the sufficient statistics its evidence is computed from."""
    genes, _, y = additive_task(space, 40, noise=0.3, seed=seed)
    model = GPNAS(space, "face")
    phi = model.design(genes)
    yc = (y - y.mean()) / y.std()
    return model, (phi.T @ phi, phi.T @ yc, float(yc @ yc), len(yc), model._groups)


def test_gradient_matches_finite_differences(tiny):
    model, stats = evidence_stats(tiny, seed=3)
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


# --- found by mutation testing (tools/mutation.py) ------------------------------------------


@pytest.fixture
def two_proxies(tiny):
    """A fitted 'main' model whose proxies are an unrelated and a related task's models
    (per test, not per module: mutmut maps a test to the code its own fixtures run)."""
    genes, _, y = additive_task(tiny, 60, noise=1.0, seed=6)
    related = y + np.random.default_rng(7).normal(0, 0.3, len(y))
    unrelated = np.random.default_rng(8).normal(0, 1, len(y))
    models = {
        name: GPNAS(tiny, "face").fit(genes, target)
        for name, target in (("main", y), ("unrelated", unrelated), ("related", related))
    }
    return share_strength(models)["main"]


def test_each_proxy_has_its_own_relevance(two_proxies):
    model = two_proxies
    assert model.group_names[-2:] == ["proxy.unrelated", "proxy.related"]
    n_genes = len(model.features.group_names)
    assert model._groups[-2:].tolist() == [n_genes, n_genes + 1]
    # the second proxy's relevance is fitted too: the related task carries the signal
    relevance = model.relevance()
    assert relevance["proxy.related"] > 0.5 * float(np.std(model.y))
    # relevance is the prior std of a group's effect, in score units
    assert np.allclose(
        list(relevance.values()), model._scale * np.sqrt(np.exp(model.log_relevance))
    )


def test_proxy_columns_are_standardised_on_the_training_set(two_proxies):
    cols = two_proxies.design(two_proxies.archs)[:, -2:]
    assert np.allclose(cols.mean(axis=0), 0.0, atol=1e-9)
    assert np.allclose(cols.std(axis=0), 1.0, rtol=1e-6)


def test_as_proxy_with_two_proxies_reproduces_the_posterior_mean(tiny, two_proxies):
    probe = tiny.sample_genes(np.random.default_rng(12), 30)
    onehot = two_proxies.features.transform(probe)
    assert np.allclose(two_proxies.as_proxy()(onehot), two_proxies.predict(probe, return_std=False))
    with pytest.raises(PredictorError, match="^the GP-NAS predictor of task 'face' is not fitted$"):
        GPNAS(tiny, "face").as_proxy()


def test_an_unfitted_model_with_proxies_designs_raw_proxy_columns(tiny, two_proxies):
    fresh = GPNAS(tiny, "face", proxies=two_proxies.proxies)
    probe = tiny.sample_genes(np.random.default_rng(13), 5)
    onehot = fresh.features.transform(probe)
    want = np.hstack([onehot, np.stack([p(onehot) for p in fresh.proxies], axis=1)])
    assert np.allclose(fresh.design(probe), want)


def test_weight_belief_is_the_prior_then_the_posterior(tiny):
    model = GPNAS(tiny, "face")
    cov, noise = model.weight_belief()
    assert np.allclose(cov, 0.1 * np.eye(model.features.width)) and noise == pytest.approx(0.5)
    model.log_relevance = np.log(np.arange(1.0, len(model.group_names) + 1))
    cov, noise = model.weight_belief()
    assert np.allclose(np.diag(cov), 1.0 + model._groups) and noise == pytest.approx(0.5)
    genes, _, y = additive_task(tiny, 30, noise=0.3, seed=14)
    model.fit(genes, y)
    cov, noise = model.weight_belief()
    assert cov is model._w_cov and noise == pytest.approx(np.exp(model.log_noise))


def test_fitted_hyperparameters_are_a_stationary_point_of_the_objective(tiny):
    """At the fitted (interior) optimum, per kind: sum of d(-log evidence)/d(log s_g) = 0,
    and per gene: that derivative = -deviation / spread^2."""
    genes, _, y = additive_task(tiny, 120, noise=0.5, seed=15)
    model = GPNAS(tiny, "face", relevance_spread=0.7).fit(genes, y)
    phi = model.design(genes)
    yc = (y - y.mean()) / y.std()
    seen = model._identified(phi)
    sub = phi[:, seen]
    stats = (sub.T @ sub, sub.T @ yc, float(yc @ yc), len(yc), model._groups[seen])
    _, grad = _neg_log_evidence(np.append(model.log_relevance, model.log_noise), *stats)
    kinds = np.array([".".join(n.split(".")[:-1]) or n for n in model.group_names])
    assert abs(grad[-1]) < 1e-3  # the noise
    for kind in set(kinds):
        g, lr = grad[:-1][kinds == kind], model.log_relevance[kinds == kind]
        assert abs(g.sum()) < 1e-3
        # g_i + log_s_i / spread^2 is the kind's level / spread^2 for every gene of the kind
        level = g + lr / 0.7**2
        assert np.ptp(level) < 1e-3


def test_hierarchical_objective_value_and_gradient(tiny):
    from ufo_nas.accuracy.gpnas import _hierarchical_objective

    model, stats = evidence_stats(tiny, seed=16)
    kind_of_group = np.array([0] + [1] * 6 + [2] * 6 + [3] * 6)  # depth, heads, mlp, path
    rng = np.random.default_rng(1)
    params = np.concatenate([rng.normal(-1.5, 0.3, 4), rng.normal(0, 0.5, 19), [-1.0]])
    spread = 0.6
    value, grad = _hierarchical_objective(params, stats, kind_of_group, spread)
    theta = np.concatenate([params[:4][kind_of_group] + params[4:-1], params[-1:]])
    deviation = params[4:-1]
    assert value == pytest.approx(
        _neg_log_evidence(theta, *stats)[0] + 0.5 * deviation @ deviation / spread**2
    )
    f = lambda p: _hierarchical_objective(p, stats, kind_of_group, spread)[0]  # noqa: E731
    numeric = approx_fprime(params, f, 1e-6)
    assert np.abs(numeric - grad).max() < 1e-4


def test_target_checks_name_the_problem(tiny):
    genes, _, y = additive_task(tiny, 20, noise=0.3, seed=11)
    targets = list(y)
    targets[3] = None  # missing: read as NaN
    with pytest.raises(
        PredictorError,
        match=r"^target 3 of task 'face' is nan \(NaN or missing\); drop that arch or give it "
        r"a finite score$",
    ):
        GPNAS(tiny, "face").fit(genes, targets)
    with pytest.raises(PredictorError, match=r"^need at least 2 evaluated archs to fit, got 1$"):
        GPNAS(tiny, "face").fit(genes[:1], y[:1])
    two = GPNAS(tiny, "face").fit(genes[:2], y[:2])  # two are enough
    assert two.predict(genes[:2], return_std=False).shape == (2,)


def test_save_overwrites_only_when_asked_and_names_a_failure(tiny, tmp_path):
    genes, _, y = additive_task(tiny, 20, noise=0.3, seed=11)
    with pytest.raises(PredictorError, match="^only a fitted predictor can be saved$"):
        GPNAS(tiny, "face").save(tmp_path / "p.json")
    model = GPNAS(tiny, "face").fit(genes, y)
    path = model.save(tmp_path / "p.json")
    GPNAS(tiny, "face").fit(genes[:10], y[:10]).save(path, overwrite=True)
    assert len(json.loads(path.read_text())["training_set"]) == 10
    (tmp_path / "file").write_text("")
    with pytest.raises(PredictorError, match=r"^cannot write .*file/p.json: File exists$"):
        model.save(tmp_path / "file" / "p.json")


def test_load_names_the_file_without_a_space(tiny, base, tmp_path):
    genes, _, y = additive_task(tiny, 20, noise=0.3, seed=11)
    path = GPNAS(tiny, "face").fit(genes, y).save(tmp_path / "p.json")
    with pytest.raises(PredictorError, match=f"^{path} was fitted on space 'ufo_vit_tiny'"):
        GPNAS.load(path, base)
    (tmp_path / "other.json").write_text('{"format": "something"}')
    with pytest.raises(PredictorError, match=f"^{tmp_path / 'other.json'} is not a ufo-nas"):
        GPNAS.load(tmp_path / "other.json")


def test_a_round_trip_with_proxies_keeps_them(tiny, two_proxies, tmp_path):
    path = two_proxies.save(tmp_path / "main.json")
    data = json.loads(path.read_text())
    first = data["proxies"][0]
    assert sorted(first) == ["intercept", "name", "weights"] and first["name"] == "unrelated"
    loaded = GPNAS.load(path, tiny)
    assert [p.name for p in loaded.proxies] == ["unrelated", "related"]
    for p, q in zip(loaded.proxies, two_proxies.proxies):
        assert p.intercept == q.intercept and np.array_equal(p.weights, q.weights)
    assert np.allclose(loaded._proxy_scale, two_proxies._proxy_scale)
    probe = tiny.sample_genes(np.random.default_rng(17), 20)
    for got, want in zip(loaded.predict(probe), two_proxies.predict(probe)):
        assert np.allclose(got, want)
    assert GPNAS.from_dict(data, tiny).relevance() == pytest.approx(two_proxies.relevance())


def _set(*keys, value=None, drop=False):
    def change(data):
        for key in keys[:-1]:
            data = data[key]
        if drop:
            del data[keys[-1]]
        else:
            data[keys[-1]] = value

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_set("hyperparameters", drop=True), "hyperparameters is missing"),
        (_set("hyperparameters", value=[]), "hyperparameters is []; expected a mapping"),
        (
            _set("hyperparameters", "log_relevance", drop=True),
            "hyperparameters.log_relevance is missing",
        ),
        (
            _set("hyperparameters", "log_relevance", value=3),
            "hyperparameters.log_relevance is 3; expected a mapping",
        ),
        (
            _set("hyperparameters", "relevance_spread", value=0),
            "hyperparameters.relevance_spread is 0; expected a number in [0.001, 1000]",
        ),
        (_set("task", value=3), "task is 3; expected a string"),
        (_set("target", drop=True), "target is missing"),
        (_set("proxies", value={}), "proxies is {}; expected a list of mappings"),
        (_set("proxies", drop=True), "proxies is missing"),
        (_set("proxies", value=[1]), "proxies is [1]; expected a list of mappings"),
        (_set("proxies", 1, "name", value=None), "proxies.1.name is None; expected a string"),
        (
            _set("proxies", 0, "intercept", value="x"),
            "proxies.0.intercept is 'x'; expected a number in [-1e+06, 1e+06]",
        ),
        (
            _set("proxies", 0, "intercept", value=True),
            "proxies.0.intercept is True; expected a number in [-1e+06, 1e+06]",
        ),
        (
            _set("proxies", 1, "weights", value=1),
            "proxies.1.weights is 1; expected a list of finite numbers",
        ),
        (_set("proxies", 1, "weights", drop=True), "proxies.1.weights is missing"),
        (
            _set("proxies", 1, "weights", 5, value=None),
            "proxies.1.weights.5 is None; expected a number in [-1e+06, 1e+06]",
        ),
        (
            _set("proxies", 0, "weights", value=[0.5] * 3),
            "proxies.0.weights has 3 entries, expected WIDTH (one per feature of the space)",
        ),
        (
            _set("hyperparameters", "log_relevance", "heads.0", drop=True),
            "hyper-parameter groups do not match the space",
        ),
        (_set("training_set", value="x"), "training_set is 'x'; expected a list of mappings"),
        (_set("training_set", 2, "arch", value=7), "training_set.2.arch is 7; expected a string"),
        (
            _set("training_set", 2, "arch", value="d9"),
            "training_set.2.arch: ",
        ),
        (_set("training_set", 2, "y", drop=True), "training_set.2.y is missing"),
        (
            _set("training_set", value=[]),
            "need at least 2 evaluated archs to fit, got 0",
        ),
        # a long value is cut to 60 characters
        (
            _set("task", value=list(range(30))),
            "task is " + repr(list(range(30)))[:60] + "...; expected a string",
        ),
        (_set("task", value=[["x" * 54]]), "task is [['" + "x" * 54 + "']]; expected a string"),
        (
            _set("task", value=[["x" * 55]]),
            "task is [['" + "x" * 55 + "']...; expected a string",
        ),
    ],
)
def test_every_bad_key_of_a_predictor_file_is_named(tiny, two_proxies, change, message):
    data = json.loads(json.dumps(two_proxies.to_dict()))
    change(data)
    with pytest.raises(PredictorError) as info:
        GPNAS.from_dict(data, tiny, "main.json")
    text = str(info.value)
    message = message.replace("WIDTH", str(two_proxies.features.width))
    if message.startswith("need at least"):  # from the target check, which names no file
        assert text == message
    else:
        assert text.startswith("main.json: " + message)
    assert "\n" not in text


def test_a_predictor_file_at_the_range_limits_loads(tiny, two_proxies):
    data = json.loads(json.dumps(two_proxies.to_dict()))
    data["hyperparameters"]["relevance_spread"] = 1e-3
    data["hyperparameters"]["log_noise"] = 6.0
    data["proxies"][0]["intercept"] = -1e6
    assert GPNAS.from_dict(data, tiny).log_noise == 6.0
    assert GPNAS.from_dict(data, tiny, "x").proxies[0].intercept == -1e6
    with pytest.raises(PredictorError, match=r"^<dict>: task is 3; expected a string$"):
        GPNAS.from_dict({**data, "task": 3}, tiny)
    with pytest.raises(PredictorError, match="^main.json is not a ufo-nas GP-NAS predictor"):
        GPNAS.from_dict({**data, "format": "other"}, tiny, "main.json")
