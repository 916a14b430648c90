"""The UFO space as a search problem: one trunk serving some tasks, on one device.

Genes searched: depth, heads and MLP ratio per layer (ordered), and the FFN path per
layer of each searched task (unordered); other tasks' paths do not shape the subnet and
are fixed. A choice that the predictors reading a gene never saw in their training set is
held out by default (a gene seen at one choice only is fixed there): they cannot tell such
choices apart, so the search would pick among them arbitrarily. Objectives: each task's
predicted score (GP-NAS mean, or mean - risk * std), maximised; then latency on the
device and optionally params or MACs, minimised. Constraints: a latency budget and a params budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ufo_nas.accuracy import GPNAS, load_task_predictor
from ufo_nas.cost import CostModel
from ufo_nas.errors import UfoError
from ufo_nas.latency.predictor import LatencyPredictor, latency_predictor
from ufo_nas.search.engine import Constraint, Objective, coordinate_minimum
from ufo_nas.search.genes import GeneSpace, Variable
from ufo_nas.space import Arch, SearchSpace

COST_OBJECTIVES = ("latency", "params", "macs")


class InfeasibleBudgetError(UfoError):
    """No subnet of the space meets a budget."""


@dataclass(frozen=True)
class Budgets:
    """Upper limits; None means no limit."""

    latency_ms: float | None = None
    params: float | None = None

    def __post_init__(self) -> None:
        for name, value in (("latency budget", self.latency_ms), ("params budget", self.params)):
            if value is not None and not value > 0:
                raise UfoError(f"the {name} must be positive, got {value}")


@dataclass(frozen=True)
class UnseenChoices:
    """Choices of one gene that the training set of its tasks' predictors never held."""

    gene: str
    tasks: tuple[str, ...]  # whose predictors read the gene
    observed: tuple  # the choices they were fitted on
    unseen: tuple

    def to_dict(self) -> dict[str, object]:
        """As plain JSON data (lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class SubnetFigures:
    """What a report says of each subnet: scores, latency, params, MACs."""

    archs: list[Arch]
    score_mean: dict[str, np.ndarray]
    score_std: dict[str, np.ndarray]
    latency_ms: np.ndarray
    params: np.ndarray
    macs: np.ndarray


class UfoProblem:
    """Objectives and constraints of searching `tasks` (one trunk) of a space on a device."""

    def __init__(
        self,
        space: SearchSpace,
        tasks: Sequence[str],
        device: str,
        minimise: Sequence[str] = ("latency",),
        budgets: Budgets = Budgets(),
        risk: float = 0.0,
        predictors: Mapping[str, GPNAS] | None = None,
        latency: LatencyPredictor | None = None,
        search_unseen: bool = False,
    ):
        self.space, self.device, self.budgets, self.risk = space, device, budgets, risk
        self.search_unseen = search_unseen
        self.tasks = space.spec.check_tasks(tasks)
        unknown = [m for m in minimise if m not in COST_OBJECTIVES]
        if unknown or not minimise or len(set(minimise)) != len(minimise):
            raise UfoError(
                f"objectives to minimise must be distinct names from {', '.join(COST_OBJECTIVES)}, "
                f"got {list(minimise)}"
            )
        if risk < 0:
            raise UfoError(f"risk (std multiples taken off the score) must be >= 0, got {risk}")
        self.minimise = tuple(minimise)
        predictors = predictors or {}
        self.accuracy = {t: predictors.get(t) or load_task_predictor(space, t) for t in self.tasks}
        self.latency = latency or latency_predictor(space, device)
        self.cost = CostModel(space)
        searched = [
            k
            for k, (name, _) in enumerate(space.variables)
            if not name.startswith("path.") or name.split(".")[1] in self.tasks
        ]
        self.unseen = _unseen_choices(space, self.accuracy, searched)
        allowed = {k: list(range(len(space.variables[k][1]))) for k in searched}
        if not search_unseen:
            names = [name for name, _ in space.variables]
            for u in self.unseen:  # a layer never seen: choice 0, past every allowed depth
                choices = space.variables[names.index(u.gene)][1]
                allowed[names.index(u.gene)] = [choices.index(c) for c in u.observed] or [0]
        self._fixed = {k: c[0] for k, c in allowed.items() if len(c) == 1}
        self.columns = np.asarray([k for k in searched if k not in self._fixed], dtype=np.int64)
        indices = [allowed[k] for k in self.columns]
        width = max((len(c) for c in indices), default=1)
        self._choice_index = np.array([c + [c[0]] * (width - len(c)) for c in indices], np.int64)
        self.gene_space = GeneSpace(
            tuple(
                Variable(name, tuple(choices[i] for i in c), ordered=not name.startswith("path."))
                for c, (name, choices) in zip(indices, (space.variables[k] for k in self.columns))
            ),
            canonical=self._canonical,
        )

    @property
    def held(self) -> tuple[UnseenChoices, ...]:
        """The unseen choices this search leaves out (none with `search_unseen`)."""
        return () if self.search_unseen else self.unseen

    # --- genes ------------------------------------------------------------------------------
    def full_genes(self, x: np.ndarray) -> np.ndarray:
        """Searched gene rows (n, v) -> the space's canonical gene rows; held genes at their
        observed choice, other tasks' paths at choice 0."""
        x = np.asarray(x, dtype=np.int64).reshape(-1, len(self.columns))
        full = np.zeros((x.shape[0], self.space.num_genes), dtype=np.int64)
        full[:, self.columns] = self._choice_index[np.arange(len(self.columns)), x]
        for k, choice in self._fixed.items():
            full[:, k] = choice
        return self.space.canonical_genes(full)

    def _canonical(self, x: np.ndarray) -> np.ndarray:
        """Searched rows with the genes of layers past the depth zeroed."""
        active = self.space.active_genes(self.full_genes(x))[:, self.columns]
        return np.where(active, x, 0)

    def archs(self, x: np.ndarray) -> list[Arch]:
        return self.space.decode_batch(self.full_genes(x))

    # --- objectives and constraints -----------------------------------------------------------
    def score(self, task: str, x: np.ndarray) -> np.ndarray:
        """Predicted score of `task` (higher is better): mean - risk * std."""
        model = self.accuracy[task]
        if self.risk == 0:
            return model.predict(self.full_genes(x), return_std=False)
        mean, std = model.predict(self.full_genes(x))
        return mean - self.risk * std

    def latency_ms(self, x: np.ndarray) -> np.ndarray:
        return self.latency.latency_ms(self.full_genes(x), self.tasks)

    def params(self, x: np.ndarray) -> np.ndarray:
        return self.cost.params(self.full_genes(x), self.tasks).astype(float)

    def macs(self, x: np.ndarray) -> np.ndarray:
        return self.cost.macs(self.full_genes(x), self.tasks).astype(float)

    @property
    def objectives(self) -> tuple[Objective, ...]:
        scores = tuple(
            Objective(f"score.{t}", lambda x, t=t: self.score(t, x), maximise=True)
            for t in self.tasks
        )
        costs = {
            "latency": Objective("latency_ms", self.latency_ms, unit="ms"),
            "params": Objective("params", self.params),
            "macs": Objective("macs", self.macs),
        }
        return scores + tuple(costs[m] for m in self.minimise)

    @property
    def constraints(self) -> tuple[Constraint, ...]:
        out = []
        if self.budgets.latency_ms is not None:
            out.append(Constraint("latency_ms", self.latency_ms, self.budgets.latency_ms))
        if self.budgets.params is not None:
            out.append(Constraint("params", self.params, self.budgets.params))
        return tuple(out)

    # --- budgets ----------------------------------------------------------------------------
    def fastest(self) -> tuple[Arch, float]:
        """The subnet with the lowest predicted latency (exact line search per gene)."""
        x, ms = coordinate_minimum(self.gene_space, self.latency_ms)
        return self.archs(x[None, :])[0], ms

    def smallest(self) -> tuple[Arch, float]:
        x, n = coordinate_minimum(self.gene_space, self.params)
        return self.archs(x[None, :])[0], n

    def check_budgets(self) -> None:
        """Raise InfeasibleBudgetError, naming the fastest (smallest) subnet, if no subnet
        meets a budget on its own."""
        where = f"for {','.join(self.tasks)} on {self.device}"
        if self.budgets.latency_ms is not None:
            arch, ms = self.fastest()
            if ms > self.budgets.latency_ms:
                kind = "" if self.latency.measured else " (roofline ESTIMATE)"
                raise InfeasibleBudgetError(
                    f"no subnet of {self.space.name} runs within {self.budgets.latency_ms:g} ms "
                    f"{where}: the fastest is {arch} at {ms:.3f} ms{kind}"
                )
        if self.budgets.params is not None:
            arch, n = self.smallest()
            if n > self.budgets.params:
                raise InfeasibleBudgetError(
                    f"no subnet of {self.space.name} has at most {self.budgets.params:,.0f} "
                    f"params {where}: the smallest is {arch} with {n:,.0f}"
                )

    # --- reporting --------------------------------------------------------------------------
    def figures(self, x: np.ndarray) -> SubnetFigures:
        full = self.full_genes(x)
        means, stds = {}, {}
        for task, model in self.accuracy.items():
            means[task], stds[task] = model.predict(full)
        return SubnetFigures(
            archs=self.space.decode_batch(full),
            score_mean=means,
            score_std=stds,
            latency_ms=self.latency.latency_ms(full, self.tasks),
            params=self.cost.params(full, self.tasks),
            macs=self.cost.macs(full, self.tasks),
        )


