"""Figures: Pareto fronts across devices and tasks, search convergence, and a latency
table's predicted-vs-measured check. Every latency axis says ms, and every estimate is
labelled as one. Uses matplotlib's object API (no global pyplot state)."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ufo_nas.fileio import write_atomic
from ufo_nas.latency.predictor import LatencyPredictor
from ufo_nas.latency.table import LatencyTableError
from ufo_nas.search.pareto import non_dominated
from ufo_nas.search.report import DeviceFront, SearchReport

ESTIMATE_NOTE = "dashed = roofline ESTIMATE (no measured table)"


def _save(fig: Figure, path: str | os.PathLike, overwrite: bool) -> Path:
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120), overwrite)


def _series_label(report: SearchReport, front: DeviceFront, many_task_sets: bool) -> str:
    label = front.device + ("" if front.latency_measured else " (estimate)")
    return f"{'+'.join(report.tasks)} on {label}" if many_task_sets else label


def plot_fronts(
    reports: Sequence[SearchReport], path: str | os.PathLike, overwrite: bool = False
) -> Path:
    """One panel per task: predicted score against latency, one front per device (and
    per searched task set, when several results are overlaid). A multi-task front seen
    from one task shows that task's best trade-offs as a line, the rest as faint points."""
    tasks = list(dict.fromkeys(t for r in reports for t in r.tasks))
    many_task_sets = len({tuple(r.tasks) for r in reports}) > 1
    fig = Figure(figsize=(6.4 * len(tasks), 4.8), layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    latencies = [row.latency_ms for r in reports for f in r.fronts for row in f.rows]
    log_x = max(latencies) / max(min(latencies), 1e-9) > 20
    any_estimate = any(not f.latency_measured for r in reports for f in r.fronts)
    for ax, task in zip(axes, tasks):
        for report in reports:
            if task not in report.tasks:
                continue
            for front in report.fronts:
                x = np.array([row.latency_ms for row in front.rows])
                y = np.array([row.score[task] for row in front.rows])
                best = non_dominated(np.stack([x, -y], axis=1))
                best = best[np.argsort(x[best])]
                (line,) = ax.plot(
                    x[best],
                    y[best],
                    marker="o",
                    markersize=3.5,
                    drawstyle="steps-post",
                    linestyle="-" if front.latency_measured else "--",
                    label=_series_label(report, front, many_task_sets),
                )
                if best.size < x.size:  # a multi-task front seen from one task
                    ax.scatter(x, y, s=6, color=line.get_color(), alpha=0.3)
        ax.set_xscale("log" if log_x else "linear")
        ax.set_xlabel("latency (ms, batch 1)" + (", log scale" if log_x else ""))
        ax.set_ylabel(f"predicted {task} score (higher is better)")
        target = next((r.score_targets.get(task) for r in reports if task in r.tasks), "")
        note = textwrap.fill(f"score: {target}", 70) if target else ""
        ax.set_title(f"{task}: Pareto fronts\n{note}".strip(), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title=ESTIMATE_NOTE if any_estimate else None, title_fontsize=7)
    spaces = ", ".join(dict.fromkeys(r.space for r in reports))
    fig.suptitle(f"ufo-search Pareto fronts, space {spaces}")
    return _save(fig, path, overwrite)


def plot_convergence(
    reports: Sequence[SearchReport], path: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Hypervolume of the feasible front after each generation, per device."""
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.subplots()
    many_task_sets = len({tuple(r.tasks) for r in reports}) > 1
    for report in reports:
        for front in report.fronts:
            gens = np.arange(1, len(front.hypervolume) + 1)
            ax.plot(
                gens,
                front.hypervolume,
                label=_series_label(report, front, many_task_sets),
                linestyle="-" if front.latency_measured else "--",
            )
    ax.set_xlabel("generation")
    ax.set_ylabel("hypervolume (objectives scaled to the final front)")
    objectives = ", ".join(dict.fromkeys(o for r in reports for o in r.objectives))
    ax.set_title(f"search convergence\nobjectives: {objectives}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path, overwrite)


def plot_latency_validation(
    predictor: LatencyPredictor, path: str | os.PathLike, overwrite: bool = False
) -> Path:
    """A measured table's validation subnets: predicted against measured latency."""
    table, space = predictor.table, predictor.space
    if not table.validation:
        raise LatencyTableError(
            f"the {table.device} table of {table.space} has no measured validation subnets "
            f"({'measured' if table.measured else 'a roofline estimate'}); run ufo-profile"
        )
    measured, predicted = predictor.validation()
    error = np.abs(predicted - measured) / measured
    fig = Figure(figsize=(5.6, 5.2), layout="constrained")
    ax = fig.subplots()
    lo, hi = 0.9 * min(measured.min(), predicted.min()), 1.1 * max(measured.max(), predicted.max())
    line = np.array([lo, hi])
    ax.plot(line, line, color="black", linewidth=1, label="predicted = measured")
    ax.fill_between(line, 0.9 * line, 1.1 * line, color="grey", alpha=0.2, label="+-10%")
    ax.scatter(measured, predicted, s=14, label=f"{len(measured)} validation subnets")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(
        f"{table.device}, {space.name}: latency table check (in-sample: the calibration\n"
        f"is fitted on these) mean error {100 * error.mean():.2f}%, "
        f"{100 * (error <= 0.05).mean():.0f}% within 5%",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path, overwrite)
