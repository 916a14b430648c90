"""Figures: Pareto fronts across devices and tasks, search convergence, and a latency
table's predicted-vs-measured check. Every latency axis says ms, and every roofline estimate
is labelled as the lower bound it is. Uses matplotlib's object API (no global pyplot state);
`fronts_figure` and `convergence_figure` return the Figure, `plot_*` save it as PNG."""

from __future__ import annotations

import math
import os
import textwrap
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ufo_nas.fileio import write_atomic
from ufo_nas.latency.predictor import LatencyPredictor
from ufo_nas.latency.table import LatencyTableError
from ufo_nas.search.pareto import non_dominated
from ufo_nas.search.report import DeviceFront, SearchReport

ROOFLINE = "roofline lower bound"
ESTIMATE_NOTE = f"dashed = {ROOFLINE}: an ESTIMATE from device peaks, no measured table"
MEASURED_NOTE = "hollow: latency measured by --verify (thin line to its prediction)"
OFF_FRONT_NOTE = "crossed: falls off the front when measured"
LABEL_ALL = 40  # a line of up to this many points has every point labelled with its row
Series = tuple[int, str]  # (position of the run among the reports, device)


def _save(fig: Figure, path: str | os.PathLike, overwrite: bool) -> Path:
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120), overwrite)


def _objective_name(objective: str) -> str:
    """`score.face` -> `face score`, `latency_ms` -> `latency`."""
    if objective.startswith("score."):
        return f"{objective.removeprefix('score.')} score"
    return objective.removesuffix("_ms")


def _series_labels(reports: Sequence[SearchReport]) -> dict[Series, str]:
    """A legend label per (run, device): the device, and the tasks and cost objectives
    where the runs differ in them; runs that still read the same get their position."""
    task_sets = {tuple(r.tasks) for r in reports}
    costs = [[o for o in r.objectives if not o.startswith("score.")] for r in reports]
    labels = {}
    for i, report in enumerate(reports):
        for front in report.fronts:
            label = front.device
            if len(task_sets) > 1:
                label = f"{'+'.join(report.tasks)} on {label}"
            if len({tuple(c) for c in costs}) > 1:
                label += f", min {'+'.join(_objective_name(o) for o in costs[i])}"
            if not front.latency_measured:
                label += f" ({ROOFLINE})"
            labels[i, front.device] = label
    counts = Counter(labels.values())
    return {k: f"run {k[0] + 1}: {v}" if counts[v] > 1 else v for k, v in labels.items()}


def _series_colours(reports: Sequence[SearchReport]) -> dict[Series, str]:
    """One colour of the property cycle per (run, device), the same in every panel."""
    series = [(i, f.device) for i, r in enumerate(reports) for f in r.fronts]
    return {s: f"C{k % 10}" for k, s in enumerate(series)}


def _score_meaning(target: str) -> str:
    """The report's score target, shortened for an axis label."""
    text = target.replace(" (higher is better)", "").replace(
        "normal score of the rank", "z-score of rank"
    )
    return textwrap.fill(text, 60)


def _labelled(n: int) -> np.ndarray:
    """Which of a line's `n` points get their row label: all up to LABEL_ALL, else every
    k-th plus both ends."""
    if n <= LABEL_ALL:
        return np.arange(n)
    return np.union1d(np.arange(0, n, math.ceil(n / LABEL_ALL)), [n - 1])


def _measured(ax: Axes, front: DeviceFront, y: np.ndarray, colour: str) -> None:
    """A verified front's measured latencies: hollow markers at (measured, score), each
    joined to its predicted point by a thin line; rows off the front once measured crossed."""
    x = np.array([row.latency_ms for row in front.rows])
    measured = np.array([row.measured_ms for row in front.rows], dtype=float)
    off = np.array([not row.on_front_measured for row in front.rows])
    ax.hlines(y, np.minimum(x, measured), np.maximum(x, measured), color=colour, lw=0.6, alpha=0.6)
    ax.scatter(measured, y, s=16, facecolors="none", edgecolors=colour, linewidths=0.9)
    if off.any():
        ax.scatter(measured[off], y[off], s=36, marker="x", color="black", linewidths=1.2)