def _observed(
    space: SearchSpace, predictors: Mapping[str, GPNAS], genes: Sequence[int]
) -> dict[int, set[int]]:
    """Per gene, the choice indices that every predictor reading it saw in its training set
    (where the gene's layer was present)."""
    seen: dict[int, set[int]] = {}
    for task, model in predictors.items():
        rows = space.encode_batch(model.archs)
        active = space.active_genes(rows)
        for k in genes:
            name = space.variables[k][0]
            if not name.startswith("path.") or name.split(".")[1] == task:
                values = set(rows[active[:, k], k].tolist())
                seen[k] = values if k not in seen else seen[k] & values
    return seen


def _unseen_choices(
    space: SearchSpace, predictors: Mapping[str, GPNAS], genes: Sequence[int]
) -> tuple[UnseenChoices, ...]:
    """The genes with choices their predictors never saw, in gene order. A layer gene never
    seen at all is unseen whole; that is only consistent if no observed depth reaches it."""
    seen = _observed(space, predictors, genes)
    depths = [space.spec.depths[i] for i in seen[0]]
    out = []
    for k in genes:
        name, choices = space.variables[k]
        if len(seen[k]) == len(choices):
            continue
        tasks = (name.split(".")[1],) if name.startswith("path.") else tuple(predictors)
        if not seen[k] and (name == "depth" or int(name.rsplit(".", 1)[1]) < max(depths)):
            raise UfoError(
                f"the predictors of {', '.join(tasks)} share no observed choice of gene "
                f"{name}; search with --search-unseen or refit them on common subnets"
            )
        out.append(
            UnseenChoices(
                name,
                tasks,
                tuple(c for i, c in enumerate(choices) if i in seen[k]),
                tuple(c for i, c in enumerate(choices) if i not in seen[k]),
            )
        )
    return tuple(out)
