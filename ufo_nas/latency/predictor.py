"""Vectorised latency prediction from a table: sum of operators, then calibration."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ufo_nas.cost import CostModel, LayerStructure
from ufo_nas.hardware import load_profile
from ufo_nas.latency.table import LatencyTable, LatencyTableError, table_path
from ufo_nas.space import Arch, SearchSpace


class LatencyPredictor:
    """latency_ms(archs, tasks) of one space on one device; `measured` says whether the
    table was measured or is a roofline estimate."""

    def __init__(self, space: SearchSpace, table: LatencyTable):
        if table.space_fingerprint != space.spec.fingerprint():
            raise LatencyTableError(
                f"latency table of {table.device} is for space '{table.space}', not '{space.name}'"
            )
        self.space, self.table = space, table
        self.cost = CostModel(space)
        s = space.spec
        heads = sorted({h for layer in s.num_heads for h in layer})
        hidden = sorted({s.hidden_dim(r) for layer in s.mlp_ratios for r in layer})
        self._heads, self._hidden = np.array(heads), np.array(hidden)
        self._attn = np.array([table.op_ms(f"attn.h{h}") for h in heads])
        self._ffn = {
            arity: np.array([table.op_ms(f"ffn.m{m}.x{arity}") for m in hidden])
            for arity in (1, 2)
            if f"ffn.m{hidden[0]}.x{arity}" in table.operators
        }
        self._head = {
            t: table.op_ms(f"head.{t}") for t in s.task_names if f"head.{t}" in table.operators
        }
        self._stem = table.op_ms("stem")

    @property
    def measured(self) -> bool:
        return self.table.measured

    @property
    def source(self) -> str:
        """Where the numbers come from, in one line: says ESTIMATE when not measured."""
        table = self.table
        if not self.measured:
            return "ESTIMATE: roofline from published peaks; no measured table"
        m = table.metrics
        return (
            f"measured table ({table.provenance.get('backend')}, "
            f"{m.get('mean_abs_pct_error', float('nan')):.1f}% mean error on "
            f"{m.get('validation_subnets', 0)} subnets)"
        )

    def sum_ms(self, archs: Sequence[Arch] | np.ndarray, tasks: str | Sequence[str]) -> np.ndarray:
        """Uncalibrated sum of operator times of each subnet."""
        tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
        return self._sum(self.cost.structure(archs, tasks), tasks)

    def _sum(self, layers: LayerStructure, tasks: tuple[str, ...]) -> np.ndarray:
        attn = self._attn[np.searchsorted(self._heads, layers.heads)]
        hidden = np.searchsorted(self._hidden, layers.hidden)
        total = layers.streams_in * attn + layers.single * self._ffn[1][hidden]
        if layers.mixed.any():
            if 2 not in self._ffn:
                raise LatencyTableError(f"the {self.table.device} table has no mixed-FFN operators")
            total = total + layers.mixed * self._ffn[2][hidden]
        missing = [t for t in tasks if t not in self._head]
        if missing:
            raise LatencyTableError(f"the {self.table.device} table has no head for '{missing[0]}'")
        heads = sum(self._head[t] for t in tasks)
        return self._stem + heads + (total * layers.active).sum(axis=1)

    def latency_ms(
        self, archs: Sequence[Arch] | np.ndarray, tasks: str | Sequence[str]
    ) -> np.ndarray:
        """Calibrated end-to-end latency (ms) of each subnet."""
        tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
        layers = self.cost.structure(archs, tasks)
        cal = self.table.calibration
        blocks = layers.active.sum(axis=1)
        return cal["a"] * self._sum(layers, tasks) + cal["b"] + cal["c"] * blocks

    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """(measured, predicted) ms of the table's validation subnets (in-sample: the
        calibration is fitted on them); measured times on the table's reference scale."""
        rows = self.table.validation
        measured = np.array([self.table.scaled_ms(r.measured_ms, r.anchor_ms) for r in rows])
        predicted = np.array(
            [self.latency_ms([self.space.parse(r.arch)], r.tasks)[0] for r in rows]
        )
        return measured, predicted


_PREDICTORS: dict[tuple[str, str], LatencyPredictor] = {}  # by (space fingerprint, device)


def _table(space: SearchSpace, device: str) -> LatencyTable:
    from ufo_nas.latency.roofline import roofline_table

    path = table_path(device, space)
    if path.is_file():
        return LatencyTable.load(path, space)
    return roofline_table(space, load_profile(device))


def latency_predictor(space: SearchSpace, device: str) -> LatencyPredictor:
    """The device's measured table for the space, else a roofline estimate from its
    hardware profile (labelled `measured = False`). Tables are cached by the space's
    content; the predictor returned is over `space` itself."""
    key = (space.spec.fingerprint(), device)
    cached = _PREDICTORS.get(key)
    if cached is None or cached.space is not space:
        table = _table(space, device) if cached is None else cached.table
        cached = _PREDICTORS[key] = LatencyPredictor(space, table)
    return cached


def latency_ms(
    archs: Sequence[Arch] | np.ndarray, tasks: str | Sequence[str], device: str, space: SearchSpace
) -> np.ndarray:
    return latency_predictor(space, device).latency_ms(archs, tasks)
