"""`ufo search --verify`: re-measure every subnet of a search's fronts end to end on the
device, interleaved with its latency table's anchor, and mark the rows that measured latency
takes off the front.

Each front row's subnet (extracted for the searched tasks, as the table predicts it) is
compiled by the device's backend and timed with `Profiler.time_chunk`, in chunks that each
include the table's anchor subnet, as `ufo profile` times its validation subnets, and two of
those validation subnets (`LatencyPredictor.reference_subnets`). A measured time goes on the
table's scale as its rows do (`LatencyTable.scaled_ms`): `ms * reference_anchor_ms /
anchor_ms`, where `reference_anchor_ms` is the median anchor time of the table's reference
session and `anchor_ms` what the anchor and references timed in the same chunk imply for a
model of the row's predicted size (`Profiler.anchor_for`): the anchor's time for a model of
its size, a reference's for one of that reference's, interpolated between (the anchor's own
time outvoted where it ran more than 15% out of step with the references:
`implied_anchor_ms`). Once every chunk is timed, a chunk whose anchor (so outvoted or not)
ran more than 5% off the median over them (`ProfileSettings.recheck_shift`) is timed once
more, farthest first, and its rows keep the attempt whose anchor lies nearer that median;
the first attempt that comes no nearer ends the re-check (`Profiler.recheck`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ufo_nas.errors import UfoError
from ufo_nas.hardware import (
    HardwareProfile,
    host_difference,
    host_fingerprint,
    load_profile,
    shipped_profiles,
)
from ufo_nas.latency.measure import (
    OUT_OF_STEP,
    Profiler,
    ProfileSettings,
    check_same_setup,
    default_work_dir,
)
from ufo_nas.latency.predictor import (
    check_usable,
    latency_predictor,
    load_table_for_this_host,
    table_for_this_host,
    why_not_runnable,
)
from ufo_nas.latency.table import LatencyTable, LatencyTableError
from ufo_nas.search.pareto import non_dominated
from ufo_nas.search.report import DeviceFront, ParetoRow, SearchReport
from ufo_nas.space import SearchSpace

Progress = Callable[[int], None]  # subnets measured since the last call
LIST_ROWS = 10  # the summary names at most this many rows off the front


def _cannot_verify(space: SearchSpace, device: str) -> str | None:
    """Why `device` cannot be verified here (no measured table for the space, or its
    backend cannot run on this machine), else None."""
    if not latency_predictor(space, device).measured:
        return f"no measured latency table for {space.name} (its latency is a roofline estimate)"
    return why_not_runnable(load_profile(device))


def verifiable_devices(space: SearchSpace) -> list[str]:
    """The shipped devices with a measured table for `space` whose backend runs here (read
    without a predictor: the warnings of tables nobody asked for stay unsaid)."""
    out = []
    for name in shipped_profiles():
        try:
            path, table = load_table_for_this_host(space, name)
            if (
                table is not None
                and table.measured
                and why_not_runnable(load_profile(name)) is None
            ):
                check_usable(space, table, path)
                out.append(name)
        except UfoError:  # a table being profiled, a broken profile: not verifiable
            continue
    return out


def check_verifiable(space: SearchSpace, devices: Sequence[str]) -> dict[str, HardwareProfile]:
    """Each device's profile; a one-line UfoError for the first device whose table is not
    measured or whose backend cannot run here (naming those that can), or whose profile no
    longer matches the setup its table was measured with."""
    profiles = {}
    for device in devices:
        profile = load_profile(device)
        why = _cannot_verify(space, device)
        if why is not None:
            able = ", ".join(verifiable_devices(space)) or "none"
            raise UfoError(
                f"--verify cannot measure {device} on this machine: {why}; devices it can "
                f"verify for {space.name} here: {able}"
            )
        table = latency_predictor(space, device).table
        check_same_setup(table, profile, table_for_this_host(space, device))
        profiles[device] = profile
    return profiles


def minimisation(
    report: SearchReport, rows: Sequence[ParetoRow], latency_ms: Sequence[float]
) -> np.ndarray:
    """The search's objectives of `rows` in minimisation form (negated score, mean - risk x
    std as searched), with `latency_ms` as their latency."""
    columns = []
    for objective in report.objectives:
        if objective.startswith("score."):
            task = objective.removeprefix("score.")
            columns.append([-(r.score[task] - report.risk * r.score_std[task]) for r in rows])
        elif objective == "latency_ms":
            columns.append(list(latency_ms))
        else:  # params, macs
            columns.append([float(getattr(r, objective)) for r in rows])
    return np.array(columns, dtype=float).T


def on_measured_front(
    report: SearchReport, rows: Sequence[ParetoRow], measured_ms: Sequence[float]
) -> list[bool]:
    """Per row, whether it stays non-dominated among `rows` once `measured_ms` replaces the
    predicted latency (the other objectives as searched)."""
    kept = set(non_dominated(minimisation(report, rows, measured_ms)).tolist())
    return [i in kept for i in range(len(rows))]


def measure_front(
    profiler: Profiler,
    table: LatencyTable,
    space: SearchSpace,
    tasks: tuple[str, ...],
    rows: Sequence[ParetoRow],
    settings: ProfileSettings,
    progress: Progress | None = None,
) -> tuple[list[float], list[float | None], list[dict[str, Any]]]:
    """(each row's measured ms on the table's scale, each chunk's steal percent, each chunk
    timed again: its index, its first anchor ms and which attempt it kept): the rows timed
    in chunks of `settings.chunk`, each with the anchor (each chunk's anchor ms lands in
    `profiler.anchor_ms`); then each chunk whose anchor ms lies more than
    `settings.recheck_shift` off the run's median is timed once more, and its rows keep the
    attempt whose anchor lies nearer it, until one comes no nearer (`Profiler.recheck`)."""
    chunks = [rows[start : start + settings.chunk] for start in range(0, len(rows), settings.chunk)]
    measured: list[float] = []
    steal: list[float | None] = []
    for k, chunk in enumerate(chunks):
        timings, _, stolen = profiler.time_chunk(_compiled(profiler, space, tasks, chunk), settings)
        measured += _on_table_scale(profiler, table, chunk, timings, k)
        steal.append(stolen)
        profiler.release()
        if progress:
            progress(len(chunk))

    def models_of(k: int) -> dict:
        return _compiled(profiler, space, tasks, chunks[k])

    again = []
    for k, timed, result in profiler.recheck(settings, models_of):
        again.append(timed)
        if result is not None:
            timings, _, steal[k] = result
            start = k * settings.chunk
            measured[start : start + len(chunks[k])] = _on_table_scale(
                profiler, table, chunks[k], timings, k
            )
    return measured, steal, again


def _compiled(
    profiler: Profiler, space: SearchSpace, tasks: tuple[str, ...], chunk: Sequence[ParetoRow]
) -> dict:
    """The chunk's rows compiled for `tasks`, named `row-<k>` by their place in it."""
    return {
        f"row-{k}": profiler.compile_subnet(space.parse(row.arch), tasks)
        for k, row in enumerate(chunk)
    }


