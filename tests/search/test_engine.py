import numpy as np
import pytest

from tests.search.toy import zdt_objectives, zdt_space
from ufo_nas.errors import UfoError
from ufo_nas.search.engine import (
    Archive,
    Constraint,
    Objective,
    SearchSettings,
    coordinate_minimum,
    nsga2,
    random_search,
)
from ufo_nas.search.pareto import Normalisation


def _exact(space, objectives, constraints=()):
    archive = Archive(space, objectives, constraints)
    archive.evaluate(space.enumerate())
    return archive


def test_nsga2_finds_the_known_front_of_a_toy_space():
    space, objectives = zdt_space(), zdt_objectives()
    run = nsga2(space, objectives, settings=SearchSettings(population=16, generations=40, seed=0))
    found = {tuple(r) for r in run.archive.genes[run.front]}
    assert found == {(k, 0, 0, 0, 0) for k in range(5)}  # every front point, nothing else
    assert run.evaluations < space.size / 3


@pytest.mark.parametrize("ordered", [True, False])
def test_nsga2_beats_random_search_at_equal_evaluations(ordered):
    space, objectives = zdt_space(6, 5, ordered), zdt_objectives()
    exact = _exact(space, objectives)
    norm = Normalisation.of(exact.values[exact.front()])
    settings = SearchSettings(population=16, generations=25, seed=3)
    run = nsga2(space, objectives, settings=settings)
    baseline = random_search(space, objectives, evaluations=run.evaluations, seed=3)
    assert baseline.evaluations == run.evaluations
    hv = norm.hypervolume(run.archive.values[run.front])
    assert hv > norm.hypervolume(baseline.archive.values[baseline.front])
    assert hv > 0.95 * norm.hypervolume(exact.values[exact.front()])


def test_same_seed_same_result_and_other_seed_other_path():
    space, objectives = zdt_space(), zdt_objectives()
    settings = SearchSettings(population=12, generations=8, seed=5)
    a, b = nsga2(space, objectives, settings=settings), nsga2(space, objectives, settings=settings)
    assert np.array_equal(a.archive.genes, b.archive.genes)
    c = nsga2(space, objectives, settings=SearchSettings(population=12, generations=8, seed=6))
    assert not np.array_equal(a.archive.genes, c.archive.genes)


def test_every_evaluation_is_a_distinct_row():
    space, objectives = zdt_space(3, 3), zdt_objectives(3)
    calls: list[int] = []

    def counted(g: np.ndarray) -> np.ndarray:
        calls.append(len(g))
        return objectives[0].evaluate(g)

    objs = (Objective("f1", counted), objectives[1])
    run = nsga2(space, objs, settings=SearchSettings(population=8, generations=30, seed=0))
    rows = run.archive.genes
    assert len({r.tobytes() for r in rows}) == len(rows) == sum(calls) == run.evaluations
    assert run.evaluations <= space.size == 27


def test_constraints_bound_the_front_and_maximised_objectives_keep_their_sign():
    space = zdt_space(4, 5)
    total = Objective("total", lambda g: g.sum(axis=1).astype(float), maximise=True)
    spread = Objective("spread", lambda g: g.max(axis=1) - g.min(axis=1).astype(float))
    cap = Constraint("total", lambda g: g.sum(axis=1).astype(float), limit=9)
    run = nsga2(space, (total, spread), (cap,), SearchSettings(population=16, generations=30))
    values = run.archive.values[run.front]
    assert (values[:, 0] <= 9).all() and values[:, 0].max() == 9  # maximised up to the cap
    exact = _exact(space, (total, spread), (cap,))
    assert sorted(map(tuple, values)) == sorted(map(tuple, exact.values[exact.front()]))


def test_hypervolume_by_generation_rises_to_the_final_front():
    space, objectives = zdt_space(), zdt_objectives()
    run = nsga2(space, objectives, settings=SearchSettings(population=16, generations=20))
    norm = Normalisation.of(run.archive.values[run.front])
    history = run.hypervolume_by_generation(norm)
    assert len(history) == len(run.generation_sizes) == 20
    assert all(b >= a - 1e-12 for a, b in zip(history, history[1:]))
    assert history[-1] == pytest.approx(norm.hypervolume(run.archive.values[run.front]))


def test_max_evaluations_stops_early():
    space, objectives = zdt_space(), zdt_objectives()
    settings = SearchSettings(population=10, generations=100, max_evaluations=60)
    run = nsga2(space, objectives, settings=settings)
    assert 60 <= run.evaluations < 80 and len(run.generation_sizes) < 100


def test_random_search_stops_when_the_space_is_exhausted():
    space, objectives = zdt_space(2, 3), zdt_objectives(3)
    run = random_search(space, objectives, evaluations=100, seed=0)
    assert run.evaluations == 9


def test_coordinate_minimum_of_a_separable_function_is_global():
    space = zdt_space(5, 7)
    weights = np.array([3.0, -1.0, 2.0, -2.0, 0.5])
    f = lambda g: ((g - 3) ** 2 * np.abs(weights) + weights * g).sum(axis=1)  # noqa: E731
    row, value = coordinate_minimum(space, f)
    every = space.enumerate()
    assert value == pytest.approx(f(every).min())
    assert f(row[None, :])[0] == pytest.approx(value)


def test_bad_settings_are_refused():
    with pytest.raises(UfoError, match="population"):
        SearchSettings(population=2)
    with pytest.raises(UfoError, match="generations"):
        SearchSettings(generations=0)
    with pytest.raises(UfoError, match="objective"):
        Archive(zdt_space(), ())
