"""`ufo latency`, `ufo profile`: predicted latency, and measuring a device's latency table."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ufo_nas.cli import args as shared
from ufo_nas.errors import InterruptReported, UfoError
from ufo_nas.space import SearchSpace, load_space

if TYPE_CHECKING:
    from ufo_nas.hardware import HardwareProfile
    from ufo_nas.latency.measure import ProfileSettings


IN_SAMPLE_GOAL = 0.9  # share of validation subnets within 5% in sample, as P1 asks held out
AUTO = "auto"  # --sessions: add sessions while the fit misses IN_SAMPLE_GOAL and improves
AUTO_SESSIONS = 3  # at most, with --sessions auto
INTERRUPT_GRACE_S = 30.0  # on Ctrl-C, how long a session's child process may take to stop


def _sessions(text: str) -> int | str:
    """An argument type: `auto` or an integer >= 1."""
    if text == AUTO:
        return AUTO
    try:
        return shared.positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected auto or an integer >= 1") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `latency` and `profile`."""
    line = "predicted latency of subnets on devices"
    p = shared.add_command(subparsers, "latency", cmd_latency, line)
    shared.add_space(p, legacy=True)
    shared.add_device(p, several=True, required=True)
    shared.add_task(p)
    shared.add_arch(p, several=True)

    line = "measure a latency lookup table on this machine"
    p = shared.add_command(subparsers, "profile", cmd_profile, line)
    shared.add_device(p)
    shared.add_space(p)
    shared.add_number(p, "--validation", 40, "random subnets measured end to end to calibrate")
    # the defaults of ProfileSettings (not imported here: it imports torch)
    shared.add_number(
        p,
        "--rounds",
        15,
        "interleaved rounds of a chunk (fewer for slow models: --chunk-seconds; more for fast "
        "ones: --fill-seconds)",
        shared.positive_int,
    )
    shared.add_number(
        p,
        "--chunk-seconds",
        30.0,
        "timing budget of a chunk: chunks of slow models get fewer rounds, at least 7 "
        "(0: always --rounds)",
        shared.non_negative_float,
    )
    shared.add_number(
        p,
        "--fill-seconds",
        10.0,
        "a chunk of fast models gets as many rounds as fill this, at most 60: a tiny subnet's "
        "time is steadier over 60 rounds than over 15 (0: at most --rounds)",
        shared.non_negative_float,
    )
    shared.add_number(
        p,
        "--calls",
        2,
        "timed calls per model per round, after 3 untimed ones (each visit warm)",
    )
    shared.add_number(p, "--chunk", 8, "models timed together")
    shared.add_number(
        p, "--copies", 4, "chained copies of each attention/FFN operator timed as one"
    )
    shared.add_seed(p, "seed of the validation subnets")
    shared.add_out(
        p,
        "table path",
        default="the device's table that describes this host, else latency_tables/<device>/"
        "<space>.yaml where none exists, else (a table of another host exists) "
        "latency_tables/<device>/hosts/<this host>/<space>.yaml",
    )
    p.add_argument(
        "--work-dir",
        help="exported models and tuning databases "
        "(default ~/.cache/ufo-nas/profile/<device>/<space>)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be measured")
    p.add_argument(
        "--recalibrate",
        action="store_true",
        help="move a complete table to this host: re-time only its validation subnets here "
        "(the first --validation of them) and refit the calibration; without --out, a table "
        "of another host is left as it is and the moved one written for this host",
    )
    p.add_argument(
        "--add-session",
        action="store_true",
        help="time a table's validation subnets again in this process (the host it "
        "describes) and refit each at its median over sessions: a time drifts 3-9%% between "
        "processes on a shared 2-vCPU host; each run adds one",
    )
    p.add_argument(
        "--refit",
        action="store_true",
        help="refit a complete table's calibration on its own validation subnets, timing "
        "nothing (seconds): a table fitted before a calibration form was added gains it; "
        "the table at --out, else the one predictions for the device read on this host",
    )
    p.add_argument(
        "--sessions",
        type=_sessions,
        default=AUTO,
        help="processes the validation subnets are timed in, by a build or --recalibrate: each "
        "session after the first re-times them in a new process (as --add-session does, about "
        "90 s on ufo_vit_tiny) and each subnet is fitted at its median. N: that many; auto: "
        f"another while fewer than {100 * IN_SAMPLE_GOAL:.0f}%% fit within 5%% in sample and "
        f"the last one improved that, at most {AUTO_SESSIONS} (default auto)",
    )
    # a session added by `--sessions`: its parent advises once, after the last session
    p.add_argument("--no-fit-advice", action="store_true", help=argparse.SUPPRESS)
    new_help = "first write hardware_profiles/NAME.yaml for this machine (peaks measured here)"
    p.add_argument("--new-profile", metavar="NAME", help=new_help)
    p.add_argument("--backend", help="backend of the new profile")
    shared.add_number(p, "--threads", 0, "threads of the new profile")


