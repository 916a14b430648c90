"""Multi-objective search: a generic NSGA-II engine over categorical gene spaces (pymoo),
the UFO space as one problem of it, and the Pareto report it produces."""

from ufo_nas.search.engine import (
    Archive,
    Constraint,
    Objective,
    SearchRun,
    SearchSettings,
    coordinate_minimum,
    nsga2,
    random_search,
)
from ufo_nas.search.genes import GeneSpace, Variable
from ufo_nas.search.pareto import Normalisation, non_dominated
from ufo_nas.search.problem import Budgets, InfeasibleBudgetError, UfoProblem
from ufo_nas.search.report import DeviceFront, ParetoRow, SearchReport
from ufo_nas.search.run import prepare, search_devices

__all__ = [
    "Archive",
    "Budgets",
    "Constraint",
    "DeviceFront",
    "GeneSpace",
    "InfeasibleBudgetError",
    "Normalisation",
    "Objective",
    "ParetoRow",
    "SearchReport",
    "SearchRun",
    "SearchSettings",
    "UfoProblem",
    "Variable",
    "coordinate_minimum",
    "non_dominated",
    "nsga2",
    "prepare",
    "random_search",
    "search_devices",
]
