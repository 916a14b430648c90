import numpy as np
from pymoo.core.population import Population
from pymoo.core.problem import Problem

from ufo_nas.search.genes import GeneSpace, Variable
from ufo_nas.search.variation import GeneCrossover, GeneMutation, RowDuplicates

SPACE = GeneSpace(
    (
        Variable("heads", (2, 3, 4, 5, 6)),
        Variable("ratio", (2.0, 3.0, 4.0)),
        Variable("path", ("shared", "task", "mix"), ordered=False),
        Variable("fixed", ("only",), ordered=False),
    )
)
PROBLEM = Problem(n_var=4, n_obj=1, xl=0, xu=SPACE.cardinalities - 1)


def test_crossover_children_stay_in_range_and_mix_categorical_genes_from_parents():
    rng = np.random.default_rng(0)
    X = np.stack([SPACE.sample(rng, 200), SPACE.sample(rng, 200)]).astype(float)
    Q = GeneCrossover(SPACE)._do(PROBLEM, X, random_state=rng)
    children = SPACE.repair(Q.reshape(-1, 4))
    assert (children >= 0).all() and (children < SPACE.cardinalities).all()
    # an unordered gene is only ever swapped, never moved to an in-between choice
    parent_paths = {tuple(sorted(p)) for p in zip(X[0, :, 2], X[1, :, 2])}
    child_paths = {tuple(sorted(c)) for c in zip(Q[0, :, 2], Q[1, :, 2])}
    assert child_paths <= parent_paths


def test_ordered_crossover_stays_near_parents():
    rng = np.random.default_rng(1)
    X = np.zeros((2, 500, 4))
    X[1, :, 0] = 1  # parents one step apart on an ordered gene
    children = SPACE.repair(GeneCrossover(SPACE)._do(PROBLEM, X, random_state=rng).reshape(-1, 4))
    assert (children[:, 0] < SPACE.cardinalities[0]).all()
    assert (children[:, 0] <= 1).mean() > 0.8  # mostly a parent's choice, sometimes a step on


def test_mutation_changes_categorical_genes_to_another_choice():
    rng = np.random.default_rng(2)
    X = np.zeros((2000, 4))
    out = SPACE.repair(GeneMutation(SPACE, prob_var=0.5)._do(PROBLEM, X, random_state=rng))
    changed = out[:, 2] != 0
    assert 0.35 < changed.mean() < 0.65
    assert set(out[changed, 2]) == {1, 2}
    assert (out[:, 3] == 0).all()  # a one-choice gene never changes
    assert (out[:, 0] > 0).any() and (out < SPACE.cardinalities).all()


def test_duplicates_are_dropped_within_a_batch_and_against_others():
    pop = Population.new("X", np.array([[0, 1, 2, 0], [0, 1, 2, 0], [1, 1, 1, 0]], float))
    other = Population.new("X", np.array([[1, 1, 1, 0]], float))
    kept = RowDuplicates().do(pop, other)
    assert kept.get("X").tolist() == [[0, 1, 2, 0]]