def cmd_latency(args: argparse.Namespace) -> None:
    """Predict end-to-end latency (ms) from the device's measured latency table
    (latency_tables/<device>/<space>.yaml), or, where none is measured, a roofline estimate
    from its hardware profile's peaks, labelled as such."""
    from ufo_nas.cvpr22 import parse_arch
    from ufo_nas.latency.predictor import latency_predictor

    space = load_space(args.space)
    tasks = space.select_tasks(args.task)
    archs = [parse_arch(space, text) for text in args.arch]
    for device in args.device:
        predictor = latency_predictor(space, device)
        print(f"{device}: {predictor.source}")
        for arch, ms in zip(archs, predictor.latency_ms(archs, tasks)):
            print(f"{ms:10.3f} ms{'' if predictor.measured else ' (estimate)'}  {arch}")


def cmd_profile(args: argparse.Namespace) -> None:
    """Measure every distinct operator of a space on a device through its hardware profile's
    backend, then whole random subnets end to end, and fit a calibration; writes
    latency_tables/<device>/<space>.yaml (for a CPU whose table describes another host:
    latency_tables/<device>/hosts/<this host>/<space>.yaml). Timing interleaves rounds in one
    process and keeps a low quartile. An interrupted run resumes where it stopped.
    --recalibrate moves a table measured on another host to this one: only its validation
    subnets are re-timed here. Subnets' ONNX graphs are kept, without weights, in
    ~/.cache/ufo-nas/onnx-graphs ($UFO_NAS_CACHE: another folder, or off), so a later session
    exports the same subnets in about a second instead of a trace each."""
    from ufo_nas.hardware import load_profile
    from ufo_nas.latency.measure import ProfileSettings, plan
    from ufo_nas.latency.table import LatencyTable

    if args.new_profile:
        _write_new_profile(args.new_profile, args.backend, args.threads)
        if not args.device:
            return
    if not args.device:
        raise UfoError("--device is required (a hardware profile name or YAML path)")
    profile = load_profile(args.device)
    space = load_space(args.space)
    out, source = (Path(args.out), None) if args.out else _default_out(space, profile, args)
    settings = ProfileSettings(
        validation_subnets=args.validation,
        chunk=args.chunk,
        rounds=args.rounds,
        calls_per_round=args.calls,
        chunk_seconds=args.chunk_seconds or None,
        fill_seconds=args.fill_seconds or None,
        copies=args.copies,
        seed=args.seed,
    )
    modes = [f for f in ("recalibrate", "add_session", "refit") if getattr(args, f)]
    if len(modes) > 1:
        raise UfoError(
            "--recalibrate moves a table to this host, --add-session adds a session on the "
            "host it describes, --refit refits a table without timing: pass one of them"
        )
    if args.sessions != AUTO and args.sessions > 1 and (args.add_session or args.refit):
        flag = "--" + modes[0].replace("_", "-")
        times = "nothing" if args.refit else "one session: run it again for another"
        raise UfoError(
            f"--sessions {args.sessions} applies to a build or --recalibrate; {flag} times {times}"
        )
    if args.refit:
        _refit(space, profile.name, out, args.dry_run)
        return
    began = time.perf_counter()
    if args.recalibrate or args.add_session:
        metrics = _recalibrate(space, profile, out, args, settings, source)
        if metrics is None:  # a dry run
            return
        stalled = False
        if args.recalibrate:  # a moved table gains sessions as a build does
            took = time.perf_counter() - began
            metrics, stalled = _further_sessions(args, out, space, metrics, took)
        _advise_on_fit(metrics, stalled, args, out)
        return
    existing = LatencyTable.load(out, space) if out.exists() else None
    todo = plan(space, existing, settings)
    print(
        f"{profile.name}: {profile.backend} on {profile.device}, {profile.precision}, "
        f"{profile.threads or 'default'} threads -> {out}"
    )
    print(
        f"to measure: {len(todo.operators)} operators, {len(todo.validation)} validation subnets"
        + (
            f" (resuming: {len(existing.operators)} operators, {len(existing.validation)} "
            "subnets already measured)"
            if existing
            else ""
        )
    )
    if args.dry_run:
        for op in todo.operators:
            print(f"  operator {op.key}")
        for arch, tasks in todo.validation:
            print(f"  subnet   {','.join(tasks)}  {arch}")
        _print_further_sessions_plan(args.sessions)
        return
    work_dir = Path(args.work_dir) if args.work_dir else None
    metrics = _measure(
        space, profile, out, work_dir, settings, len(todo.operators) + len(todo.validation)
    )
    print(f"wrote {out}")
    took = time.perf_counter() - began
    _advise_on_fit(*_further_sessions(args, out, space, metrics, took), args, out)


