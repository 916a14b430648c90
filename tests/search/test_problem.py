import numpy as np
import pytest

from ufo_nas.accuracy import GPNAS, load_task_predictor
from ufo_nas.errors import UfoError
from ufo_nas.latency.predictor import latency_predictor
from ufo_nas.search.engine import SearchSettings, nsga2
from ufo_nas.search.problem import Budgets, InfeasibleBudgetError, UfoProblem


@pytest.fixture(scope="module")
def face_jetson(base):
    return UfoProblem(base, ["face"], "jetson")


def test_searches_the_trunk_and_the_tasks_own_paths_only(base, face_jetson):
    every = UfoProblem(
        base, ["face"], "jetson", predictors=face_jetson.accuracy, search_unseen=True
    )
    names = [v.name for v in every.gene_space.variables]
    assert len(names) == 1 + 3 * base.layers
    assert not any(n.startswith("path.person") for n in names)
    ordered = {v.name: v.ordered for v in every.gene_space.variables}
    assert ordered["heads.3"] and ordered["depth"] and not ordered["path.face.3"]
    x = every.gene_space.sample(np.random.default_rng(0), 5)
    for arch in every.archs(x):
        assert arch in base
        assert set(arch.task_paths("person")) == {base.spec.task("person").paths[0][0]}


def test_choices_the_predictor_never_saw_are_held(base, face_jetson):
    """The shipped predictors saw only shared FFN paths: the search holds them there."""
    names = [v.name for v in face_jetson.gene_space.variables]
    assert len(names) == 1 + 2 * base.layers and not any(n.startswith("path.") for n in names)
    held = {u.gene: u for u in face_jetson.held}
    assert set(held) == {f"path.face.{i}" for i in range(base.layers)}
    assert held["path.face.3"].observed == ("shared",)
    assert held["path.face.3"].unseen == ("task", "mix") and held["path.face.3"].tasks == ("face",)
    x = face_jetson.gene_space.sample(np.random.default_rng(6), 50)
    for arch in face_jetson.archs(x):
        assert set(arch.task_paths("face")) == {"shared"}


def test_held_choices_are_per_task_and_unseen_ones_carry_a_larger_std(base, face_jetson):
    both = UfoProblem(base, ["face", "person"], "jetson")
    assert {u.gene.rsplit(".", 1)[0] for u in both.held} == {"path.face", "path.person"}
    every = UfoProblem(base, ["face"], "jetson", predictors=both.accuracy, search_unseen=True)
    assert every.held == () and len(every.unseen) == base.layers
    x = every.gene_space.sample(np.random.default_rng(7), 200)
    paths = [k for k, v in enumerate(every.gene_space.variables) if v.name.startswith("path.")]
    held = x.copy()
    held[:, paths] = 0  # the same trunks on shared paths only
    unseen = every.figures(x).score_std["face"]
    assert (unseen > every.figures(held).score_std["face"]).all()


def test_a_restricted_choice_maps_back_to_the_space(tiny):
    """A gene seen at two of three choices is searched over those two only."""
    rng = np.random.default_rng(8)
    genes = tiny.sample_genes(rng, 60)
    genes[:, 1:4] = np.minimum(genes[:, 1:4], 1)  # heads of layers 0-2: never 4
    y = genes[:, 1:].sum(axis=1) + rng.normal(0, 0.1, 60)
    models = {t: GPNAS(tiny, t).fit(genes, y) for t in tiny.tasks}
    problem = UfoProblem(tiny, ["face"], "cpu-onnxruntime", predictors=models)
    variables = {v.name: v for v in problem.gene_space.variables}
    assert variables["heads.0"].choices == (2, 3) and variables["heads.3"].choices == (2, 3, 4)
    assert [u.gene for u in problem.held] == ["heads.0", "heads.1", "heads.2"]
    x = problem.gene_space.sample(rng, 100)
    assert np.array_equal(problem.gene_space.repair(x), x)
    for arch in problem.archs(x):
        assert arch in tiny and max(arch.num_heads[:3]) <= 3


