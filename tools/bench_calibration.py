"""Calibration forms scored on held-out times already measured: which form, fitted on a
table's own validation subnets, best predicts the held-out subnets of a P1 run
(`tools/bench_latency.py`'s JSON)?

No timing: each shipped table's validation rows are refitted with every form, and the
held-out subnets' committed times (scaled by their chunk's anchor, median of repeats) are
predicted. An entry whose table changed since its P1 run is left out: the fit it then used
(one family of forms: in ms before 2026-12-04, relative until 2026-12-05, relative with a
parameter term since) must reproduce the predictions the run recorded. Each entry is scored
with the shipped table of its device (the reference one or one under `hosts/`) that was
measured on the host the entry was timed on and reproduces its predictions, whichever table
the run named.

Further sections: the shipped fit's error by what a subnet serves; forms that scale each kind
of operator apart (attention, FFN; the stem and heads folded into the constant), as nn-Meter
fits one predictor per kernel: are the operators' standalone times off by different factors
in their real context?; and, on the P1 runs measured in several processes, whether each
held-out time is best scaled by its own chunk's anchor (what profiling and P1 do) or by a
steadier estimate of the machine's speed: the better estimate is the one the processes
agree on; and each shipped table's prediction of its own anchor, the smallest subnet, which
the random validation subnets rarely reach, and a fit constrained to predict it exactly; and
the fronts `ufo search --verify` measured, old fit against the shipped one and that one.

    python tools/bench_calibration.py [RESULTS.json ...]
        (default: every tools/results/bench_latency-*.json)
"""

from __future__ import annotations

import csv
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from results_io import p1_runs_and_out, write_results

from ufo_nas import load_space
from ufo_nas.hardware import host_difference
from ufo_nas.latency.measure import anchor_subnet
from ufo_nas.latency.predictor import LatencyPredictor
from ufo_nas.latency.table import (
    ABSOLUTE_FORMS,
    CALIBRATION_FORMS,
    FORM_FAMILIES,
    FORM_TERMS,
    RELATIVE_FORMS,
    TERMS,
    LatencyTable,
    Regressors,
    calibrated_ms,
    fit_calibration,
    host_table_paths,
    table_path,
)

ROOT = Path(__file__).resolve().parents[1]
KEPT = ROOT / "tools/results/tables"  # tables replaced since, and tables built for a run
SHIPPED = "relative with parameters (shipped)"
NO_PARAMETERS = "relative, chosen (before 2026-12-05)"
WITH_ANCHOR = "relative with parameters, the anchor a row too"
THROUGH_ANCHOR = "relative with parameters, through the anchor"


CHOICES = {  # row label: the forms leave-one-out chooses among
    "ms, chosen (before 2026-12-04)": ABSOLUTE_FORMS,
    NO_PARAMETERS: RELATIVE_FORMS,
    SHIPPED: CALIBRATION_FORMS,
    **{form: (form,) for form in (*ABSOLUTE_FORMS, *CALIBRATION_FORMS)},
}


def _loo(
    x: Regressors, measured: np.ndarray, fit: Callable[[Regressors, np.ndarray], dict]
) -> float:
    """Mean relative error (%) of each validation subnet predicted by `fit` of the others."""
    errors = []
    for k in range(len(measured)):
        keep = np.arange(len(measured)) != k
        cal = fit(x.rows(keep), measured[keep])
        errors.append(abs(calibrated_ms(cal, x.rows(slice(k, k + 1)))[0] / measured[k] - 1))
    return 100 * float(np.mean(errors))


def measured_ms(rows: list[dict], reference: float) -> np.ndarray:
    """Each held-out subnet's measured time at the table's reference anchor: as its P1 run
    recorded it (the median over processes where it ran in several), else the median of its
    anchor-scaled timings."""

    def scaled(row: dict) -> float:
        if "measured_ms" in row:
            return row["measured_ms"]
        return float(np.median(np.array(row["ms"]) * reference / np.array(row["anchor_ms"])))

    return np.array([scaled(r) for r in rows])


