"""The `ufo` command: thin subcommands that parse, call the library and print."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ufo_nas.backends import EXPORT_FORMATS
from ufo_nas.errors import UfoError
from ufo_nas.space import Arch, SearchSpace, load_space


def _tasks(space: SearchSpace, text: str | None) -> tuple[str, ...]:
    if not text:
        return space.tasks
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    for name in names:
        space.spec.task(name)
    return names


def _arch(space: SearchSpace, text: str) -> Arch:
    from ufo_nas.cvpr22 import CVPR22_LENGTH, decode_cvpr22

    if text == "largest":
        return space.largest()
    if text == "smallest":
        return space.smallest()
    if len(text) == CVPR22_LENGTH and text[0] in "jkl" and text[1:].isdigit():
        return decode_cvpr22(space, text)
    return space.parse(text)


def _millions(n: float) -> str:
    return f"{n / 1e6:,.2f}M"


def cmd_space(args: argparse.Namespace) -> None:
    from ufo_nas.cost import CostModel

    space = load_space(args.space)
    s, cost = space.spec, CostModel(space)
    print(f"space {s.name}  ({s.source})")
    print(
        f"  input {s.in_chans}x{s.image_size}x{s.image_size}, patch {s.patch_size}, "
        f"embed {s.embed_dim}, head dim {s.head_dim}, {s.num_tokens} tokens"
    )
    print(f"  depth choices {list(s.depths)}")
    for i in range(space.layers):
        heads = ",".join(map(str, s.num_heads[i]))
        ratios = ",".join(f"{r:g}" for r in s.mlp_ratios[i])
        print(f"  layer {i:2d}: heads {{{heads}}}  mlp ratio {{{ratios}}}")
    print(f"  {space.num_genes} genes; {space.size():,} distinct subnets ({space.size():.3e})")
    ends = [space.smallest(), space.largest()]
    for task in s.tasks:
        params = cost.params(ends, task.name)
        macs = cost.macs(ends, task.name)
        print(
            f"  task {task.name:<10} {task.kind:<18} embed {task.embed_dim:<4} "
            f"params {_millions(params[0])}..{_millions(params[1])}  "
            f"MACs {macs[0] / 1e9:.2f}G..{macs[1] / 1e9:.2f}G"
        )


def cmd_sample(args: argparse.Namespace) -> None:
    from ufo_nas.cost import CostModel

    space = load_space(args.space)
    tasks = _tasks(space, args.task)
    genes = space.sample_genes(np.random.default_rng(args.seed), args.n)
    cost = CostModel(space)
    params, macs = cost.params(genes, tasks), cost.macs(genes, tasks)
    print(f"{'params':>10} {'MACs':>8}  arch (tasks: {','.join(tasks)})")
    for row, p, m in zip(genes, params, macs):
        print(f"{_millions(p):>10} {m / 1e9:>7.3f}G  {space.decode(row)}")


def cmd_extract(args: argparse.Namespace) -> None:
    import torch

    from ufo_nas.checkpoint import load_supernet, load_timm_checkpoint, save_subnet
    from ufo_nas.onnx_io import export_onnx
    from ufo_nas.supernet import SuperViT, extract

    space = load_space(args.space)
    tasks = _tasks(space, args.task)
    arch = _arch(space, args.arch)
    out = Path(args.out)
    targets = [out / "subnet.safetensors", out / "subnet.onnx"]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise UfoError(f"{existing[0]} already exists; choose another --out folder")
    if args.checkpoint:
        supernet = load_supernet(args.checkpoint, space)
    else:
        supernet = SuperViT(space.spec)
        if args.timm_checkpoint:
            load_timm_checkpoint(supernet, args.timm_checkpoint)
        else:
            print("warning: no --checkpoint: the weights are untrained (fine for latency trials)")
    subnet = extract(supernet.eval(), arch, tasks)
    save_subnet(subnet, targets[0])
    export_onnx(subnet, targets[1], opset=args.opset)
    images = torch.randn(2, space.spec.in_chans, space.spec.image_size, space.spec.image_size)
    diffs = _onnx_max_abs_diff(targets[1], subnet, images)
    print(f"arch  {arch}")
    print(
        f"tasks {', '.join(tasks)}; params {_millions(sum(p.numel() for p in subnet.parameters()))}"
    )
    for path in targets:
        print(f"wrote {path}")
    for task, diff in zip(tasks, diffs):
        print(f"ONNX Runtime vs PyTorch, task {task}: max abs difference {diff:.2e}")


def cmd_eval(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from ufo_nas.accuracy import AccuracyTable, accuracy_table_path
    from ufo_nas.checkpoint import load_supernet
    from ufo_nas.data import load_task_data
    from ufo_nas.evaluate import choose_archs, evaluate_archs, record_of

    space = load_space(args.space)
    task = space.spec.task(args.task)
    supernet = load_supernet(args.checkpoint, space)
    data = load_task_data(space.spec, task.name, split=args.split)
    table_path = Path(args.table) if args.table else accuracy_table_path(space)
    table = AccuracyTable(table_path, space)
    benchmark = data.name
    archs = choose_archs(space, table, task.name, benchmark, args.n, args.sampler, args.seed)
    done = len(table.evaluated(task.name, benchmark))
    print(
        f"{task.name} ({task.kind}) on {benchmark}: {len(data)} images; {done} subnets already "
        f"in {table_path}; evaluating {len(archs)} more ({args.sampler} sampling)"
    )
    source = f"ufo eval --checkpoint {args.checkpoint}"
    results = evaluate_archs(supernet, archs, task.name, data, args.batch_size)
    for result in tqdm(results, total=len(archs), desc="subnets", unit="subnet"):
        table.append([record_of(result, task.name, task.kind, benchmark, source)])
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
        tqdm.write(f"{metrics}  {result.arch}")


def cmd_fit_predictor(args: argparse.Namespace) -> None:
    from ufo_nas.accuracy import (
        AccuracyTable,
        accuracy_table_path,
        fit_task_predictors,
        predictor_path,
    )

    space = load_space(args.space)
    tasks = _tasks(space, args.task)
    table_path = Path(args.table) if args.table else accuracy_table_path(space)
    if not table_path.is_file():
        raise UfoError(f"no accuracy table at {table_path}; run `ufo eval` first")
    out_dir = Path(args.out) if args.out else None
    targets = {t: (out_dir / f"{t}.json" if out_dir else predictor_path(space, t)) for t in tasks}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not args.overwrite:
        raise UfoError(f"{existing[0]} already exists; pass --overwrite to replace it")
    models = fit_task_predictors(AccuracyTable(table_path, space), tasks, share=args.share)
    for task, model in models.items():
        model.save(targets[task], overwrite=args.overwrite)
        print(
            f"{task}: {len(model.archs)} subnets, noise std {model.noise_std:.3f}; "
            f"target: {model.target}; wrote {targets[task]}"
        )


def cmd_predict(args: argparse.Namespace) -> None:
    from ufo_nas.accuracy import GPNAS, load_task_predictor

    space = load_space(args.space)
    task = space.spec.task(args.task).name
    model = (
        GPNAS.load(args.predictor, space) if args.predictor else load_task_predictor(space, task)
    )
    archs = [_arch(space, text) for text in args.arch]
    mean, std = model.predict(archs)
    print(f"task {task}; score: {model.target}")
    for arch, m, s in zip(archs, mean, std):
        print(f"{m:8.4f} +- {s:.4f}  {arch}")


def cmd_latency(args: argparse.Namespace) -> None:
    from ufo_nas.latency.predictor import latency_predictor

    space = load_space(args.space)
    tasks = _tasks(space, args.task)
    archs = [_arch(space, text) for text in args.arch]
    for device in args.device.split(","):
        predictor = latency_predictor(space, device)
        print(f"{device}: {predictor.source}")
        for arch, ms in zip(archs, predictor.latency_ms(archs, tasks)):
            print(f"{ms:10.3f} ms{'' if predictor.measured else ' (estimate)'}  {arch}")


def cmd_profile(args: argparse.Namespace) -> None:
    import yaml
    from tqdm import tqdm

    from ufo_nas.backends import get_backend
    from ufo_nas.fileio import write_atomic
    from ufo_nas.hardware import load_profile, new_host_profile
    from ufo_nas.latency.measure import ProfileSettings, default_work_dir, plan, run_profile
    from ufo_nas.latency.table import LatencyTable, table_path
    from ufo_nas.paths import project_root

    if args.new_profile:
        if not args.backend:
            raise UfoError("--new-profile needs --backend (torch, onnxruntime, openvino, tvm)")
        profile = new_host_profile(args.new_profile, args.backend, args.threads)
        path = project_root() / "hardware_profiles" / f"{profile.name}.yaml"
        text = yaml.safe_dump(profile.to_dict(), sort_keys=False)
        write_atomic(path, lambda tmp: tmp.write_text(text), overwrite=False)
        print(
            f"wrote {path}: peak {profile.peak_tflops} TFLOP/s, {profile.memory_gbps} GB/s "
            "(measured here)"
        )
        if not args.device:
            return
    if not args.device:
        raise UfoError("--device is required (a hardware profile name or YAML path)")
    profile = load_profile(args.device)
    space = load_space(args.space)
    out = Path(args.out) if args.out else table_path(profile.name, space)
    settings = ProfileSettings(
        validation_subnets=args.validation,
        chunk=args.chunk,
        rounds=args.rounds,
        calls_per_round=args.calls,
        copies=args.copies,
        seed=args.seed,
    )
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
        return
    get_backend(profile.backend)(profile.target())  # fails here, in one line, if it cannot run
    work_dir = Path(args.work_dir) if args.work_dir else default_work_dir(profile.name, space)
    total = len(todo.operators) + len(todo.validation)
    with tqdm(total=total, unit="model", desc="profiling") as bar:
        table = run_profile(
            space,
            profile,
            out,
            work_dir,
            settings,
            progress=lambda what, n: (bar.set_postfix_str(what), bar.update(n)),
        )
    m = table.metrics
    if m:
        print(
            f"calibration {table.calibration['model']}: a={table.calibration['a']:.4f} "
            f"b={table.calibration['b']:.4f} c={table.calibration['c']:.4f}; on "
            f"{m['validation_subnets']} subnets mean error {m['mean_abs_pct_error']:.2f}%, "
            f"{100 * m['within_5pct']:.0f}% within 5%, {100 * m['within_10pct']:.0f}% within 10%"
        )
    print(f"wrote {out}")


def _count(text: str) -> float:
    """'25M', '300k', '1.2G' or a plain number."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:].lower(), 1.0)
    number = text[:-1] if scale != 1.0 else text
    try:
        return float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a count; write e.g. 25M, 300k or 25000000"
        ) from None


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _search_out(args: argparse.Namespace, devices: list[str], tasks: list[str]) -> Path:
    """--out as given (must not hold results unless --overwrite), else the first free
    runs/search/<space>-<devices>-<tasks>[-N]."""
    from ufo_nas.search.report import CSV_NAME, JSON_NAME

    names = (JSON_NAME, CSV_NAME, "pareto.png", "convergence.png")
    if args.out:
        out = Path(args.out)
        held = [out / n for n in names if (out / n).exists()]
        if held and not args.overwrite:
            raise UfoError(
                f"{out} already holds search results ({held[0].name}); choose another --out "
                "or pass --overwrite"
            )
        return out
    stem = f"{Path(args.space).stem}-{'+'.join(devices)}-{'+'.join(tasks)}"
    base = Path("runs") / "search" / stem
    out, n = base, 1
    while any((out / name).exists() for name in names):
        n += 1
        out = base.with_name(f"{stem}-{n}")
    return out