def test_objectives_are_the_shipped_predictors(base, face_jetson):
    x = face_jetson.gene_space.sample(np.random.default_rng(1), 20)
    full = face_jetson.full_genes(x)
    score, latency = (o.evaluate(x) for o in face_jetson.objectives)
    np.testing.assert_allclose(
        score, load_task_predictor(base, "face").predict(full, return_std=False)
    )
    np.testing.assert_allclose(latency, latency_predictor(base, "jetson").latency_ms(full, "face"))
    assert [o.maximise for o in face_jetson.objectives] == [True, False]


def test_risk_takes_std_multiples_off_the_score(base, face_jetson):
    cautious = UfoProblem(base, ["face"], "jetson", risk=2.0, predictors=face_jetson.accuracy)
    x = face_jetson.gene_space.sample(np.random.default_rng(2), 10)
    mean, std = face_jetson.accuracy["face"].predict(face_jetson.full_genes(x))
    np.testing.assert_allclose(cautious.score("face", x), mean - 2 * std)


def test_fastest_is_no_slower_than_any_sampled_subnet(face_jetson):
    arch, ms = face_jetson.fastest()
    x = face_jetson.gene_space.sample(np.random.default_rng(3), 3000)
    assert ms <= face_jetson.latency_ms(x).min()
    assert ms == pytest.approx(face_jetson.latency.latency_ms([arch], "face")[0])


def test_an_impossible_budget_names_the_fastest_subnet(base, face_jetson):
    _, fastest_ms = face_jetson.fastest()
    problem = UfoProblem(base, ["face"], "jetson", budgets=Budgets(latency_ms=0.5 * fastest_ms))
    with pytest.raises(
        InfeasibleBudgetError, match=r"the fastest is d\d+-h.* ms \(roofline ESTIMATE"
    ):
        problem.check_budgets()
    small = UfoProblem(base, ["face"], "jetson", budgets=Budgets(params=1e6))
    with pytest.raises(InfeasibleBudgetError, match="the smallest is d10-"):
        small.check_budgets()


def test_budgets_hold_on_the_found_front(base, face_jetson):
    free = UfoProblem(base, ["face"], "cpu-onnxruntime", predictors=face_jetson.accuracy)
    limit = float(np.median(free.latency_ms(free.gene_space.sample(np.random.default_rng(4), 500))))
    problem = UfoProblem(
        base,
        ["face"],
        "cpu-onnxruntime",
        minimise=("latency", "params"),
        budgets=Budgets(latency_ms=limit, params=7e7),
        predictors=face_jetson.accuracy,
    )
    problem.check_budgets()
    run = nsga2(
        problem.gene_space,
        problem.objectives,
        problem.constraints,
        SearchSettings(population=16, generations=10),
    )
    figures = problem.figures(run.archive.genes[run.front])
    assert run.front.size > 0
    assert (figures.latency_ms <= limit).all() and (figures.params <= 7e7).all()


def test_multi_task_search_scores_every_task_on_one_trunk(base):
    problem = UfoProblem(base, ["face", "person"], "cpu-openvino")
    assert [o.name for o in problem.objectives] == ["score.face", "score.person", "latency_ms"]
    x = problem.gene_space.sample(np.random.default_rng(5), 4)
    both = problem.latency_ms(x)
    one = UfoProblem(base, ["face"], "cpu-openvino", predictors=problem.accuracy)
    assert (both >= one.latency_ms(one.gene_space.repair(x[:, : len(one.gene_space)]))).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tasks": []}, "non-empty"),
        ({"tasks": ["face", "face"]}, "distinct"),
        ({"tasks": ["faces"]}, "unknown task 'faces'"),
        ({"device": "tpu9"}, "unknown device 'tpu9'"),
        ({"minimise": ("flops",)}, "latency, params, macs"),
        ({"risk": -1.0}, "risk"),
    ],
)
def test_bad_problems_get_clear_errors(base, kwargs, message):
    args = {"tasks": ["face"], "device": "jetson", **kwargs}
    with pytest.raises(UfoError, match=message):
        UfoProblem(base, **args)


def test_budgets_must_be_positive():
    with pytest.raises(UfoError, match="latency budget must be positive"):
        Budgets(latency_ms=0)