def _front_panel(
    ax: Axes,
    task: str,
    reports: Sequence[SearchReport],
    labels: dict[Series, str],
    colours: dict[Series, str],
) -> tuple[list[str], set[int]]:
    """One task's panel: per run and device, the 2-D best trade-offs as a line with +-std
    bars and row labels (alternately left and right), the rest of the front as faint points,
    and a verified front's measured latencies (see `_measured`). Returns why points are
    faint (the objectives not drawn) and the label thinning steps."""
    faint: list[str] = []
    steps: set[int] = set()
    for i, report in enumerate(reports):
        if task not in report.tasks:
            continue
        for front in report.fronts:
            x = np.array([row.latency_ms for row in front.rows])
            y = np.array([row.score[task] for row in front.rows])
            std = np.array([row.score_std[task] for row in front.rows])
            best = non_dominated(np.stack([x, -y], axis=1))
            best = best[np.argsort(x[best])]
            colour = colours[i, front.device]
            ax.plot(
                x[best],
                y[best],
                marker="o",
                markersize=3.5,
                drawstyle="steps-post",
                linestyle="-" if front.latency_measured else "--",
                color=colour,
                label=labels[i, front.device],
            )
            ax.errorbar(
                x[best], y[best], yerr=std[best], fmt="none", ecolor=colour, alpha=0.3, lw=0.8
            )
            if front.verified:
                _measured(ax, front, y, colour)
            shown = _labelled(best.size)
            if shown.size < best.size:
                steps.add(math.ceil(best.size / LABEL_ALL))
            for k, row in enumerate(best[shown]):
                left = k % 2 == 0
                ax.annotate(
                    str(row),
                    (x[row], y[row]),
                    xytext=(-3, 2) if left else (4, -2),
                    textcoords="offset points",
                    ha="right" if left else "left",
                    va="bottom" if left else "top",
                    fontsize=6,
                    color=colour,
                )
            rest = np.setdiff1d(np.arange(x.size), best)
            if rest.size:  # Pareto-optimal only through the objectives not drawn here
                ax.scatter(x[rest], y[rest], s=6, color=colour, alpha=0.3)
                other = [
                    _objective_name(o)
                    for o in report.objectives
                    if o not in (f"score.{task}", "latency_ms")
                ]
                if report.risk:
                    other.append(f"mean - {report.risk:g} std")
                faint.append(", ".join(other))
    return faint, steps


