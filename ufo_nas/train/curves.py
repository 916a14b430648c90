"""The PNG of a training run: loss per task above, validation metrics below."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ufo_nas.fileio import write_atomic
from ufo_nas.train.checkpointing import STAGE_ORDER
from ufo_nas.train.monitor import MetricRow


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    return np.convolve(np.pad(values, (window - 1, 0), mode="edge"), kernel, mode="valid")


def curves_figure(rows: list[MetricRow], stage_steps: dict[str, int]) -> Figure:
    """One column per task: training loss of each subnet role (moving average) against the
    global step, and validation metrics of the largest and smallest subnets; a dashed line
    where the chip stage starts."""
    offset, total = {}, 0
    for stage in STAGE_ORDER:
        offset[stage], total = total, total + stage_steps.get(stage, 0)
    tasks = sorted({r.task for r in rows if r.task != "all"})  # "all": the LR
    fig = Figure(figsize=(4.2 * max(1, len(tasks)), 6.4), layout="constrained")
    axes = fig.subplots(2, max(1, len(tasks)), squeeze=False)
    series: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        series[r.kind, r.task, r.subnet, r.metric].append((offset[r.stage] + r.step, r.value))
    for col, task in enumerate(tasks):
        top, bottom = axes[0, col], axes[1, col]
        for (kind, t, subnet, metric), points in sorted(series.items()):
            if t != task:
                continue
            steps, values = np.array(points).T
            if kind == "train" and metric == "loss":
                window = max(1, len(values) // 40)
                top.plot(steps, _smooth(values, window), label=subnet, lw=1.2)
            elif kind == "val":
                bottom.plot(steps, values, marker="o", ms=3, label=f"{subnet} {metric}")
        top.set_title(task)
        top.set_ylabel("training loss (moving average)")
        bottom.set_ylabel("validation metric")
        bottom.set_xlabel("step (task stage, then chip stage)")
        for ax in (top, bottom):
            if stage_steps.get("chip") and stage_steps.get("task"):
                ax.axvline(offset["chip"], color="grey", ls="--", lw=0.8)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
    return fig


def write_curves(path: Path, rows: list[MetricRow], stage_steps: dict[str, int]) -> Path:
    fig = curves_figure(rows, stage_steps)
    return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), True)