# forms over the sum's parts (attention, FFN, stem + heads), blocks and a constant: the
# columns of each design, from `_design`
KIND_FORMS = {
    "a*sum+b+c*blocks relative": ("sum", "one", "blocks"),
    "a1*attn+a2*ffn+b+c*blocks relative": ("attn", "ffn", "one", "blocks"),
    "a1*attn+a2*ffn+a3*fixed+b+c*blocks relative": ("attn", "ffn", "fixed", "one", "blocks"),
}


def _design(parts: np.ndarray, blocks: np.ndarray, columns: tuple[str, ...]) -> np.ndarray:
    named = {
        "sum": parts.sum(axis=1),
        "attn": parts[:, 0],
        "ffn": parts[:, 1],
        "fixed": parts[:, 2],
        "one": np.ones(len(parts)),
        "blocks": blocks,
    }
    return np.stack([named[c] for c in columns], axis=1)


def _fit_relative(design: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Least squares in relative error: each row weighted by 1 / its measured time."""
    weights = 1 / measured
    coef, *_ = np.linalg.lstsq(design * weights[:, None], measured * weights, rcond=None)
    return coef


def _loo_relative(design: np.ndarray, measured: np.ndarray) -> float:
    """Leave-one-out mean relative error (%) of a design's relative fit."""
    errors = []
    for k in range(len(measured)):
        keep = np.arange(len(measured)) != k
        coef = _fit_relative(design[keep], measured[keep])
        errors.append(abs(design[k] @ coef / measured[k] - 1))
    return 100 * float(np.mean(errors))


def by_operator_kind(space, predictor: LatencyPredictor, entry: dict) -> list[dict]:
    """Each form of KIND_FORMS, and the one leave-one-out chooses among them, fitted on the
    shipped table's validation subnets and scored on the entry's held-out subnets."""
    table = predictor.table
    times = table.validation_times()
    val_archs = [space.parse(arch) for arch, _, _ in times]
    val_parts = np.concatenate(
        [predictor.sum_parts([a], t) for a, (_, t, _) in zip(val_archs, times)]
    )
    val_blocks = np.array([a.depth for a in val_archs], float)
    val_ms = np.array([ms for _, _, ms in times])
    rows = entry["per_subnet"]
    archs = [space.parse(r["arch"]) for r in rows]
    parts = np.concatenate([predictor.sum_parts([a], r["tasks"]) for a, r in zip(archs, rows)])
    blocks = np.array([a.depth for a in archs], float)
    measured = measured_ms(rows, table.reference_anchor_ms)
    out = []
    for form, columns in KIND_FORMS.items():
        design = _design(val_parts, val_blocks, columns)
        coef = _fit_relative(design, val_ms)
        error = np.abs(_design(parts, blocks, columns) @ coef / measured - 1)
        out.append(
            {
                "form": form,
                "loo": _loo_relative(design, val_ms),
                "mape": 100 * float(error.mean()),
                "within_5": float((error <= 0.05).mean()),
                "within_10": float((error <= 0.10).mean()),
            }
        )
    chosen = min(out, key=lambda r: r["loo"])
    return [*out, {**chosen, "form": f"chosen by leave-one-out: {chosen['form']}"}]


ANCHOR_ESTIMATES = {  # how a chunk's times are scaled: (anchors of chunks either side, power)
    "its chunk's anchor (shipped)": (0, 1.0),
    "median anchor of its chunk and the chunks either side": (1, 1.0),
    "median anchor of 5 chunks": (2, 1.0),
    "its chunk's anchor, power 0.75": (0, 0.75),
    "its chunk's anchor, power 0.5": (0, 0.5),
    "the process's median anchor": (None, 1.0),
}


def anchor_estimates(entry: dict) -> list[dict]:
    """Per way of scaling (ANCHOR_ESTIMATES), the process noise (each process's scaled
    times against their median over processes) and the debiased held-out error of the
    prediction the run recorded; on a P1 entry measured in several processes."""
    rows = entry["per_subnet"]
    processes = entry["processes"]["n"]
    ms = np.array([r["ms"] for r in rows])  # (subnets, processes x repeats)
    anchors = np.array([r["anchor_ms"] for r in rows])
    chunk = np.cumsum([0] + [a["anchor_ms"] != b["anchor_ms"] for a, b in zip(rows, rows[1:])])
    per_chunk = np.array([anchors[chunk == c][0] for c in range(chunk[-1] + 1)])
    predicted = np.array([r["predicted_ms"] for r in rows])
    out = []
    for name, (either_side, power) in ANCHOR_ESTIMATES.items():
        if either_side is None:
            estimate = np.broadcast_to(np.median(per_chunk, axis=0), per_chunk.shape)
        else:
            estimate = np.array(
                [
                    np.median(per_chunk[max(0, c - either_side) : c + either_side + 1], axis=0)
                    for c in range(len(per_chunk))
                ]
            )
        scale = (np.median(per_chunk) / estimate[chunk]) ** power
        by_process = np.median((ms * scale).reshape(len(ms), processes, -1), axis=2)
        truth = np.median(by_process, axis=1)
        signed = predicted / truth - 1
        out.append(
            {
                "estimate": name,
                "noise": 100 * float(np.abs(by_process / truth[:, None] - 1).mean()),
                "debiased": 100 * float(np.abs(signed - np.median(signed)).mean()),
                "within_5": float((np.abs(signed - np.median(signed)) <= 0.05).mean()),
            }
        )
    return out


_LOADED: dict[Path, LatencyTable] = {}  # the shipped tables, each read once


def _load(path: Path, space) -> LatencyTable:
    if path not in _LOADED:
        _LOADED[path] = LatencyTable.load(path, space)
    return _LOADED[path]


def shipped_table_of(space, entry: dict) -> tuple[LatencyPredictor, list[dict], str] | str:
    """(predictor, `score` rows, where: "" for the reference table, else its `hosts/<id>`
    folder) of the shipped table of the entry's device, measured on the host the entry was
    timed on, whose fit reproduces the predictions the entry recorded; else why none is
    (for a run that timed a shipped table)."""
    folder = table_path(entry["device"], space).parent
    for path in host_table_paths(entry["device"], space):
        table = _load(path, space)
        if "host" in entry and host_difference(table.provenance["host"], entry["host"]):
            continue
        predictor = LatencyPredictor(space, table)
        rows = score(space, predictor, entry)
        if not isinstance(rows, str):
            return predictor, rows, "" if path.parent == folder else str(path.parent.name)
    named = folder / str(entry.get("table"))
    if named.is_file() and "host" in entry:
        if host_difference(_load(named, space).provenance["host"], entry["host"]):
            return "timed on another host than its table"
    return "its table changed since this P1 run"


def table_label(entry: dict) -> str:
    """How a P1 entry's table is named in a results table: `shipped`, or its file's stem."""
    return "shipped" if entry.get("shipped") else Path(str(entry["table"])).stem


def scored_table_of(space, entry: dict) -> LatencyTable | None:
    """The table the entry scored, as it was then (measured on the entry's host, its fit
    reproduces the recorded predictions), else None: a shipped table replaced since is
    looked for among those kept under tools/results/tables (`<device>-<space>-*.yaml`)."""
    if entry.get("shipped"):
        found = shipped_table_of(space, entry)
        if not isinstance(found, str):
            return found[0].table
        paths = sorted(KEPT.glob(f"{entry['device']}-{space.name}-*.yaml"))
    else:
        paths = [ROOT / str(entry.get("table"))]
    rows = entry["per_subnet"]
    recorded = np.array([r["predicted_ms"] for r in rows])
    for path in (path for path in paths if path.is_file()):
        table = _load(path, space)
        if "host" in entry and host_difference(table.provenance["host"], entry["host"]):
            continue
        predictor = LatencyPredictor(space, table)
        parts = [predictor.regressors([space.parse(r["arch"])], r["tasks"]) for r in rows]
        x = Regressors.stack(parts)
        if np.allclose(calibrated_ms(table.calibration, x), recorded, rtol=1e-6):
            return table
    return None


def anchor_row(space, predictor: LatencyPredictor) -> tuple[Regressors, float]:
    """The anchor's regressors and its time on the table's reference scale (exact: every
    time is scaled by it)."""
    arch, tasks = anchor_subnet(space)
    return predictor.regressors([arch], tasks), predictor.table.reference_anchor_ms


def with_anchor(space, predictor: LatencyPredictor) -> tuple[Regressors, np.ndarray]:
    """The table's calibration data (regressors, measured) with one more row: the anchor."""
    x, measured = predictor.calibration_data()
    anchor, anchor_ms = anchor_row(space, predictor)
    return Regressors.stack([x, anchor]), np.append(measured, anchor_ms)


def through_anchor(
    x: Regressors, measured: np.ndarray, anchor: Regressors, anchor_ms: float
) -> dict:
    """The shipped form fitted on validation subnets (`x`, `measured`) on one condition: it
    predicts the anchor (`anchor_row`) exactly. Least squares on relative errors under that
    equality (its Lagrange system)."""
    (form,) = CALIBRATION_FORMS
    design = x.design(form) / measured[:, None]
    row = anchor.design(form)[0]
    terms = len(row)
    system = np.zeros((terms + 1, terms + 1))
    system[:terms, :terms] = design.T @ design
    system[:terms, terms] = system[terms, :terms] = row
    rhs = np.append(design.T @ np.ones(len(measured)), anchor_ms)
    coef = dict(zip(FORM_TERMS[form.removesuffix(" relative")], np.linalg.solve(system, rhs)))
    return {"model": form, **{key: float(coef.get(term, 0.0)) for term, key in TERMS.items()}}


def _fit_of(forms: tuple[str, ...]) -> Callable[[Regressors, np.ndarray], dict]:
    """`fit_calibration` choosing among `forms`."""
    return lambda x, measured: fit_calibration(x, measured, forms)


def score(space, predictor: LatencyPredictor, entry: dict) -> list[dict] | str:
    """A row per form for one P1 entry, or why it is left out."""
    table = predictor.table
    validation = predictor.calibration_data()
    rows = entry["per_subnet"]
    x = Regressors.stack([predictor.regressors([space.parse(r["arch"])], r["tasks"]) for r in rows])
    measured = measured_ms(rows, table.reference_anchor_ms)
    recorded = np.array([r["predicted_ms"] for r in rows])
    if not any(
        np.allclose(calibrated_ms(fit_calibration(*validation, forms), x), recorded, rtol=1e-6)
        for forms in FORM_FAMILIES
    ):
        return "its table changed since this P1 run"
    fits = [(label, forms, validation) for label, forms in CHOICES.items()]
    out = []
    anchor = anchor_row(space, predictor)
    for label, fit, fitted_on in [
        *((label, _fit_of(forms), data) for label, forms, data in fits),
        (WITH_ANCHOR, _fit_of(CALIBRATION_FORMS), with_anchor(space, predictor)),
        (THROUGH_ANCHOR, lambda x, m: through_anchor(x, m, *anchor), validation),
    ]:
        cal = fit(*fitted_on)
        if cal["model"] == "sum":
            continue
        signed = calibrated_ms(cal, x) / measured - 1
        error = np.abs(signed)
        out.append(
            {
                "form": label,
                "fitted": cal["model"],
                "loo": _loo(*fitted_on, fit),
                "mape": 100 * float(error.mean()),
                "within_5": float((error <= 0.05).mean()),
                "within_10": float((error <= 0.10).mean()),
                "bias": 100 * float(np.median(signed)),
                "debiased": 100 * float(np.abs(signed - np.median(signed)).mean()),
            }
        )
    return out


def by_kind(space, predictor: LatencyPredictor, entry: dict) -> list[dict]:
    """The shipped fit's held-out error split by what a subnet serves: one task, or every
    task on one trunk (a multi-task deployment)."""
    table = predictor.table
    rows = entry["per_subnet"]
    archs = [space.parse(r["arch"]) for r in rows]
    tasks = [tuple(r["tasks"]) for r in rows]
    predicted = np.array([predictor.latency_ms([a], t)[0] for a, t in zip(archs, tasks)])
    measured = measured_ms(rows, table.reference_anchor_ms)
    signed = predicted / measured - 1
    every = np.array([len(t) == len(space.tasks) for t in tasks])
    out = []
    for kind, mask in (("one task", ~every), ("every task", every)):
        if mask.any():
            out.append(
                {
                    "kind": kind,
                    "n": int(mask.sum()),
                    "mape": 100 * float(np.abs(signed[mask]).mean()),
                    "bias": 100 * float(np.median(signed[mask])),
                    "within_5": float((np.abs(signed[mask]) <= 0.05).mean()),
                }
            )
    return out


def own_anchor_rows() -> list[str]:
    """Per shipped CPU table: its reference anchor, and the anchor's prediction over it by
    the fit without the parameter term (before 2026-12-05), by the shipped fit, and by the
    shipped forms refitted with the anchor as one more validation row."""
    rows = []
    tables = sorted((ROOT / "latency_tables").glob("cpu-*/*.yaml"))
    for path in tables + sorted((ROOT / "latency_tables").glob("cpu-*/hosts/*/*.yaml")):
        space = load_space(path.stem)
        predictor = LatencyPredictor(space, _load(path, space))
        reference = predictor.table.reference_anchor_ms
        anchor, _ = anchor_row(space, predictor)
        before = fit_calibration(*predictor.calibration_data(), RELATIVE_FORMS)
        x, measured = with_anchor(space, predictor)
        ratios = [
            calibrated_ms(cal, anchor)[0] / reference
            for cal in (before, predictor.table.calibration, fit_calibration(x, measured))
        ]
        name = path.relative_to(ROOT / "latency_tables")
        rows.append(
            f"| {name} | {reference:.3f} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |"
        )
    return rows


def committed_fronts() -> list[tuple[str, str, str, tuple[str, ...], list[dict], dict | None]]:
    """(file name, space, device, tasks, rows with `arch` and `measured_ms`, verification or
    None) of each committed `ufo search --verify` front: `verify-<space>-<device>.csv`
    (single-task rows of the first AVX2 host, in its milliseconds; it records no
    verification) and the `pareto.json` results `verify-*.json` (each verified front, with its
    verification record: host, the table's reference anchor). A CSV beside a JSON of its
    name is that front's `pareto.csv`: read from the JSON."""
    folder = ROOT / "tools/results"
    fronts = []
    for path in sorted(folder.glob("verify-*.csv")):
        if path.with_suffix(".json").is_file():
            continue
        space, device = path.stem.removeprefix("verify-").split("-", 1)
        rows = list(csv.DictReader(path.open()))
        task = next(k.removeprefix("score_") for k in rows[0] if k.startswith("score_"))
        rows = [{"arch": r["arch"], "measured_ms": float(r["measured_ms"])} for r in rows]
        fronts.append((path.name, space, device, (task,), rows, None))
    for path in sorted(folder.glob("verify-*.json")):
        report = json.loads(path.read_text())
        for front in report["fronts"]:
            if "verification" in front:
                tasks = tuple(report["tasks"])
                fronts.append(
                    (
                        path.name,
                        report["space"],
                        front["device"],
                        tasks,
                        front["rows"],
                        front["verification"],
                    )
                )
    return fronts


def front_rows() -> list[str]:
    """Per committed `ufo search --verify` front: each fit's error on the front subnets,
    measured end to end on the host of the shipped table they are scored with, on its scale;
    the fits refitted on that table's rows. A front verified on another scale than the
    table's now (the table was re-measured since), or recording no host (a CSV of the first
    AVX2 host's milliseconds, whose reference tables have since been rebuilt elsewhere), is
    named, not scored."""
    rows = []
    for name, space_name, device, tasks, front, verification in committed_fronts():
        if verification is None:
            rows.append(
                f"| {name} | - | {len(front)} | not scored: records no host or scale (its "
                "times are milliseconds of the host that timed it) | - | - | - | - |"
            )
            continue
        space = load_space(space_name)
        host = verification["host"]
        table_file = next(
            (
                path
                for path in host_table_paths(device, space)
                if not host_difference(_load(path, space).provenance["host"], host)
            ),
            None,
        )
        if table_file is None:
            rows.append(
                f"| {name} | - | {len(front)} | not scored: no shipped {device} table "
                "describes the host that timed it | - | - | - | - |"
            )
            continue
        predictor = LatencyPredictor(space, _load(table_file, space))
        then, now = (
            verification.get("reference_anchor_ms"),
            predictor.table.reference_anchor_ms,
        )
        if then is not None and not np.isclose(then, now, rtol=1e-6):
            rows.append(
                f"| {name} | {table_file.relative_to(ROOT)} | {len(front)} | not scored: "
                f"verified on the scale of an earlier table (anchor {then:.3f} ms; now "
                f"{now:.3f} ms) | - | - | - | - |"
            )
            continue
        x = Regressors.stack([predictor.regressors([space.parse(r["arch"])], tasks) for r in front])
        measured = np.array([r["measured_ms"] for r in front])
        validation = predictor.calibration_data()
        for label, cal in (
            (NO_PARAMETERS, fit_calibration(*validation, RELATIVE_FORMS)),
            (SHIPPED, fit_calibration(*validation, CALIBRATION_FORMS)),
            (THROUGH_ANCHOR, through_anchor(*validation, *anchor_row(space, predictor))),
        ):
            signed = calibrated_ms(cal, x) / measured - 1
            error = np.abs(signed)
            rows.append(
                f"| {name} | {table_file.relative_to(ROOT)} | {len(front)} | {label} | "
                f"{100 * error.mean():.2f} | {100 * (error <= 0.05).mean():.0f}% | "
                f"{100 * (error <= 0.10).mean():.0f}% | {100 * np.median(signed):+.2f} |"
            )
    return rows


def main() -> int:
    files, out = p1_runs_and_out(__doc__.split("\n\n")[0], "bench_calibration.md")
    command = "python " + shlex.join(["tools/bench_calibration.py", *sys.argv[1:]])
    lines = [
        "# Calibration forms on held-out subnets",
        "",
        f"Command: `{command}`  ",
        "Each form is fitted on the shipped table's validation subnets (40) and scored on the "
        "held-out subnets of a committed P1 run (50, timed in a later process); the table is "
        "the device's reference one, or the one for the host in brackets (`hosts/<id>/`) "
        "where the run was timed on that host. `loo` is the "
        "leave-one-out error on the validation subnets, what chose the form before "
        "2026-12-05; `chosen` rows let it choose between the form without and with a per-block "
        "term. Since 2026-12-05 tables fit one form, with a term in the subnet's parameters "
        "(millions): the weights a whole subnet streams through the cache, while its "
        "operators were each timed with theirs cache-hot. Errors in %.",
        "",
        "| P1 run | device | form | fitted | loo | held-out mean | within 5% | within 10% | "
        "bias | debiased |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    left_out, kinds, operator_kinds, anchor_rows = [], [], [], []
    held_out: dict[str, list[dict]] = {}  # the shipped fit's rows and the anchor-row fit's
    for path in files:
        results = json.loads(path.read_text())
        space = load_space(path.stem.removeprefix("bench_latency-").split("-")[0])
        for entry in results:
            if "processes" in entry and entry.get("shipped"):
                anchor_rows += [
                    f"| {path.name} | {entry['device']} | {r['estimate']} | {r['noise']:.2f} | "
                    f"{r['debiased']:.2f} | {100 * r['within_5']:.0f}% |"
                    for r in anchor_estimates(entry)
                ]
            if "drift" in entry:  # the table's own validation subnets
                continue
            found = shipped_table_of(space, entry)
            if isinstance(found, str):
                if entry.get("shipped"):  # a copy no table shipped now reproduces: not news
                    left_out.append(f"- {path.name}, {entry['device']}: {found}")
                continue
            predictor, rows, where = found
            device = entry["device"] + (f" ({where})" if where else "")
            operator_kinds += [
                f"| {path.name} | {device} | {r['form']} | {r['loo']:.2f} | "
                f"{r['mape']:.2f} | {100 * r['within_5']:.0f}% | {100 * r['within_10']:.0f}% |"
                for r in by_operator_kind(space, predictor, entry)
            ]
            kinds += [
                f"| {path.name} | {device} | {k['kind']} | {k['n']} | "
                f"{k['mape']:.2f} | {k['bias']:+.2f} | {100 * k['within_5']:.0f}% |"
                for k in by_kind(space, predictor, entry)
            ]
            for r in rows:
                if r["form"] in (NO_PARAMETERS, SHIPPED, WITH_ANCHOR, THROUGH_ANCHOR):
                    held_out.setdefault(r["form"], []).append(r)
                lines.append(
                    f"| {path.name} | {device} | {r['form']} | {r['fitted']} | "
                    f"{r['loo']:.2f} | {r['mape']:.2f} | {100 * r['within_5']:.0f}% | "
                    f"{100 * r['within_10']:.0f}% | {r['bias']:+.2f} | {r['debiased']:.2f} |"
                )
    lines += [
        "",
        "## The shipped fit's held-out error by what a subnet serves",
        "",
        "Every 4th held-out subnet serves every task on one trunk; the rest serve one task. "
        "Bias is the median signed error (prediction minus measurement), in %.",
        "",
        "| P1 run | device | subnets serving | n | mean error | bias | within 5% |",
        "|---|---|---|---|---|---|---|",
        *kinds,
        "",
        "## Operator kinds scaled apart",
        "",
        "Relative least squares on the shipped table's validation subnets, each kind of "
        "operator's summed time its own column; `loo` as above. The last row per run is the "
        "form leave-one-out picks among the three.",
        "",
        "| P1 run | device | form | loo | held-out mean | within 5% | within 10% |",
        "|---|---|---|---|---|---|---|",
        *operator_kinds,
    ]
    lines += [
        "",
        "## Scaling each chunk's times: its own anchor or a steadier one",
        "",
        "P1 runs measured in several processes, each subnet's times scaled to a common "
        "speed by an estimate of the machine's speed while its chunk ran. Process noise: each "
        "process's scaled times against their median over processes (lower: a truer ground "
        "truth); debiased: the shipped prediction's error against that median, its median "
        "removed. Errors in %.",
        "",
        "| P1 run | device | speed estimate | process noise | debiased | within 5% |",
        "|---|---|---|---|---|---|",
        *anchor_rows,
    ]
    lines += [
        "",
        "## The smallest subnet: each shipped table's own anchor",
        "",
        "The anchor (the space's smallest subnet) is timed in every chunk, so its time on the "
        "table's reference scale is known exactly; the random validation subnets rarely reach "
        "that small. Each column is a fit's prediction of the anchor over its time: without "
        "the parameter term (the forms shipped before 2026-12-05), the shipped fit, and the "
        "shipped forms refitted with the anchor added to the validation subnets. (Fitted "
        "through the anchor, `through_anchor`, a fit predicts it exactly: its held-out and "
        "front rows say what that costs elsewhere.)",
        "",
        "| table | anchor ms | before 2026-12-05 | shipped | with the anchor as a row |",
        "|---|---|---|---|---|",
        *own_anchor_rows(),
        "",
        "## Fronts measured end to end",
        "",
        "The subnets of each committed `ufo search --verify` front (what a search returns), "
        "each timed end to end interleaved with the table's anchor, in one process, on the "
        "host of the table they are scored with, on its scale; predicted by each fit of "
        "that table's validation rows. One process: a front's fast end moved by +-5% "
        "between processes on the Intel host (README, 'The fast end of a front'). Errors in "
        "%; bias is the median signed error.",
        "",
        "| front | table | subnets | fit | mean error | within 5% | within 10% | bias |",
        "|---|---|---|---|---|---|---|---|",
        *front_rows(),
        "",
        "Held out, over the runs scored above (mean of their means): "
        + "; ".join(
            f"{form}: {np.mean([r['mape'] for r in rows]):.2f}% mean error, "
            f"{100 * np.mean([r['within_5'] for r in rows]):.1f}% within 5%, "
            f"{100 * np.mean([r['within_10'] for r in rows]):.1f}% within 10% "
            f"({len(rows)} runs)"
            for form, rows in held_out.items()
        ),
    ]
    if left_out:
        lines += ["", "Left out:", *left_out]
    write_results(lines, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
