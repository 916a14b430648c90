"""`ufo search`, `ufo plot`: the NSGA-II search for Pareto sets, and its figures."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ufo_nas.cli import args as shared
from ufo_nas.errors import UfoError
from ufo_nas.space import load_space


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `search` and `plot`."""
    line = "NSGA-II search for Pareto subnets per task and device"
    p = shared.add_command(subparsers, "search", cmd_search, line)
    shared.add_device(p, several=True, required=True)
    shared.add_task(p, required=True)
    shared.add_space(p)
    p.add_argument("--latency-ms", type=shared.positive_float, help="latency budget per image (ms)")
    p.add_argument("--max-params", type=shared.count, help="params budget, e.g. 40M")
    minimise_help = "cost objective(s), comma-separated: latency, params, macs (default latency)"
    p.add_argument("--minimise", type=shared.names, default=("latency",), help=minimise_help)
    risk_help = "optimise mean - RISK x std of the predicted score, RISK >= 0"
    shared.add_number(p, "--risk", 0.0, risk_help, shared.non_negative_float)
    shared.add_number(p, "--population", 64, "NSGA-II population", shared.positive_int)
    shared.add_number(p, "--generations", 100, "generations", shared.positive_int)
    shared.add_seed(p)
    unseen_help = (
        "also search gene choices the predictors never saw in training (held at what they "
        "saw by default); their scores are guesses with a larger std"
    )
    p.add_argument("--search-unseen", action="store_true", help=unseen_help)
    verify_help = (
        "then re-measure every Pareto subnet end to end on the device (a measured table's "
        "device this machine runs), interleaved with the table's anchor, and write measured "
        "beside predicted latency; a chunk whose anchor ran more than 5%% off the others' is "
        "timed once more at the end"
    )
    p.add_argument("--verify", action="store_true", help=verify_help)
    default_out = "the first free runs/search/<space>-<device>-<task>[-N]"
    shared.add_out(p, "output folder", default=default_out)
    shared.add_overwrite(p, "results already in --out")
    shared.add_number(p, "--show", 20, "Pareto rows printed per device", shared.non_negative_int)

    line = "plot Pareto fronts, convergence or a latency table check"
    p = shared.add_command(subparsers, "plot", cmd_plot, line)
    p.add_argument("what", choices=["fronts", "convergence", "latency"], help="which figure")
    p.add_argument("results", nargs="*", help="search result folders or pareto.json files")
    shared.add_device(p, note="for latency")
    shared.add_space(p, note="for latency")
    shared.add_out(p, "PNG path", default="<what>.png here")
    shared.add_overwrite(p, "an existing PNG")


