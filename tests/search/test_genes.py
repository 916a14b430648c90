import numpy as np
import pytest

from ufo_nas.errors import UfoError
from ufo_nas.search.genes import GeneSpace, Variable


def _layered() -> GeneSpace:
    """depth in {1, 2}; the second gene only matters at depth 2 (canonical: zeroed)."""

    def canonical(g: np.ndarray) -> np.ndarray:
        g = g.copy()
        g[g[:, 0] == 0, 2] = 0
        return g

    return GeneSpace(
        (
            Variable("depth", (1, 2)),
            Variable("width.0", (8, 16, 32)),
            Variable("width.1", (8, 16, 32)),
        ),
        canonical=canonical,
    )


def test_enumerate_lists_each_solution_once():
    space = _layered()
    rows = space.enumerate()
    assert len(rows) == 3 + 3 * 3  # depth 1: 3 widths; depth 2: 9
    assert len({r.tobytes() for r in rows}) == len(rows)


def test_repair_rounds_clips_and_canonicalises():
    space = _layered()
    got = space.repair(np.array([[0.4, 2.6, 1.9], [1.2, -3.0, 1.4]]))
    assert got.tolist() == [[0, 2, 0], [1, 0, 1]]


def test_sample_is_canonical_and_seeded():
    space = _layered()
    a = space.sample(np.random.default_rng(3), 50)
    assert np.array_equal(a, space.sample(np.random.default_rng(3), 50))
    assert np.array_equal(a, space.repair(a))
    assert (a >= 0).all() and (a < space.cardinalities).all()


def test_describe_names_choices():
    assert _layered().describe([1, 2, 0]) == {"depth": 2, "width.0": 32, "width.1": 8}


def test_bad_spaces_are_refused():
    with pytest.raises(UfoError, match="distinct names"):
        GeneSpace((Variable("a", (1, 2)), Variable("a", (1,))))
    with pytest.raises(UfoError, match="no choices"):
        Variable("a", ())
    with pytest.raises(UfoError, match="more than"):
        GeneSpace(tuple(Variable(f"x{i}", tuple(range(10))) for i in range(8))).enumerate()
