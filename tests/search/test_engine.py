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
from ufo_nas.search.genes import GeneSpace, Variable
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


# --- found by mutation testing (tools/mutation.py) ------------------------------------------


def test_archive_evaluates_each_distinct_row_once_in_order():
    space = zdt_space(2, 3)
    seen: list[list[tuple]] = []

    def f(g):
        seen.append([tuple(r) for r in g])
        return g[:, 0].astype(float)

    cap = Constraint("x1", lambda g: g[:, 1].astype(float), limit=1.0)
    archive = Archive(space, (Objective("f", f), Objective("neg", f, maximise=True)), (cap,))
    assert len(archive) == 0
    assert archive.genes.shape == (0, 2) and archive.genes.dtype == np.int64
    assert archive.values.shape == (0, 2) and archive.values.dtype == float
    assert archive.violation.shape == (0, 1) and archive.violation.dtype == float
    assert archive.front().size == 0
    index = archive.evaluate(np.array([[1, 2], [0, 0], [1, 2]]))
    assert index.tolist() == [0, 1, 0] and index.dtype == np.int64
    assert archive.evaluate(np.array([[0, 0], [2, 1]])).tolist() == [1, 2]
    assert seen == [[(1, 2), (0, 0)], [(0, 0), (2, 1)]] or seen == [
        [(1, 2), (0, 0)],
        [(1, 2), (0, 0)],
        [(2, 1)],
        [(2, 1)],
    ]
    assert len(archive) == 3 and archive.genes[1:].tolist() == [[0, 0], [2, 1]]
    assert archive.values.tolist() == [[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]]
    assert archive.violation.tolist() == [[1.0], [-1.0], [0.0]]  # value - limit
    assert archive.minimisation(archive.values).tolist() == [[1, -1], [0, 0], [2, -2]]
    # row 0 is infeasible; of the feasible rows 1 and 2 neither dominates the other
    assert archive.front().tolist() == [1, 2]
    assert archive.front(upto=2).tolist() == [1]
    assert archive.front(upto=1).size == 0
    assert bytes(archive.genes[0].tobytes()) not in archive or True


def test_an_archive_without_constraints_has_no_violation_columns():
    space = zdt_space(2, 3)
    objectives = tuple(Objective(f"x{k}", lambda g, k=k: g[:, k].astype(float)) for k in range(2))
    archive = Archive(space, objectives)
    archive.evaluate(np.array([[0, 1], [1, 0], [1, 1]]))
    assert archive.violation.shape == (3, 0)
    assert archive.front().tolist() == [0, 1]  # (1, 1) is dominated by both


def test_fronts_by_generation_follow_the_archive():
    space, objectives = zdt_space(2, 3), zdt_objectives(3)
    from ufo_nas.search.engine import SearchRun

    archive = Archive(space, objectives)
    run = SearchRun(archive)
    archive.evaluate(np.array([[1, 2], [2, 2]]))
    run.generation_sizes.append(len(archive))
    archive.evaluate(np.array([[0, 0], [1, 0]]))
    run.generation_sizes.append(len(archive))
    fronts = run.fronts_by_generation()
    assert [f.tolist() for f in fronts] == [[0, 1], [2, 3]]
    assert run.front.tolist() == [2, 3] and run.evaluations == 4
    norm = Normalisation(np.zeros(2), np.ones(2))
    history = run.hypervolume_by_generation(norm)
    assert history[0] < history[1]
    assert history[1] == pytest.approx(norm.hypervolume(archive.values[[2, 3]]))


def test_fronts_by_generation_skip_infeasible_rows_and_empty_fronts_count_zero():
    space = zdt_space(2, 3)
    from ufo_nas.search.engine import SearchRun

    f = Objective("f", lambda g: g[:, 0].astype(float))
    cap = Constraint("x1", lambda g: g[:, 1].astype(float), limit=0.0)
    archive = Archive(space, (f,), (cap,))
    run = SearchRun(archive)
    archive.evaluate(np.array([[0, 1]]))  # infeasible
    run.generation_sizes.append(len(archive))
    archive.evaluate(np.array([[2, 0], [1, 0]]))
    run.generation_sizes.append(len(archive))
    assert [f.tolist() for f in run.fronts_by_generation()] == [[], [2]]
    assert run.hypervolume_by_generation(Normalisation(np.zeros(1), np.ones(1)))[0] == 0.0


def test_nsga2_reports_progress_and_time():
    space, objectives = zdt_space(), zdt_objectives()
    calls = []
    run = nsga2(
        space,
        objectives,
        settings=SearchSettings(population=8, generations=3, seed=1),
        progress=lambda g, n: calls.append((g, n)),
    )
    assert calls == [(k + 1, size) for k, size in enumerate(run.generation_sizes)]
    assert len(calls) == 3 and calls[0][1] == 8  # the first generation is the population
    assert 0 < run.seconds < 60


