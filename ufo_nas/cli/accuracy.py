"""`ufo eval`, `ufo fit-predictor`, `ufo predict`: measured and predicted task scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from ufo_nas.cli import args as shared
from ufo_nas.errors import UfoError
from ufo_nas.space import load_space


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `eval`, `fit-predictor` and `predict`."""
    line = "evaluate subnets of a supernet into the accuracy table"
    p = shared.add_command(subparsers, "eval", cmd_eval, line)
    shared.add_space(p, legacy=True)
    shared.add_task(p, several=False, required=True)
    p.add_argument(
        "--checkpoint",
        help="a ufo-nas supernet checkpoint (default: supernets/<space>.safetensors, shipped)",
    )
    n_help = "evaluate until the table holds this many subnets of the task on its data"
    shared.add_number(p, "-n", 20, n_help, shared.positive_int)
    p.add_argument(
        "--sampler",
        choices=["uniform", "active"],
        default="uniform",
        help="uniform random, or GP-NAS information-based choice (default uniform)",
    )
    shared.add_seed(p)
    p.add_argument("--split", default="val", help="data split: val, train or all (default val)")
    table_help = "accuracy table CSV (default: <space>.accuracy.csv beside the space file)"
    p.add_argument("--table", help=table_help)
    shared.add_number(p, "--batch-size", 64, "images per forward", shared.positive_int)

    line = "fit GP-NAS accuracy predictors from the table"
    p = shared.add_command(subparsers, "fit-predictor", cmd_fit_predictor, line)
    shared.add_space(p, legacy=True)
    shared.add_task(p)
    share_help = "share strength: each task's model also uses the other tasks' models"
    p.add_argument("--share", action="store_true", help=share_help)
    p.add_argument("--table", help=table_help)
    shared.add_out(p, "output folder", default="predictors/<space>/")
    shared.add_overwrite(p, "existing predictor files")

    line = "predicted accuracy score of subnets"
    p = shared.add_command(subparsers, "predict", cmd_predict, line)
    shared.add_space(p, legacy=True)
    shared.add_task(p, several=False, required=True)
    shared.add_arch(p, several=True)
    p.add_argument("--predictor", help="a predictor JSON (default: the shipped one)")


def cmd_eval(args: argparse.Namespace) -> None:
    """Evaluate N subnets of a trained supernet on a task's validation data with the task's
    metric (face verification accuracy, re-identification mAP, retrieval Recall@1,
    classification top-1) and append each result to the space's accuracy table as soon as it
    is measured; rerunning an interrupted command evaluates only what is missing."""
    from tqdm import tqdm

    from ufo_nas.accuracy import AccuracyTable, accuracy_table_path
    from ufo_nas.checkpoint import load_supernet, shipped_supernet
    from ufo_nas.data import load_task_data
    from ufo_nas.evaluate import choose_archs, evaluate_archs, record_of
    from ufo_nas.fileio import check_writable

    space = load_space(args.space)
    task = space.spec.task(args.task)
    table_path = Path(args.table) if args.table else accuracy_table_path(space)
    check_writable(table_path.parent)
    checkpoint = args.checkpoint or shipped_supernet(space)
    if checkpoint is None:
        raise UfoError(
            f"no --checkpoint, and no trained supernet is shipped for space '{space.name}'; "
            "train one with `ufo train` (shipped: ufo_vit_tiny)"
        )
    supernet = load_supernet(checkpoint, space)
    data = load_task_data(space.spec, task.name, split=args.split)
    table = AccuracyTable(table_path, space)
    benchmark = data.name
    archs = choose_archs(space, table, task.name, benchmark, args.n, args.sampler, args.seed)
    done = len(table.evaluated(task.name, benchmark))
    print(
        f"{task.name} ({task.kind}) on {benchmark}: {len(data)} images; {done} subnets already "
        f"in {table_path}; evaluating {len(archs)} more ({args.sampler} sampling)"
    )
    source = f"ufo eval --checkpoint {checkpoint}"
    results = evaluate_archs(supernet, archs, task.name, data, args.batch_size)
    bar = tqdm(results, total=len(archs), desc="subnets", unit="subnet", disable=None)
    for result in bar:
        try:
            table.append([record_of(result, task.name, task.kind, benchmark, source)])
        except OSError as exc:
            raise UfoError(f"cannot write {table_path}: {exc.strerror or exc}") from None
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
        tqdm.write(f"{metrics}  {result.arch}")


def cmd_fit_predictor(args: argparse.Namespace) -> None:
    """Fit one GP-NAS predictor per task from the space's accuracy table and save it as JSON
    (training set + hyper-parameters)."""
    from ufo_nas.accuracy import (
        AccuracyTable,
        accuracy_table_path,
        fit_task_predictors,
        predictor_path,
    )
    from ufo_nas.fileio import check_writable

    space = load_space(args.space)
    tasks = space.select_tasks(args.task)
    table_path = Path(args.table) if args.table else accuracy_table_path(space)
    if not table_path.is_file():
        raise UfoError(f"no accuracy table at {table_path}; run `ufo eval` first")
    out_dir = Path(args.out) if args.out else None
    targets = {t: (out_dir / f"{t}.json" if out_dir else predictor_path(space, t)) for t in tasks}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not args.overwrite:
        raise UfoError(f"{existing[0]} already exists; pass --overwrite to replace it")
    for folder in {p.parent for p in targets.values()}:
        check_writable(folder)
    models = fit_task_predictors(AccuracyTable(table_path, space), tasks, share=args.share)
    for task, model in models.items():
        model.save(targets[task], overwrite=args.overwrite)
        print(
            f"{task}: {len(model.archs)} subnets, noise std {model.noise_std:.3f}; "
            f"target: {model.target}; wrote {targets[task]}"
        )


def cmd_predict(args: argparse.Namespace) -> None:
    """Print the GP-NAS predicted score (higher is better) and its standard deviation for
    each arch."""
    from ufo_nas.accuracy import GPNAS, load_task_predictor
    from ufo_nas.cvpr22 import parse_arch

    space = load_space(args.space)
    task = space.spec.task(args.task).name
    model = (
        GPNAS.load(args.predictor, space) if args.predictor else load_task_predictor(space, task)
    )
    archs = [parse_arch(space, text) for text in args.arch]
    mean, std = model.predict(archs)
    print(f"task {task}; score: {model.target}")
    for arch, m, s in zip(archs, mean, std):
        print(f"{m:8.4f} +- {s:.4f}  {arch}")