def cmd_search(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from ufo_nas.plot import plot_convergence, plot_fronts
    from ufo_nas.search.engine import SearchSettings
    from ufo_nas.search.problem import Budgets
    from ufo_nas.search.run import prepare, search_devices

    space = load_space(args.space)
    tasks = list(_tasks(space, args.task))
    devices = _names(args.device)
    if not devices:
        raise UfoError("--device needs at least one hardware profile name")
    out = _search_out(args, devices, tasks)
    settings = SearchSettings(
        population=args.population, generations=args.generations, seed=args.seed
    )
    budgets = Budgets(latency_ms=args.latency_ms, params=args.max_params)
    problems = prepare(space, tasks, devices, _names(args.minimise), budgets, args.risk)
    with tqdm(total=settings.generations * len(devices), unit="gen", desc="searching") as bar:
        report = search_devices(
            problems,
            settings,
            progress=lambda device, gen, n: (
                bar.set_postfix_str(f"{device}: {n} subnets"),
                bar.update(1),
            ),
        )
    print(
        f"space {report.space}, tasks {', '.join(report.tasks)} on one trunk; objectives "
        f"{', '.join(report.objectives)}"
        + (f" (score = mean - {args.risk:g} std)" if args.risk else "")
    )
    for task, target in report.score_targets.items():
        print(f"  {task} score: {target}")
    for front in report.fronts:
        print(
            f"\n{front.device}: latency {'from ' if front.latency_measured else ''}"
            f"{front.latency_source}\n  {front.evaluations} "
            f"subnets evaluated in {front.seconds:.1f} s ({front.generations} generations of "
            f"{settings.population}); {len(front.rows)} Pareto-optimal"
        )
        print(report.format_front(front, limit=args.show))
    written = report.write(out, overwrite=args.overwrite)
    written.append(plot_fronts([report], out / "pareto.png", overwrite=args.overwrite))
    written.append(plot_convergence([report], out / "convergence.png", overwrite=args.overwrite))
    print(f"\nwrote {', '.join(str(p) for p in written)}")


def cmd_plot(args: argparse.Namespace) -> None:
    from ufo_nas import plot
    from ufo_nas.search.report import SearchReport

    if args.what == "latency":
        from ufo_nas.latency.predictor import latency_predictor

        if not args.device:
            raise UfoError("ufo plot latency needs --device (a profile with a measured table)")
        space = load_space(args.space)
        out = args.out or f"latency-{args.device}-{space.name}.png"
        path = plot.plot_latency_validation(
            latency_predictor(space, args.device), out, overwrite=args.overwrite
        )
    else:
        if not args.results:
            raise UfoError(f"ufo plot {args.what} needs search results (folders or pareto.json)")
        reports = [SearchReport.load(r) for r in args.results]
        draw = plot.plot_fronts if args.what == "fronts" else plot.plot_convergence
        path = draw(reports, args.out or f"{args.what}.png", overwrite=args.overwrite)
    print(f"wrote {path}")


def _export_subject(
    args: argparse.Namespace,
) -> tuple[SearchSpace, Arch, tuple[str, ...], str | None]:
    """(space, arch, tasks, device of the Pareto front) from --pareto/--row or --arch."""
    from ufo_nas.search.report import SearchReport

    if args.pareto is None:
        if args.row is not None:
            raise UfoError("--row needs --pareto (a ufo-search result)")
        space = load_space(args.space)
        return space, _arch(space, args.arch), _tasks(space, args.task), None
    if args.arch:
        raise UfoError("give either --pareto with --row, or --arch, not both")
    if args.row is None:
        raise UfoError("--pareto needs --row N (the index column of pareto.csv)")
    report = SearchReport.load(args.pareto)
    space = load_space(report.space)
    if space.spec.fingerprint() != report.space_fingerprint:
        raise UfoError(
            f"{args.pareto} was searched on another version of space '{report.space}' "
            f"(fingerprint {report.space_fingerprint}, now {space.spec.fingerprint()})"
        )
    if args.device:
        front = report.front(args.device)
    elif len(report.fronts) == 1:
        front = report.fronts[0]
    else:
        devices = ", ".join(f.device for f in report.fronts)
        raise UfoError(f"{args.pareto} holds fronts for {devices}; pick one with --device")
    if not 0 <= args.row < len(front.rows):
        raise UfoError(
            f"row {args.row} is out of range: the {front.device} front in {args.pareto} has "
            f"{len(front.rows)} subnets (rows 0-{len(front.rows) - 1})"
        )
    return space, space.parse(front.rows[args.row].arch), tuple(report.tasks), front.device


def cmd_export(args: argparse.Namespace) -> None:
    import torch

    from ufo_nas.checkpoint import load_supernet
    from ufo_nas.data import read_image_folder
    from ufo_nas.export import MANIFEST, export_subnet, export_target
    from ufo_nas.fileio import check_empty_folder
    from ufo_nas.hardware import load_profile
    from ufo_nas.supernet import SuperViT

    space, arch, tasks, front_device = _export_subject(args)
    device = args.device or (front_device if not args.backend else None)
    where = export_target(
        load_profile(device) if device else None, args.backend, args.precision, args.threads
    )
    out = check_empty_folder(args.out)  # before loading weights: fail fast
    if args.checkpoint:
        supernet = load_supernet(args.checkpoint, space)
        weights = {"checkpoint": str(args.checkpoint), "trained": True}
    else:
        print(
            "warning: no --checkpoint: exporting from a freshly initialised supernet "
            "(seed 0); the weights are untrained, fine for latency trials only",
            file=sys.stderr,
        )
        torch.manual_seed(0)
        supernet = SuperViT(space.spec)
        weights = {"checkpoint": None, "trained": False, "init_seed": 0}
    calibration = None
    if args.calibration:
        calibration = read_image_folder(args.calibration, space.spec).numpy()
    manifest = export_subnet(
        supernet,
        space,
        arch,
        tasks,
        where,
        out,
        weights,
        simplify=args.simplify,
        calibration=calibration,
        time_it=not args.no_time,
        opset=args.opset,
        progress=lambda what: print(f"... {what}", file=sys.stderr),
    )
    art, check = manifest["artefact"], manifest["verification"]
    print(f"exported {arch} ({', '.join(tasks)}) as {art['format']} {art['precision']} -> {out}")
    for f in art["files"]:
        print(f"  {f['path']}  {f['bytes'] / 1e6:.2f} MB")
    if art["runs_here"] != "as built":
        print(f"  note: {art['runs_here']}")
    print(
        f"verification against PyTorch on {check['images']} images ({check['inputs']}), "
        f"cosine >= {check['min_cosine_required']}: passed"
    )
    for task, o in check["outputs"].items():
        print(f"  {task}: min cosine {o['min_cosine']:.6f}, max abs diff {o['max_abs_diff']:.2e}")
    t = manifest["latency"]
    if t:
        line = (
            f"latency (batch {t['batch']}, p25 of {t['rounds']} rounds): {t['measured_ms']:.3f} ms"
        )
        if "scaled_ms" in t:
            line += f" ({t['scaled_ms']:.3f} ms on the table's scale)"
        print(line)
        if "predicted_ms" in t:
            print(
                f"  predicted {t['predicted_ms']:.3f} ms from the {t['predicted_from']}: "
                f"error {t['prediction_error_pct']:+.1f}%"
            )
        else:
            print("  no prediction: the target is not a hardware profile's measured setup")
        print(f"  torch eager {t['torch_eager_ms']:.3f} ms: {t['speedup_vs_torch']:.2f}x")
    print(f"manifest {out / MANIFEST}")


def _onnx_max_abs_diff(path: Path, subnet, images) -> list[float]:
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    with torch.no_grad():
        want = subnet(images)
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    return [float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ufo",
        description="ufo-nas: hardware-aware search for UFO multi-task vision transformers.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    space_help = "a shipped space name (ufo_vit_base, ufo_vit_tiny) or a YAML path"

    p = sub.add_parser(
        "space",
        help="describe a search space",
        description="Describe a space: "
        "per-layer choices, exact subnet count, params and MACs range per task.",
    )
    p.add_argument("space", help=space_help)
    p.set_defaults(func=cmd_space)

    p = sub.add_parser(
        "sample",
        help="sample random subnets",
        description="Print random subnets "
        "of a space with their params and MACs (analytic, equal to the extracted "
        "module's counts).",
    )
    p.add_argument("space", help=space_help)
    p.add_argument("-n", type=int, default=5, help="how many (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--task", help="comma-separated tasks the subnet serves (default: all)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "extract",
        help="extract a subnet and export it to ONNX",
        description="Copy one subnet's weights out of the supernet into a "
        "standalone module, save it (safetensors) and export it to ONNX, then "
        "check ONNX Runtime reproduces PyTorch.",
    )
    p.add_argument("space", help=space_help)
    p.add_argument(
        "--arch",
        required=True,
        help="an arch string (see `ufo sample`), a CVPR'22 "
        "competition string, 'largest' or 'smallest'",
    )
    p.add_argument("--task", help="comma-separated tasks on one trunk (default: all)")
    p.add_argument("--out", required=True, help="output folder (must not hold a subnet already)")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", help="a ufo-nas supernet checkpoint (.safetensors)")
    weights.add_argument("--timm-checkpoint", help="a timm ViT checkpoint to initialise the trunk")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, >= 17 (default 18)")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser(
        "eval",
        help="evaluate subnets of a supernet into the accuracy table",
        description="Evaluate N subnets of a trained supernet on a task's "
        "validation data with the task's metric (face verification accuracy, "
        "re-identification mAP, retrieval Recall@1, classification top-1) and "
        "append each result to the space's accuracy table as soon as it is "
        "measured; rerunning an interrupted command evaluates only what is "
        "missing.",
    )
    p.add_argument("space", help=space_help)
    p.add_argument("--task", required=True, help="the task to evaluate")
    p.add_argument("--checkpoint", required=True, help="a ufo-nas supernet checkpoint")
    p.add_argument(
        "-n",
        type=int,
        default=20,
        help="evaluate until the table holds this many "
        "subnets of the task on its data (default 20)",
    )
    p.add_argument(
        "--sampler",
        choices=["uniform", "active"],
        default="uniform",
        help="uniform random, or GP-NAS information-based choice (default uniform)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--split", default="val", help="data split: val, train or all (default val)")
    p.add_argument(
        "--table", help="accuracy table CSV (default: <space>.accuracy.csv beside the space file)"
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per forward (default 64)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "fit-predictor",
        help="fit GP-NAS accuracy predictors from the table",
        description="Fit one GP-NAS predictor per task from the space's accuracy "
        "table and save it as JSON (training set + hyper-parameters).",
    )
    p.add_argument("space", help=space_help)
    p.add_argument("--task", help="comma-separated tasks (default: all)")
    p.add_argument(
        "--share",
        action="store_true",
        help="share strength: each task's model also uses the other tasks' models",
    )
    p.add_argument("--table", help="accuracy table CSV (default: beside the space file)")
    p.add_argument("--out", help="output folder (default: predictors/<space>/)")
    p.add_argument("--overwrite", action="store_true", help="replace existing predictor files")
    p.set_defaults(func=cmd_fit_predictor)

    p = sub.add_parser(
        "predict",
        help="predicted accuracy score of subnets",
        description="Print the GP-NAS predicted score (higher is better) and its "
        "standard deviation for each arch.",
    )
    p.add_argument("space", help=space_help)
    p.add_argument("--task", required=True, help="the task")
    p.add_argument(
        "--arch",
        required=True,
        nargs="+",
        help="arch strings, CVPR'22 competition strings, 'largest' or 'smallest'",
    )
    p.add_argument("--predictor", help="a predictor JSON (default: the shipped one)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "latency",
        help="predicted latency of subnets on devices",
        description="Predict end-to-end latency (ms) from the device's measured latency table "
        "(latency_tables/<device>/<space>.yaml), or, where none is measured, a roofline "
        "estimate from its hardware profile's peaks, labelled as such.",
    )
    p.add_argument("space", help=space_help)
    p.add_argument("--device", required=True, help="hardware profile name(s), comma-separated")
    p.add_argument("--task", help="task(s) served by one trunk, comma-separated (default: all)")
    p.add_argument("--arch", required=True, nargs="+", help="arch strings, 'largest' or 'smallest'")
    p.set_defaults(func=cmd_latency)

    p = sub.add_parser(
        "profile",
        help="measure a latency lookup table on this machine",
        description="Measure every distinct operator of a space on a device "
        "through its hardware profile's backend, then whole random subnets end "
        "to end, and fit a calibration; writes latency_tables/<device>/<space>"
        ".yaml. Timing interleaves rounds in one process and keeps a low "
        "quartile. An interrupted run resumes where it stopped.",
    )
    p.add_argument("--device", help="hardware profile: a name in hardware_profiles/ or a YAML")
    p.add_argument("--space", default="ufo_vit_base", help=space_help + " (default ufo_vit_base)")
    p.add_argument(
        "--validation",
        type=int,
        default=40,
        help="random subnets measured end to end for calibration (default 40)",
    )
    p.add_argument("--rounds", type=int, default=21, help="interleaved rounds (default 21)")
    p.add_argument("--calls", type=int, default=1, help="calls per model per round (default 1)")
    p.add_argument("--chunk", type=int, default=8, help="models timed together (default 8)")
    p.add_argument(
        "--copies",
        type=int,
        default=4,
        help="chained copies of each attention/FFN operator timed as one (default 4)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the validation subnets")
    p.add_argument("--out", help="table path (default latency_tables/<device>/<space>.yaml)")
    p.add_argument(
        "--work-dir",
        help="exported models and tuning databases "
        "(default ~/.cache/ufo-nas/profile/<device>/<space>)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be measured")
    p.add_argument(
        "--new-profile",
        metavar="NAME",
        help="first write hardware_profiles/NAME.yaml for this machine (peaks measured here)",
    )
    p.add_argument("--backend", help="backend of the new profile")
    p.add_argument("--threads", type=int, default=0, help="threads of the new profile")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser(
        "search",
        help="NSGA-II search for the Pareto-optimal subnets per task and device",
        description=textwrap.fill(
            "Search the space's subnets for the best trade-off between predicted task score "
            "(the shipped GP-NAS predictors) and latency on each device (its measured "
            "latency table, or a roofline estimate labelled as such), with NSGA-II. Writes "
            "the Pareto set as pareto.csv and pareto.json, pareto.png and convergence.png, "
            "and prints it. Several --task values search one subnet whose trunk serves them "
            "all; several --device values search each device and overlay the fronts.",
            80,
        ),
        epilog="examples:\n"
        "  ufo-search --device jetson --task face\n"
        "  ufo-search --device cpu-onnxruntime,cpu-openvino --task face,person --latency-ms 250\n"
        "  ufo-search --device rpi4 --task vehicle --max-params 60M --minimise latency,params",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", required=True, help="hardware profile name(s), comma-separated")
    p.add_argument("--task", required=True, help="task(s) served by one trunk, comma-separated")
    p.add_argument("--space", default="ufo_vit_base", help=space_help + " (default ufo_vit_base)")
    p.add_argument("--latency-ms", type=float, help="latency budget per image (ms)")
    p.add_argument("--max-params", type=_count, help="params budget, e.g. 40M")
    p.add_argument(
        "--minimise",
        default="latency",
        help="cost objective(s), comma-separated: latency, params, macs (default latency)",
    )
    p.add_argument(
        "--risk",
        type=float,
        default=0.0,
        help="optimise mean - RISK x std of the predicted score (default 0: the mean)",
    )
    p.add_argument("--population", type=int, default=64, help="NSGA-II population (default 64)")
    p.add_argument("--generations", type=int, default=100, help="generations (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--out",
        help="output folder (default: the first free runs/search/<space>-<device>-<task>[-N])",
    )
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument(
        "--show", type=int, default=20, help="Pareto rows printed per device (default 20)"
    )
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "plot",
        help="plot Pareto fronts, search convergence or a latency table check",
        description="fronts: predicted score against latency from one or more search "
        "results (overlaid: devices, task sets). convergence: hypervolume per generation. "
        "latency: a device's measured table, predicted against measured on its validation "
        "subnets.",
    )
    p.add_argument("what", choices=["fronts", "convergence", "latency"], help="which figure")
    p.add_argument("results", nargs="*", help="search result folders or pareto.json files")
    p.add_argument("--device", help="for latency: the hardware profile")
    p.add_argument("--space", default="ufo_vit_base", help="for latency: " + space_help)
    p.add_argument("--out", help="PNG path (default: <what>.png here)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser(
        "export",
        help="export a subnet as a deployable engine, verified and re-timed",
        description=textwrap.fill(
            "Export one subnet (a row of a ufo-search result, or an arch string) of a "
            "supernet checkpoint for a device: ONNX, an ONNX Runtime optimised model "
            "(int8: dynamic quantisation), OpenVINO IR (fp32, fp16, int8 with NNCF on "
            "--calibration images), a TVM library (MetaSchedule-tuned, reusing the profiling "
            "database) or a TensorRT plan. The artefact is loaded back, checked against "
            "PyTorch (cosine >= 0.999, int8 >= 0.98) and timed like ufo-profile, against "
            "the device table's prediction and torch eager; manifest.json records it all.",
            80,
        ),
        epilog="examples:\n"
        "  ufo-export --pareto runs/search/ufo_vit_base-cpu-openvino-face --row 5 --out m\n"
        "  ufo-export --space ufo_vit_tiny --arch smallest --task face --backend onnxruntime \\\n"
        "      --precision int8 --out tiny-int8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pareto", help="a ufo-search result (folder or pareto.json)")
    p.add_argument("--row", type=int, help="with --pareto: the row (index column of pareto.csv)")
    p.add_argument("--arch", help="instead of --pareto: an arch string, 'largest' or 'smallest'")
    p.add_argument("--space", default="ufo_vit_base", help="with --arch: " + space_help)
    p.add_argument("--task", help="with --arch: tasks on one trunk, comma-separated (default all)")
    p.add_argument("--checkpoint", help="supernet checkpoint (default: untrained, warned)")
    p.add_argument(
        "--device",
        help="hardware profile: its backend is the format, and its table gives the prediction "
        "(default with --pareto: the front's device)",
    )
    p.add_argument(
        "--backend", choices=EXPORT_FORMATS, help="instead of --device: a format, run here"
    )
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="override the precision")
    p.add_argument("--threads", type=int, default=0, help="override the threads")
    p.add_argument("--calibration", help="image folder for int8 post-training quantisation")
    p.add_argument("--simplify", action="store_true", help="constant-fold the ONNX graph first")
    p.add_argument("--no-time", action="store_true", help="skip re-timing")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, >= 17 (default 18)")
    p.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UfoError as exc:
        print(f"ufo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def profile_main() -> int:
    """The `ufo-profile` alias of `ufo profile`."""
    return main(["profile", *sys.argv[1:]])


def search_main() -> int:
    """The `ufo-search` alias of `ufo search`."""
    return main(["search", *sys.argv[1:]])


def export_main() -> int:
    """The `ufo-export` alias of `ufo export`."""
    return main(["export", *sys.argv[1:]])


def plot_main() -> int:
    """The `ufo-plot` alias of `ufo plot`."""
    return main(["plot", *sys.argv[1:]])


def eval_main() -> int:
    """The `ufo-eval` alias of `ufo eval`."""
    return main(["eval", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