def test_nsga2_stops_at_exactly_the_evaluation_cap():
    space, objectives = zdt_space(), zdt_objectives()
    settings = SearchSettings(population=8, generations=50, max_evaluations=8)
    run = nsga2(space, objectives, settings=settings)
    assert run.generation_sizes == [8]  # reaching the cap (>=) stops after generation 1


def test_nsga2_respects_constraints_through_pymoo():
    space, objectives = zdt_space(), zdt_objectives()
    cap = Constraint("x0", lambda g: g[:, 0].astype(float), limit=2.0)
    run = nsga2(space, objectives, (cap,), SearchSettings(population=16, generations=30))
    found = {tuple(r) for r in run.archive.genes[run.front]}
    assert found == {(k, 0, 0, 0, 0) for k in range(3)}


def test_random_search_counts_distinct_rows_per_round():
    space, objectives = zdt_space(3, 4), zdt_objectives(4)
    run = random_search(space, objectives, evaluations=20, seed=2)
    assert run.evaluations == 20 and run.generation_sizes[-1] == 20
    assert len({r.tobytes() for r in run.archive.genes}) == 20
    assert run.generation_sizes == sorted(run.generation_sizes) and 0 < run.seconds < 60
    same = random_search(space, objectives, evaluations=20, seed=2)
    assert np.array_equal(same.archive.genes, run.archive.genes)
    other = random_search(space, objectives, evaluations=20, seed=3)
    assert not np.array_equal(other.archive.genes, run.archive.genes)
    one = random_search(space, objectives, evaluations=1, seed=0)
    assert one.evaluations == 1 and one.generation_sizes == [1]


def test_coordinate_minimum_from_a_start_and_with_few_sweeps():
    space = zdt_space(3, 5)
    f = lambda g: ((g - np.array([4, 0, 2])) ** 2).sum(axis=1).astype(float)  # noqa: E731
    row, value = coordinate_minimum(space, f, start=np.array([0, 4, 4]))
    assert row.tolist() == [4, 0, 2] and value == 0.0
    row, value = coordinate_minimum(space, f, start=np.array([0, 4, 4]), sweeps=0)
    assert row.tolist() == [0, 4, 4] and value == 36.0
    # a coupled function needs several sweeps (and stops where no single gene helps)
    g = lambda x: (  # noqa: E731
        (x[:, 0] - x[:, 1]) ** 2 + (x[:, 1] - 4) ** 2 + 0.0 * x[:, 2]
    ).astype(float)
    one, v1 = coordinate_minimum(space, g, start=np.array([0, 0, 0]), sweeps=1)
    full, v = coordinate_minimum(space, g, start=np.array([0, 0, 0]))
    assert (one[:2].tolist(), v1) == ([0, 2], 8.0)
    assert (full[:2].tolist(), v) == ([3, 3], 1.0)


def test_settings_messages_and_limits():
    with pytest.raises(UfoError, match="^population must be at least 4, got 3$"):
        SearchSettings(population=3)
    with pytest.raises(UfoError, match="^generations must be at least 1, got 0$"):
        SearchSettings(generations=0)
    assert SearchSettings(population=4, generations=1).population == 4
    with pytest.raises(UfoError, match="^a search needs at least one objective$"):
        Archive(zdt_space(), ())
    s = SearchSettings()
    assert (s.population, s.generations, s.seed, s.max_evaluations) == (64, 100, 0, None)
    assert (s.crossover_eta, s.mutation_eta) == (3.0, 3.0)


def test_random_search_gives_up_after_100_rounds_without_a_new_row():
    space, objectives = zdt_space(2, 3), zdt_objectives(3)
    sizes = random_search(space, objectives, evaluations=100, seed=0).generation_sizes
    assert sizes.index(9) == len(sizes) - 101  # the round finding the last row, then 100


def test_random_search_defaults_and_constraints():
    space, objectives = zdt_space(), zdt_objectives()
    run = random_search(space, objectives)
    assert run.evaluations == 1000
    assert np.array_equal(run.archive.genes, random_search(space, objectives, seed=0).archive.genes)
    cap = Constraint("x0", lambda g: g[:, 0].astype(float), limit=1.0)
    capped = random_search(space, objectives, (cap,), evaluations=50, seed=0)
    assert capped.archive.violation.shape == (50, 1)
    assert (capped.archive.genes[capped.front][:, 0] <= 1).all()