def _print_further_sessions_plan(sessions: int | str) -> None:
    """Say what `--sessions` adds after the first session (a dry run), where it adds any."""
    if sessions == AUTO:
        print(
            f"then up to {AUTO_SESSIONS - 1} more sessions, each in a new process, while fewer "
            f"than {100 * IN_SAMPLE_GOAL:.0f}% of the validation subnets fit within 5%"
        )
    elif sessions > 1:
        print(f"then {sessions - 1} more session(s), each in a new process")


def _further_sessions(
    args: argparse.Namespace, out: Path, space: SearchSpace, metrics: dict | None, took: float
) -> tuple[dict | None, bool]:
    """Re-time the table at `out` in new processes after its first session (which took
    `took` seconds): --sessions N in all, or (auto) another while fewer than 90% of its
    validation subnets fit within 5% in sample and the last session raised that share, at
    most AUTO_SESSIONS. Each says how long the last took. (The fit the last session left,
    whether an automatic session failed to improve it.)"""
    from ufo_nas.latency.table import LatencyTable

    auto = args.sessions == AUTO
    limit = AUTO_SESSIONS if auto else args.sessions
    for k in range(2, limit + 1):
        if auto and (not metrics or metrics["within_5pct"] >= IN_SAMPLE_GOAL):
            break
        why = f" ({100 * metrics['within_5pct']:.0f}% within 5% in sample)" if auto else ""
        print(
            f"session {k} of {'at most ' if auto else ''}{limit}{why}: re-timing the "
            f"validation subnets in a new process (the last session took {_duration(took)})"
        )
        began = time.perf_counter()
        _add_session_in_a_new_process(args, out, k, limit)
        took = time.perf_counter() - began
        before, metrics = metrics, LatencyTable.load(out, space).metrics
        if auto and metrics and metrics["within_5pct"] <= before["within_5pct"]:
            return metrics, True
    return metrics, False