def _on_table_scale(
    profiler: Profiler, table: LatencyTable, chunk: Sequence[ParetoRow], timings: dict, k: int
) -> list[float]:
    """The chunk's rows' times on the table's scale, each by the timed models nearest its
    size in chunk `k`."""
    return [
        table.scaled_ms(
            timings[f"row-{i}"].ms,
            profiler.anchor_for(row.latency_ms / table.reference_anchor_ms, k),
        )
        for i, row in enumerate(chunk)
    ]


def verify_front(
    space: SearchSpace,
    report: SearchReport,
    front: DeviceFront,
    profile: HardwareProfile,
    work_dir: Path | None = None,
    settings: ProfileSettings = ProfileSettings(),
    progress: Progress | None = None,
) -> DeviceFront:
    """`front` with each row's measured latency, its error against the prediction and
    whether it stays on the front, and how it was measured (`verification`)."""
    predictor = latency_predictor(space, front.device)
    table = predictor.table
    if not table.measured:
        raise LatencyTableError(f"cannot verify {front.device}: its latency table is not measured")
    work_dir = work_dir or default_work_dir(profile.name, space)
    profiler = Profiler(space, profile, work_dir, predictor.reference_subnets())
    try:
        measured, steal, again = measure_front(
            profiler, table, space, tuple(report.tasks), front.rows, settings, progress
        )
    finally:
        profiler.close()
    on_front = on_measured_front(report, front.rows, measured)
    rows = [
        replace(
            row,
            measured_ms=ms,
            prediction_error_pct=100 * (row.latency_ms - ms) / ms,
            on_front_measured=kept,
        )
        for row, ms, kept in zip(front.rows, measured, on_front)
    ]
    verification: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backend": profile.backend,
        "versions": profiler.backend.versions(),
        "rounds": settings.rounds,
        "fill_seconds": settings.fill_seconds,
        "max_rounds": settings.max_rounds,
        "calls_per_round": settings.calls_per_round,
        "warm_calls": settings.warm_calls,
        "chunk": settings.chunk,
        "reference_anchor_ms": table.reference_anchor_ms,
        "anchor_ms": profiler.anchor_ms,
        "anchor_alone_ms": profiler.anchor_alone_ms,
        "references": [[ref.arch, list(ref.tasks), ref.anchors] for ref in profiler.references],
        "reference_ms": profiler.reference_ms,
        "steal_percent": steal,
        "timed_again": again,
        "host": host_fingerprint(),
        "scale": (
            "p25 ms x reference_anchor_ms / the anchor time its chunk implies for a model of "
            "its predicted size (the table's scale): interpolated on a log scale of size "
            "between anchor_ms (1 anchor) and what each reference's time implies (at its table "
            "time in anchors), held at the ends; anchor_ms: the anchor's own time "
            "(anchor_alone_ms), or where the median of it and what each reference implies for "
            f"it lies more than {OUT_OF_STEP:.0%} from it, that median"
        ),
    }
    recorded = table.provenance.get("host")
    differs = host_difference(recorded, verification["host"]) if recorded else None
    if differs:
        verification["other_host"] = f"the table was measured on another host: {differs}"
    return replace(front, rows=rows, verification=verification)


