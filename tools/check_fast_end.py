"""Is the fast end of a front predicted right? Times a search result's fastest subnets in
three settings and scores the table's calibration forms on them.

A front's fast end is made of the smallest subnets, which a table's random validation
subnets rarely reach, so its held-out P1 says little about them. This re-times the first
`--rows` rows of a `pareto.json` (`ufo search ... --out DIR`; rows are sorted by predicted
latency) in a fresh process, as `ufo profile` times its validation subnets (interleaved with
the table's anchor, on the table's scale), in three settings per repeat: the rows beside
each other (as `--verify` times them), beside random subnets, and each alone with the
anchor; with `--processes N`, in N processes one after another (a tiny front's fast end
moved by +-5% between processes on the Intel host). Their median is the ground truth; each
row is predicted by the table's validation rows fitted without the parameter term (the forms
before 2026-12-05) and by the shipped fit. Where the result was verified, its `--verify`
times (measured right after the search, in its process) stand beside.

    python tools/check_fast_end.py RESULT/pareto.json [--device cpu-onnxruntime] [--rows 8]
        [--repeats 2] [--processes 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from results_io import write_results

from ufo_nas import load_space
from ufo_nas.errors import UfoError, UfoWarning
from ufo_nas.hardware import host_fingerprint, host_id, load_profile
from ufo_nas.latency.measure import (
    Profiler,
    ProfileSettings,
    default_work_dir,
    validation_subnets,
)
from ufo_nas.latency.predictor import latency_predictor, table_for_this_host
from ufo_nas.latency.table import RELATIVE_FORMS, Regressors, calibrated_ms, fit_calibration
from ufo_nas.space import Arch

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("beside each other", "beside random subnets", "alone with the anchor")


def time_settings(
    profiler: Profiler, rows: list[Arch], tasks: tuple[str, ...], others: list[Arch]
) -> dict[str, list[float]]:
    """Each row's time over its chunk's anchor time, in each of SETTINGS."""
    settings = ProfileSettings()

    def chunk(archs: list[Arch]) -> list[float]:
        models = {f"m{k}": profiler.compile_subnet(a, tasks) for k, a in enumerate(archs)}
        timings, anchor_ms, _ = profiler.time_chunk(models, settings)
        profiler.release()
        return [timings[f"m{k}"].ms / anchor_ms for k in range(len(archs))]

    half = len(rows) // 2
    mixed = chunk(rows[:half] + others[: len(rows) - half])[:half]
    mixed += chunk(others[: len(rows) - half] + rows[half:])[len(rows) - half :]
    return {
        SETTINGS[0]: chunk(rows),
        SETTINGS[1]: mixed,
        SETTINGS[2]: [chunk([row])[0] for row in rows],
    }


def measure_here(
    space, device: str, archs: list[Arch], tasks: tuple[str, ...], repeats: int
) -> dict[str, list[list[float]]]:
    """Per setting, per repeat, each row's time over its chunk's anchor, in this process."""
    others = [a for a, t in validation_subnets(space, 4 * len(archs), seed=5) if len(t) == 1]
    profile = load_profile(device)
    profiler = Profiler(space, profile, default_work_dir(profile.name, space))
    ratios: dict[str, list[list[float]]] = {name: [] for name in SETTINGS}
    try:
        for _ in range(repeats):
            for name, values in time_settings(profiler, archs, tasks, others).items():
                ratios[name].append(values)
    finally:
        profiler.close()
    return ratios


def measure_in_processes(args: argparse.Namespace) -> list[dict[str, list[list[float]]]]:
    """`measure_here` in `args.processes` child processes, one after another."""
    out = []
    with tempfile.TemporaryDirectory() as folder:
        for k in range(args.processes):
            times = Path(folder) / f"{k}.json"
            command = [sys.executable, __file__, args.result, "--device", args.device]
            command += ["--rows", str(args.rows), "--repeats", str(args.repeats)]
            subprocess.run([*command, "--times-out", str(times)], check=True)
            out.append(json.loads(times.read_text()))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", help="a search result's pareto.json")
    parser.add_argument("--device", default="cpu-onnxruntime", help="a device this host runs")
    parser.add_argument("--rows", type=int, default=8, help="fastest rows timed (default 8)")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of the three settings")
    parser.add_argument(
        "--processes", type=int, default=1, help="processes timing it, one after another"
    )
    parser.add_argument("--out", default=str(ROOT / "tools/results/check_fast_end.md"))
    parser.add_argument("--times-out", help=argparse.SUPPRESS)  # a child: write times only
    args = parser.parse_args()
    for flag in ("rows", "repeats", "processes"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    try:
        report = json.loads(Path(args.result).read_text())
        front = next(f for f in report["fronts"] if f["device"] == args.device)
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        parser.error(f"{args.result}: no front of {args.device} in a search result ({exc!r})")
    space = load_space(report["space"])
    tasks = tuple(report["tasks"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UfoWarning)  # the table in use is named below
        predictor = latency_predictor(space, args.device)
    table = predictor.table
    if not table.measured:
        parser.error(f"{args.device} has no measured table for {space.name}")
    rows = front["rows"][: args.rows]
    archs = [space.parse(r["arch"]) for r in rows]
    try:
        if args.times_out:
            ratios = measure_here(space, args.device, archs, tasks, args.repeats)
            Path(args.times_out).write_text(json.dumps(ratios))
            return 0
        if args.processes > 1:
            processes = measure_in_processes(args)
        else:
            processes = [measure_here(space, args.device, archs, tasks, args.repeats)]
    except UfoError as exc:
        parser.error(str(exc))
    reference = table.reference_anchor_ms
    # per process, per row: the median over its settings and repeats; the truth: their median
    by_process = np.array(
        [np.median(np.concatenate([np.array(v) for v in r.values()]), axis=0) for r in processes]
    )
    truth = np.median(by_process, axis=0) * reference
    per_setting = {
        name: np.median(np.concatenate([np.array(r[name]) for r in processes]), axis=0) * reference
        for name in SETTINGS
    }
    x = Regressors.stack([predictor.regressors([a], tasks) for a in archs])
    fits = {
        "before 2026-12-05": fit_calibration(*predictor.calibration_data(), RELATIVE_FORMS),
        "shipped": table.calibration,
    }
    predicted = {name: calibrated_ms(cal, x) for name, cal in fits.items()}
    verified = [r.get("measured_ms") for r in rows]
    command = "python " + shlex.join(["tools/check_fast_end.py", *sys.argv[1:]])
    timing = ProfileSettings()
    lines = [
        "# The fast end of a front: measured in three settings, predicted by two fits",
        "",
        f"Command: `{command}`  ",
        f"Host `{host_id(host_fingerprint())}`; table "
        f"`{table_for_this_host(space, args.device).relative_to(ROOT)}` (reference anchor "
        f"{reference:.3f} ms); {args.processes} process(es), one after another, each timing "
        f"every setting {args.repeats} times; chunks timed as `ufo profile` times them (p25 of "
        f"{timing.rounds} interleaved rounds beside the anchor, each visit "
        f"{timing.warm_calls} untimed calls and {timing.calls_per_round} timed). Times in ms "
        "on the table's scale (each setting's column: the median over its timings in every "
        "process); errors (prediction - truth) / truth in %, truth the median over processes "
        "of each process's median over its settings and repeats. Fits: "
        + "; ".join(f"{name}: {cal['model']}" for name, cal in fits.items())
        + ".",
        "",
        "| row | arch | params | "
        + " | ".join(SETTINGS)
        + " | truth | before 2026-12-05 | shipped | --verify (its process) |",
        "|---|---|---|" + "---|" * (len(SETTINGS) + 4),
    ]
    for k, row in enumerate(rows):
        cells = [f"{per_setting[name][k]:.3f}" for name in SETTINGS]
        errors = [f"{100 * (predicted[n][k] / truth[k] - 1):+.1f}%" for n in fits]
        check = "-" if verified[k] is None else f"{100 * (verified[k] / truth[k] - 1):+.1f}%"
        lines.append(
            f"| {k} | {row['arch']} | {row['params'] / 1e6:.2f}M | {' | '.join(cells)} | "
            f"{truth[k]:.3f} | {' | '.join(errors)} | {check} |"
        )
    lines += ["", "| fit | mean error | within 5% | within 10% | bias |", "|---|---|---|---|---|"]
    for name in fits:
        signed = predicted[name] / truth - 1
        error = np.abs(signed)
        lines.append(
            f"| {name} | {100 * error.mean():.2f}% | {100 * (error <= 0.05).mean():.0f}% | "
            f"{100 * (error <= 0.10).mean():.0f}% | {100 * np.median(signed):+.2f}% |"
        )
    if len(processes) > 1:
        spread = np.median(by_process, axis=1) * reference / np.median(truth)
        lines += [
            "",
            "Each process's median over the rows, over the truth's: "
            + ", ".join(f"{r:.3f}" for r in spread)
            + " (how far one process alone would have put this front's fast end).",
        ]
    if all(v is not None for v in verified):
        offset = np.median(np.array(verified) / truth - 1)
        lines += [
            "",
            f"The `--verify` times of these rows (the last column: each over the truth) sit "
            f"{100 * offset:+.1f}% (median) from the times measured here.",
        ]
    write_results(lines, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