def _duration(seconds: float) -> str:
    """`seconds` as a person reads it: 45 s, 12 min, 1.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def _advise_on_fit(
    metrics: dict | None, stalled: bool, args: argparse.Namespace, out: Path
) -> None:
    """Where fewer than 90% of a table's validation subnets fit within 5% in sample, say so
    and what to do: add a session (their times drifted in the process that timed them), or,
    where an added session did not improve the fit, re-measure the operators here."""
    if args.no_fit_advice or not metrics or metrics["within_5pct"] >= IN_SAMPLE_GOAL:
        return
    space = f" --space {args.space}" if args.space else ""
    share = (
        f"note: only {100 * metrics['within_5pct']:.0f}% of the validation subnets are within "
        f"5% in sample (goal {100 * IN_SAMPLE_GOAL:.0f}%)"
    )
    if stalled:
        why = f"{share}, and the last session, timed in a new process, did not improve it: "
        if args.recalibrate:
            print(
                f"{why}the error is not drift but the operators, timed on the host the table "
                f"came from. `ufo profile --device {args.device}{space} --out NEW.yaml` (no "
                "--recalibrate) measures them on this host"
            )
        else:
            print(
                f"{why}the error is not drift but how the operators sum to whole subnets "
                "here, which more sessions do not change"
            )
        return
    print(
        f"{share}: their times likely drifted in the process that timed them. `ufo profile "
        f"--device {args.device}{space} --out {out} --add-session` re-times them in a new "
        "process and fits each at its median over sessions (repeat until the fit holds; "
        "--sessions N does so after a build or --recalibrate)"
    )


def _default_out(
    space: SearchSpace, profile: HardwareProfile, args: argparse.Namespace
) -> tuple[Path, Path | None]:
    """(where `ufo profile` writes without --out, the table --recalibrate starts from when
    that is another file). A CPU table is built, resumed or moved for the host it runs on:
    the device's table that describes this host; where only tables of other hosts exist, a
    new one in `hosts/<this host>/` (the others stay as they are). --refit and --add-session
    work on the table predictions read here."""
    from ufo_nas.hardware import runs_here
    from ufo_nas.latency.predictor import (
        describes_this_host,
        load_table_for_this_host,
        new_table_path_for_this_host,
    )

    chosen, table = load_table_for_this_host(space, profile.name)
    if table is None or not runs_here(profile) or args.add_session or args.refit:
        return chosen, None
    if describes_this_host(table):
        return chosen, None
    return new_table_path_for_this_host(space, profile.name), chosen if args.recalibrate else None


def _add_session_in_a_new_process(args: argparse.Namespace, out: Path, k: int, limit: int) -> None:
    """`ufo profile --add-session` on `out` in a child process (session `k` of at most
    `limit`), with this run's settings."""
    command = [sys.executable, "-m", "ufo_nas", "profile", "--device", args.device]
    command += ["--space", args.space] if args.space else []
    command += ["--out", str(out), "--add-session", "--no-fit-advice", "--seed", str(args.seed)]
    command += ["--validation", str(args.validation), "--rounds", str(args.rounds)]
    command += ["--chunk-seconds", str(args.chunk_seconds), "--calls", str(args.calls)]
    command += ["--fill-seconds", str(args.fill_seconds)]
    command += ["--chunk", str(args.chunk), "--copies", str(args.copies)]
    command += ["--work-dir", args.work_dir] if args.work_dir else []
    returncode = run_child(command)
    if returncode != 0:
        raise UfoError(
            f"session {k} of {limit} failed (exit {returncode}); {out} keeps the "
            f"sessions before it: add more with `ufo profile --device {args.device} --add-session`"
        )


def run_child(command: list[str]) -> int:
    """Run `command` in a child process to its end; its exit status. On Ctrl-C, which the
    child hears too (one process group), wait for it to stop as it does on its own (its
    temporaries removed, one line said); after `INTERRUPT_GRACE_S` pass it the SIGINT (a
    signal sent to this process alone); then raise `InterruptReported` where it ended as
    interrupted, else the KeyboardInterrupt (this process says it)."""
    child = subprocess.Popen(command)
    try:
        return child.wait()
    except KeyboardInterrupt:
        try:
            child.wait(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGINT)
            child.wait()
        if child.returncode == shared.EXIT_INTERRUPTED:
            raise InterruptReported from None
        raise


def _refit(space: SearchSpace, device: str, path: Path, dry_run: bool) -> None:
    """`ufo profile --refit`: refit the device's table at `path` and print its fit before
    and after."""
    from ufo_nas.latency.measure import refit
    from ufo_nas.latency.table import LatencyTable, describe_calibration

    if not path.is_file():
        raise UfoError(f"--refit: no table at {path}; run `ufo profile` without it first")
    table = LatencyTable.load(path, space)
    if table.device != device:
        raise UfoError(f"--refit: {path} is a table of device '{table.device}', not '{device}'")
    if dry_run:
        held = len(table.validation_times())
        print(f"would refit {path} on its {held} validation subnets (no timing)")
        return
    old = refit(space, table, path)
    new = table.metrics
    replaced = table.provenance["refits"][-1]["replaced"]["calibration"]
    print(
        f"refitted {path} on its {new['validation_subnets']} validation subnets: "
        f"{describe_calibration(replaced)} -> {describe_calibration(table.calibration)}; in "
        f"sample, mean error {old['mean_abs_pct_error']:.2f}% -> "
        f"{new['mean_abs_pct_error']:.2f}%, within 5% {100 * old['within_5pct']:.0f}% -> "
        f"{100 * new['within_5pct']:.0f}%"
    )