def verify_report(
    space: SearchSpace,
    report: SearchReport,
    profiles: dict[str, HardwareProfile],
    work_dir: Path | None = None,
    settings: ProfileSettings = ProfileSettings(),
    progress: Progress | None = None,
) -> SearchReport:
    """`report` with every front verified on its device (`profiles`: see check_verifiable);
    `work_dir` holds the compiled subnets (default: the device's profiling work dir)."""
    fronts = [
        verify_front(space, report, f, profiles[f.device], work_dir, settings, progress)
        for f in report.fronts
    ]
    return replace(report, fronts=fronts)


def summary(front: DeviceFront) -> str:
    """One line: how many rows were verified, their errors, which fell off the front, and
    how far the anchor drifted between the chunks (where several were timed)."""
    errors = np.abs([row.prediction_error_pct for row in front.rows])
    off = [i for i, row in enumerate(front.rows) if not row.on_front_measured]
    rows = ", ".join(map(str, off[:LIST_ROWS]))
    if len(off) > LIST_ROWS:
        rows += f", ... {len(off) - LIST_ROWS} more: on_front_measured in pareto.csv"
    fell = (
        f"{len(off)} fall{'s' if len(off) == 1 else ''} off the front when measured "
        f"(row{'s' if len(off) > 1 else ''} {rows})"
        if off
        else "all stay on the front when measured"
    )
    verification = front.verification or {}
    again = verification.get("timed_again") or []
    kept = sum(chunk["kept"] == "again" for chunk in again)
    retimed = (
        f"; {len(again)} chunk{'s' if len(again) > 1 else ''} whose anchor ran off the others' "
        f"timed again ({kept} kept the new times)"
        if again
        else ""
    )
    anchors = verification.get("anchor_ms") or []
    drift = (
        f"; the anchor ran {min(anchors):.3g}-{max(anchors):.3g} ms over the {len(anchors)} "
        "chunks (as it and the reference subnets put it; table: "
        f"{verification['reference_anchor_ms']:.3g} ms), "
        "the drift each chunk's times were scaled by"
        if len(anchors) > 1
        else ""
    )
    return (
        f"verified {len(front.rows)} front subnets on {front.device}: mean |error| "
        f"{errors.mean():.1f}%, max {errors.max():.1f}%, {fell}{drift}{retimed}"
    )
