"""Does dividing each round by the host's speed steady a chunk's prediction errors?

On the 2-vCPU EPYC the host's speed moves under a chunk (no steal time shows: other guests
share the cores): a ViT-Base int8 subnet ran 44-48 ms for some rounds, 60-70 ms in others,
every model alike. This builds the face-front subnets of `tools/bench_export.py` for each
device (as `ufo export` builds them), records every timed call of `--rounds` interleaved
rounds beside the device table's anchor and references (`interleaved_calls`, as profiling
times a chunk: two timed calls a visit after the untimed ones), and cuts the rounds into
windows of each of `--windows` rounds: each window a chunk of that many rounds. Per window
the subnets' prediction errors, with each model's time taken (a) as the p25 of its calls,
as every chunk was timed before 2026-12-07, and (b) as `chunk_timings` takes it now: each
round's calls over the host's speed in it (`round_speeds`). Reported: the errors' spread
between windows (sd, points), their mean, how many lie within 5%, and the host's speeds.

    python tools/check_round_speed.py [--space ufo_vit_base] [--devices D1,D2]
        [--picks fastest] [--rounds 150] [--windows 7,15,30] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from check_export_builds import PICKS, TIMING, front_exports, prediction_errors
from results_io import command_line, write_results

from ufo_nas import load_space
from ufo_nas.errors import UfoError
from ufo_nas.hardware import host_fingerprint, host_id
from ufo_nas.latency.timing import (
    Timing,
    chunk_timings,
    interleaved_calls,
    round_speeds,
)

ROOT = Path(__file__).resolve().parents[1]


def plain_timings(calls: dict[str, np.ndarray]) -> dict[str, Timing]:
    """Each model's p25 of its calls as timed (chunks before 2026-12-07): `chunk_timings`
    of the model alone, which reads no round speed."""
    return {name: chunk_timings({name: values})[name] for name, values in calls.items()}


def device_rows(
    args: argparse.Namespace, windows: list[int], device: str, work: Path
) -> tuple[list[str], list[str], str]:
    """One device's table rows (per pick, window length and way of timing), its summary
    rows (per window length and way of timing, over the picks) and its host speeds."""
    space = load_space(args.space)
    picks = args.picks.split(",")
    models, archs, profiler, predictor = front_exports(space, device, 1, work, picks)
    models.update(profiler.scale_models())
    calls = interleaved_calls(
        {name: runner for name, (runner, _) in models.items()},
        {name: x for name, (_, x) in models.items()},
        rounds=args.rounds,
        calls_per_round=TIMING.calls_per_round,
        warm_calls=TIMING.warm_calls,
    )
    profiler.close()
    speeds = round_speeds(calls)
    host = (
        f"- {device}: the host's speed over the rounds p10 {np.percentile(speeds, 10):.2f}, median "
        f"{np.median(speeds):.2f}, p90 {np.percentile(speeds, 90):.2f}, max {speeds.max():.2f}"
    )
    rows, summary = [], []
    for rounds in windows:
        starts = range(0, args.rounds - rounds + 1, rounds)
        for label, timings_of in (
            ("p25 of calls", plain_timings),
            ("over round speed", chunk_timings),
        ):
            errors: dict[str, list[float]] = {name: [] for name in models if "/" in name}
            for start in starts:
                window = {name: values[start : start + rounds] for name, values in calls.items()}
                found = prediction_errors(timings_of(window), archs, profiler, predictor)
                for name, error in found.items():
                    errors[name].append(error)
            for name, found in errors.items():
                e = np.asarray(found)
                rows.append(
                    f"| {device} | {name.split('/')[0]} | {rounds} | {len(e)} | {label} | "
                    f"**{np.std(e, ddof=1):.2f}** | {np.mean(e):+.2f}% | "
                    f"{int(np.sum(np.abs(e) <= 5))} of {len(e)} | {np.abs(e).max():.1f}% |"
                )
            every = np.asarray(list(errors.values()))
            pooled = np.sqrt(np.mean(np.var(every, axis=1, ddof=1)))
            summary.append(
                f"| {device} | {rounds} | {label} | **{pooled:.2f}** | "
                f"{int(np.sum(np.abs(every) <= 5))} of {every.size} |"
            )
    return rows, summary, host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="ufo_vit_base")
    parser.add_argument("--devices", default="cpu-onnxruntime-int8,cpu-openvino-int8")
    parser.add_argument("--picks", default="fastest", help=f"of {', '.join(PICKS)}")
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--windows", default="7,15,30", help="rounds a window (a chunk)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "tools" / "results" / "check_round_speed.md"
    )
    args = parser.parse_args()
    unknown = set(args.picks.split(",")) - set(PICKS)
    if unknown:
        parser.error(f"unknown --picks {', '.join(sorted(unknown))}; allowed: {', '.join(PICKS)}")
    try:
        windows = [int(w) for w in args.windows.split(",")]
    except ValueError:
        parser.error(f"--windows {args.windows!r}: comma-separated whole numbers of rounds")
    if min(windows) < 2 or args.rounds < 2 * max(windows):
        parser.error("--windows must be at least 2 rounds, --rounds at least twice the longest")
    started = time.time()
    rows, summary, hosts = [], [], []
    for device in args.devices.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                found = device_rows(args, windows, device, Path(tmp))
            except UfoError as exc:
                sys.exit(f"error: {exc}")
        rows, summary, hosts = rows + found[0], summary + found[1], hosts + [found[2]]
    host = host_fingerprint()
    lines = [
        "# A chunk's prediction errors over the host's round speed (check_round_speed)",
        "",
        f"Command: `{command_line('tools/check_round_speed.py')}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; host {host_id(host)} "
        f"({host['cpu']}, {host['cores']} cores); {time.time() - started:.0f} s. "
        f"{args.rounds} interleaved rounds of the {args.space} face-front subnets "
        f"({args.picks}) beside each device table's anchor and references, cut into windows "
        "of the rounds given; each window's errors with each model's time as the p25 of its "
        "calls (chunks before 2026-12-07) and over the host's speed in each round (now).",
        "",
        "Error: (predicted - measured) / measured, the table's prediction against the time "
        "on the table's scale. Spread: the sd of the windows' errors (points).",
        "",
        "| device | rounds a window | timing | spread (pooled over the subnets) | within 5% |",
        "|---|---|---|---|---|",
        *summary,
        "",
        "The host's speed in each round (`round_speeds`: 1 its usual, 1.3 every model 1.3x "
        "its usual time):",
        "",
        *hosts,
        "",
        "## Per subnet",
        "",
        "| device | subnet | rounds a window | windows | timing | spread | mean | within 5% "
        "| max |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    write_results(lines, args.out)


if __name__ == "__main__":
    main()