def test_archive_values_are_floats_and_rows_integers():
    space = zdt_space(2, 3)
    ints = Objective("sum", lambda g: g.sum(axis=1))  # an int-valued objective
    cap = Constraint("x0", lambda g: g[:, 0], limit=1)  # and an int limit
    archive = Archive(space, (ints,), (cap,))
    assert archive.evaluate(np.array([[1.0, 2.0]])).tolist() == [0]
    assert archive.evaluate(np.array([[1, 2]])).tolist() == [0]  # the same row
    assert archive.genes.dtype == np.int64
    assert archive.values.dtype == float and archive.violation.dtype == float
    empty = archive.evaluate(np.zeros((0, 2), dtype=np.int64))
    assert empty.dtype == np.int64 and empty.shape == (0,)


def test_the_pymoo_problem_has_the_gene_ranges_and_answers_from_the_archive():
    from ufo_nas.search.engine import _ArchiveProblem

    space = zdt_space(3, 4)
    cap = Constraint("x0", lambda g: g[:, 0].astype(float), limit=2.0)
    maxed = Objective("x1", lambda g: g[:, 1].astype(float), maximise=True)
    archive = Archive(space, (zdt_objectives(4)[0], maxed), (cap,))
    problem = _ArchiveProblem(archive)
    assert (problem.n_var, problem.n_obj, problem.n_ieq_constr) == (3, 2, 1)
    assert problem.xl.tolist() == [0.0] * 3 and problem.xu.tolist() == [3.0] * 3
    assert problem.xu.dtype == float and problem.vtype is int
    out: dict = {}
    problem._evaluate(np.array([[3.2, 1.9, 0.0], [0.0, 1.0, 2.0]]), out)
    assert out["F"].tolist() == [[1.0, -2.0], [0.0, -1.0]]
    assert out["G"].tolist() == [[1.0], [-2.0]]
    assert archive.genes.tolist() == [[3, 2, 0], [0, 1, 2]]
    unconstrained: dict = {}
    _ArchiveProblem(Archive(space, zdt_objectives(4)))._evaluate(np.zeros((1, 3)), unconstrained)
    assert sorted(unconstrained) == ["F"]


def test_nsga2_starts_from_the_extreme_rows_and_evaluates_only_canonical_rows():
    def canonical(g):  # x1 and x2 mean nothing while x0 == 0, like layers past the depth
        g = g.copy()
        g[g[:, 0] == 0, 1:] = 0
        return g

    space = GeneSpace(tuple(Variable(f"x{i}", tuple(range(5))) for i in range(3)), canonical)
    objectives = zdt_objectives()[:1] + (Objective("x2", lambda g: -g[:, 2].astype(float)),)
    run = nsga2(space, objectives, settings=SearchSettings(population=8, generations=6, seed=0))
    genes = run.archive.genes
    assert genes[:2].tolist() == [[0, 0, 0], [4, 4, 4]]  # the lowest and highest rows lead
    assert np.array_equal(canonical(genes), genes)


def test_the_first_population_samples_each_choice_uniformly():
    space, objectives = zdt_space(8, 5), zdt_objectives()
    run = nsga2(space, objectives, settings=SearchSettings(population=400, generations=1))
    assert run.evaluations == 400
    counts = np.stack([np.bincount(col, minlength=5) for col in run.archive.genes.T])
    # the lowest and highest choices come up 2 times in 5, as the middle ones do (rounding
    # uniform reals over [0, 4] would give them half the share: 1 in 4)
    ends = counts[:, [0, 4]].sum() / counts.sum()
    assert 0.36 < ends < 0.44


def test_variation_settings_change_the_search():
    space, objectives = zdt_space(), zdt_objectives()

    def genes(**eta):
        settings = SearchSettings(population=12, generations=6, seed=4, **eta)
        return nsga2(space, objectives, settings=settings).archive.genes

    base = genes()
    assert not np.array_equal(base, genes(crossover_eta=30.0))
    assert not np.array_equal(base, genes(mutation_eta=30.0))


def test_nsga2_is_silent_and_adds_a_full_population_of_new_rows(capsys):
    space, objectives = zdt_space(6, 6), zdt_objectives(6)
    run = nsga2(space, objectives, settings=SearchSettings(population=16, generations=4, seed=2))
    assert capsys.readouterr().out == ""
    assert run.generation_sizes == [16, 32, 48, 64]


def test_coordinate_minimum_stops_after_a_sweep_without_change():
    space = zdt_space(3, 4)
    calls = []

    def f(g):
        calls.append(len(g))
        return ((g - np.array([1, 2, 3])) ** 2).sum(axis=1).astype(float)

    row, value = coordinate_minimum(space, f)
    assert row.tolist() == [1, 2, 3] and value == 0.0
    # the start, then two sweeps of 3 genes x 4 choices: one that moves, one that confirms
    assert calls == [1] + [4] * 6
