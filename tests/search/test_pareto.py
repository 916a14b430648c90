import numpy as np
import pytest

from ufo_nas.search.pareto import Normalisation, non_dominated


def test_non_dominated_keeps_first_of_equal_points():
    F = np.array([[1, 2], [1, 2], [2, 1], [3, 3], [0.5, 5]])
    assert non_dominated(F).tolist() == [0, 2, 4]
    assert non_dominated(np.zeros((0, 2))).size == 0


def test_hypervolume_of_known_sets():
    norm = Normalisation(np.array([0.0, 0.0]), np.array([1.0, 1.0]))  # reference (1.1, 1.1)
    assert norm.hypervolume(np.array([[0.0, 0.0]])) == pytest.approx(1.21)
    assert norm.hypervolume(np.array([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(0.21)
    assert norm.hypervolume(np.array([[2.0, 2.0]])) == 0.0  # beyond the reference
    # adding a dominated point changes nothing
    F = np.array([[0.2, 0.6], [0.5, 0.3]])
    assert norm.hypervolume(np.vstack([F, [0.6, 0.7]])) == pytest.approx(norm.hypervolume(F))


def test_normalisation_of_a_front():
    F = np.array([[10.0, -3.0], [20.0, -1.0]])
    norm = Normalisation.of(F)
    assert norm(F).tolist() == [[0.0, 0.0], [1.0, 1.0]]
    assert norm.hypervolume(F) == pytest.approx(1.21)  # (0, 0) dominates (1, 1)


def test_a_single_point_is_its_own_front_and_indices_are_integers():
    assert non_dominated(np.array([[3.0, 4.0]])).tolist() == [0]
    empty = non_dominated(np.zeros((0, 3)))
    assert empty.dtype == np.int64 and empty.shape == (0,)


def test_an_objective_without_spread_is_shifted_not_divided():
    """A degenerate objective (ideal == nadir) keeps unit scale: no division by zero."""
    norm = Normalisation.of(np.array([[1.0, 3.0], [2.0, 3.0]]))
    got = norm(np.array([[1.5, 3.0], [1.0, 5.0]]))
    assert got.tolist() == [[0.5, 0.0], [0.0, 2.0]]
    assert norm.hypervolume(np.array([[1.0, 3.0]])) == pytest.approx(1.21)


def test_normalisation_of_small_integer_objectives_does_not_overflow():
    """int8 objectives: the span 100 - (-100) = 200 must not wrap around in int8."""
    F = np.array([[-100, 100], [100, -100], [0, 50]], dtype=np.int8)
    norm = Normalisation.of(F)
    assert norm.ideal.tolist() == [-100.0, -100.0] and norm.nadir.tolist() == [100.0, 100.0]
    assert norm(F).tolist() == [[0.0, 1.0], [1.0, 0.0], [0.5, 0.75]]