def _recalibrate(
    space, profile, out: Path, args: argparse.Namespace, settings, source: Path | None
) -> dict | None:
    """`ufo profile --recalibrate` / `--add-session`: re-time the validation subnets of
    the table at `source` (else `out`) on this host, refit, write `out`, and print the fit
    before and after; its metrics (None on --dry-run)."""
    from tqdm import tqdm

    from ufo_nas.backends import get_backend
    from ufo_nas.latency.measure import default_work_dir, recalibrate
    from ufo_nas.latency.table import LatencyTable

    flag = "--add-session" if args.add_session else "--recalibrate"
    source = source or out
    if not source.is_file():
        raise UfoError(f"{flag}: no table at {source}; run `ufo profile` without it first")
    held = len(LatencyTable.load(source, space).validation_times())
    total = min(held, settings.validation_subnets)
    into = "" if source == out else f" into {out}"
    if args.dry_run:
        print(f"would re-time {total} of the {held} validation subnets of {source} here{into}")
        if args.recalibrate:
            _print_further_sessions_plan(args.sessions)
        return None
    get_backend(profile.backend)(profile.target())  # fails here, in one line, if it cannot run
    work_dir = Path(args.work_dir) if args.work_dir else default_work_dir(profile.name, space)
    began = time.perf_counter()
    desc = "adding a session" if args.add_session else "recalibrating"
    with tqdm(total=total, unit="subnet", desc=desc) as bar:
        table = recalibrate(
            space,
            profile,
            out,
            work_dir,
            settings,
            progress=lambda what, n: (bar.set_postfix_str(what), bar.update(n)),
            add_session=args.add_session,
            source=source,
        )
    old, new = table.provenance["sessions"][-1]["before_here"], table.metrics
    done = "added a session to" if args.add_session else "recalibrated"
    print(
        f"{done} {source}{into} on this host in {time.perf_counter() - began:.0f} s; on its "
        f"{new['validation_subnets']} validation subnets timed here, before -> after: mean "
        f"error {old['mean_abs_pct_error']:.2f}% -> {new['mean_abs_pct_error']:.2f}%, within "
        f"5% {100 * old['within_5pct']:.0f}% -> {100 * new['within_5pct']:.0f}%, within 10% "
        f"{100 * old['within_10pct']:.0f}% -> {100 * new['within_10pct']:.0f}%"
    )
    return new


def _write_new_profile(name: str, backend: str | None, threads: int) -> None:
    from ufo_nas.hardware import write_host_profile

    if not backend:
        raise UfoError("--new-profile needs --backend (torch, onnxruntime, openvino, tvm)")
    path, profile = write_host_profile(name, backend, threads)
    print(
        f"wrote {path}: peak {profile.peak_tflops} TFLOP/s, {profile.memory_gbps} GB/s "
        "(measured here)"
    )


def _measure(
    space: SearchSpace,
    profile: HardwareProfile,
    out: Path,
    work_dir: Path | None,
    settings: ProfileSettings,
    total: int,
) -> dict | None:
    """Run the profiling with a progress bar, print the calibration's fit and return its
    in-sample metrics (None without validation subnets)."""
    from tqdm import tqdm

    from ufo_nas.backends import get_backend
    from ufo_nas.latency.measure import default_work_dir, run_profile
    from ufo_nas.latency.table import describe_calibration

    get_backend(profile.backend)(profile.target())  # fails here, in one line, if it cannot run
    work_dir = work_dir or default_work_dir(profile.name, space)
    with tqdm(total=total, unit="model", desc="profiling") as bar:
        table = run_profile(
            space,
            profile,
            out,
            work_dir,
            settings,
            progress=lambda what, n: (bar.set_postfix_str(what), bar.update(n)),
        )
    m, fit = table.metrics, table.calibration
    if m:
        print(
            f"calibration {describe_calibration(fit)}; "
            f"on {m['validation_subnets']} subnets mean error {m['mean_abs_pct_error']:.2f}%, "
            f"{100 * m['within_5pct']:.0f}% within 5%, {100 * m['within_10pct']:.0f}% within 10%"
        )
    return m or None