def fronts_figure(reports: Sequence[SearchReport]) -> Figure:
    """One panel per task: predicted score (+-std) against latency, one front per device
    and run, each in one colour across panels. A front seen from one task (several tasks,
    or params/MACs objectives) shows its best trade-offs there as a line, the rest as faint
    points; line points are labelled with their row in pareto.csv. A front verified by
    `ufo search --verify` also shows each row's measured latency, and the rows it takes off
    the front."""
    tasks = list(dict.fromkeys(t for r in reports for t in r.tasks))
    labels, colours = _series_labels(reports), _series_colours(reports)
    fig = Figure(figsize=(6.4 * len(tasks), 5.6), layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    rows = [row for r in reports for f in r.fronts for row in f.rows]
    latencies = [row.latency_ms for row in rows] + [
        row.measured_ms for row in rows if row.measured_ms is not None
    ]
    log_x = max(latencies) / max(min(latencies), 1e-9) > 20
    any_estimate = any(not f.latency_measured for r in reports for f in r.fronts)
    faint: list[str] = []
    steps: set[int] = set()
    for ax, task in zip(axes, tasks):
        panel_faint, panel_steps = _front_panel(ax, task, reports, labels, colours)
        faint += panel_faint
        steps |= panel_steps
        ax.set_xscale("log" if log_x else "linear")
        ax.set_xlabel(
            "latency (ms, batch 1)"
            + (", log scale" if log_x else "")
            + (f"; dashed: {ROOFLINE}" if any_estimate else "")
        )
        target = next(r.score_targets.get(task, "") for r in reports if task in r.tasks)
        label = f"predicted {task} score, higher is better (bars: +-1 std)"
        ax.set_ylabel(f"{label}\n{_score_meaning(target)}" if target else label, fontsize=8)
        ax.set_title(task)
        ax.grid(alpha=0.3)
    series = {}  # legend text -> line, each (run, device) once
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            series.setdefault(text, handle)
    handles, texts = list(series.values()), list(series)
    if faint:
        handles.append(Line2D([], [], ls="none", marker="o", ms=3, color="grey", alpha=0.4))
        reasons = " / ".join(dict.fromkeys(faint))
        texts.append(f"faint: on the front via {reasons}, dominated in this 2-D view")
    if any(row.measured_ms is not None for row in rows):
        handles.append(Line2D([], [], ls="none", marker="o", ms=5, mfc="none", color="grey"))
        texts.append(MEASURED_NOTE)
    if any(row.on_front_measured is False for row in rows):
        handles.append(Line2D([], [], ls="none", marker="x", ms=6, mew=1.2, color="black"))
        texts.append(OFF_FRONT_NOTE)
    note = "12 = row in pareto.csv (ufo-export --row)"
    if steps:
        step = "-".join(str(s) for s in sorted(steps))
        note += f"; lines of > {LABEL_ALL} points: 1 label in {step}, plus both ends"
    handles.append(Line2D([], [], ls="none", marker="$12$", ms=8, color="black"))
    texts.append(note)
    fig.legend(
        handles,
        texts,
        loc="outside lower center",
        ncols=min(2, len(tasks)),
        fontsize=8,
        title=ESTIMATE_NOTE if any_estimate else None,
        title_fontsize=8,
    )
    spaces = ", ".join(dict.fromkeys(r.space for r in reports))
    fig.suptitle(f"ufo-search Pareto fronts, space {spaces}")
    return fig


def plot_fronts(
    reports: Sequence[SearchReport], path: str | os.PathLike, overwrite: bool = False
) -> Path:
    """`fronts_figure` saved as a PNG at `path`."""
    return _save(fronts_figure(reports), path, overwrite)


def convergence_figure(reports: Sequence[SearchReport]) -> Figure:
    """Hypervolume of the feasible front after each generation relative to the run's best
    (its final front), per run and device; one panel per number of objectives."""
    labels, colours = _series_labels(reports), _series_colours(reports)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, report in enumerate(reports):
        groups[len(report.objectives)].append(i)
    counts = sorted(groups)
    fig = Figure(figsize=(6.4 * len(counts), 4.8), layout="constrained")
    axes = fig.subplots(1, len(counts), squeeze=False)[0]
    for ax, count in zip(axes, counts):
        for i in groups[count]:
            for front in reports[i].fronts:
                hv = np.array(front.hypervolume)
                ax.plot(
                    np.arange(1, hv.size + 1),
                    hv / hv.max() if hv.max() > 0 else hv,
                    color=colours[i, front.device],
                    linestyle="-" if front.latency_measured else "--",
                    label=labels[i, front.device],
                )
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("generation")
        ax.set_ylabel("hypervolume relative to the run's best (final front = 1)")
        objectives = dict.fromkeys(
            ", ".join(_objective_name(o) for o in reports[i].objectives) for i in groups[count]
        )
        ax.set_title(f"{count} objectives: " + " | ".join(objectives), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("ufo-search convergence")
    return fig


def plot_convergence(
    reports: Sequence[SearchReport], path: str | os.PathLike, overwrite: bool = False
) -> Path:
    """`convergence_figure` saved as a PNG at `path`."""
    return _save(convergence_figure(reports), path, overwrite)


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