def cmd_search(args: argparse.Namespace) -> None:
    """Search the space's subnets for the best trade-off between predicted task score (the
    shipped GP-NAS predictors) and latency on each device (its measured latency table, or a
    roofline estimate labelled as such), with NSGA-II. Writes the Pareto set as pareto.csv and
    pareto.json, pareto.png and convergence.png, and prints it. Several --task values search
    one subnet whose trunk serves them all; several --device values search each device and
    overlay the fronts. --verify then times each Pareto subnet on this machine and marks the
    ones that measured latency takes off the front.

    examples:
      ufo-search --device jetson --task face
      ufo-search --device cpu-onnxruntime,cpu-openvino --task face,person --latency-ms 250
      ufo-search --device rpi4 --task vehicle --max-params 60M --minimise latency,params
      ufo-search --device cpu-onnxruntime --space ufo_vit_tiny --task face --verify
    """
    from tqdm import tqdm

    from ufo_nas.fileio import check_writable
    from ufo_nas.plot import plot_convergence, plot_fronts
    from ufo_nas.search.engine import SearchSettings
    from ufo_nas.search.problem import Budgets
    from ufo_nas.search.report import CONVERGENCE_PNG, FRONTS_PNG, search_out_folder
    from ufo_nas.search.run import prepare, search_devices

    space = load_space(args.space)
    tasks = list(space.select_tasks(args.task))
    devices = list(args.device)
    out = check_writable(search_out_folder(args.space, devices, tasks, args.out, args.overwrite))
    settings = SearchSettings(
        population=args.population, generations=args.generations, seed=args.seed
    )
    budgets = Budgets(latency_ms=args.latency_ms, params=args.max_params)
    profiles = {}
    if args.verify:  # before searching: only a device this machine runs can be measured
        from ufo_nas.search.verify import check_verifiable

        profiles = check_verifiable(space, devices)
    problems = prepare(
        space, tasks, devices, list(args.minimise), budgets, args.risk, args.search_unseen
    )
    total = settings.generations * len(devices)
    with tqdm(total=total, unit="gen", desc="searching", disable=None) as bar:
        report = search_devices(
            problems,
            settings,
            progress=lambda device, gen, n: (
                bar.set_postfix_str(f"{device}: {n} subnets"),
                bar.update(1),
            ),
        )
    verified = []
    if args.verify:
        from ufo_nas.search.verify import summary, verify_report

        total = sum(len(front.rows) for front in report.fronts)
        with tqdm(total=total, unit="subnet", desc="verifying", disable=None) as bar:
            report = verify_report(space, report, profiles, progress=bar.update)
        verified = [summary(front) for front in report.fronts]
    print(
        f"space {report.space}, tasks {', '.join(report.tasks)} on one trunk; objectives "
        f"{', '.join(report.objectives)}"
        + (f" (score = mean - {args.risk:g} std)" if args.risk else "")
    )
    for note in report.unseen_notes():
        print(f"  {note}")
    for front in report.fronts:
        print(
            f"\n{front.device}: latency {'from ' if front.latency_measured else ''}"
            f"{front.latency_source}\n  {front.evaluations} "
            f"subnets evaluated in {front.seconds:.1f} s ({front.generations} generations of "
            f"{settings.population}); {len(front.rows)} Pareto-optimal"
        )
        print(report.format_front(front, limit=args.show))
    if verified:
        print("\n" + "\n".join(verified))
    written = report.write(out, overwrite=args.overwrite)
    for draw, path in ((plot_fronts, out / FRONTS_PNG), (plot_convergence, out / CONVERGENCE_PNG)):
        written.append(_writing(path, draw, [report], path, overwrite=args.overwrite))
    print(f"\nwrote {', '.join(str(p) for p in written)}")


def _writing(path: Path, write: Callable[..., Path], *args: Any, **kwargs: Any) -> Path:
    """`write(*args, **kwargs)`, with an OSError (a full disk, a folder made read-only
    meanwhile) turned into one line naming `path`."""
    try:
        return write(*args, **kwargs)
    except OSError as exc:
        raise UfoError(f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_plot(args: argparse.Namespace) -> None:
    """fronts: predicted score against latency from one or more search results (overlaid:
    devices, task sets). convergence: hypervolume per generation. latency: a device's measured
    table, predicted against measured on its validation subnets."""
    from ufo_nas import plot
    from ufo_nas.fileio import check_writable
    from ufo_nas.search.report import SearchReport

    if args.what == "latency":
        from ufo_nas.latency.predictor import latency_predictor

        if not args.device:
            raise UfoError("ufo plot latency needs --device (a profile with a measured table)")
        space = load_space(args.space)
        out = Path(args.out or f"latency-{args.device}-{space.name}.png")
        check_writable(out.parent)
        predictor = latency_predictor(space, args.device)
        path = _writing(out, plot.plot_latency_validation, predictor, out, overwrite=args.overwrite)
    else:
        if not args.results:
            raise UfoError(f"ufo plot {args.what} needs search results (folders or pareto.json)")
        out = Path(args.out or f"{args.what}.png")
        check_writable(out.parent)
        reports = [SearchReport.load(r) for r in args.results]
        draw = plot.plot_fronts if args.what == "fronts" else plot.plot_convergence
        path = _writing(out, draw, reports, out, overwrite=args.overwrite)
    print(f"wrote {path}")
