"""`ufo space`, `ufo sample`, `ufo extract`: what a space holds, and one subnet out of it."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ufo_nas.cli import args as shared
from ufo_nas.errors import UfoError
from ufo_nas.space import load_space, scientific


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `space`, `sample` and `extract`."""
    p = shared.add_command(subparsers, "space", cmd_space, "describe a search space")
    shared.add_space(p, legacy=True)

    p = shared.add_command(subparsers, "sample", cmd_sample, "sample random subnets")
    shared.add_space(p, legacy=True)
    shared.add_number(p, "-n", 5, "how many", shared.positive_int)
    shared.add_seed(p)
    shared.add_task(p)

    p = shared.add_command(
        subparsers, "extract", cmd_extract, "extract a subnet and export it to ONNX"
    )
    shared.add_space(p, legacy=True)
    shared.add_arch(p)
    shared.add_task(p)
    shared.add_out(p, "output folder (must not hold a subnet already)", required=True)
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", help="a ufo-nas supernet checkpoint (.safetensors)")
    weights.add_argument("--timm-checkpoint", help="a timm ViT checkpoint to initialise the trunk")
    shared.add_opset(p)


def _millions(n: float) -> str:
    return f"{n / 1e6:,.2f}M"


def cmd_space(args: argparse.Namespace) -> None:
    """Describe a space: per-layer choices, exact subnet count, params and MACs range per
    task."""
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
    size = space.size()
    exact = f"{size:,} " if size < 10**60 else ""
    print(f"  {space.num_genes} genes; {exact}distinct subnets ({scientific(size, 4)})")
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
    """Print random subnets of a space with their params and MACs (analytic, equal to the
    extracted module's counts)."""
    from ufo_nas.cost import CostModel

    space = load_space(args.space)
    tasks = space.select_tasks(args.task)
    genes = space.sample_genes(np.random.default_rng(args.seed), args.n)
    cost = CostModel(space)
    params, macs = cost.params(genes, tasks), cost.macs(genes, tasks)
    print(f"{'params':>10} {'MACs':>8}  arch (tasks: {','.join(tasks)})")
    for row, p, m in zip(genes, params, macs):
        print(f"{_millions(p):>10} {m / 1e9:>7.3f}G  {space.decode(row)}")


def cmd_extract(args: argparse.Namespace) -> None:
    """Copy one subnet's weights out of the supernet into a standalone module, save it
    (safetensors) and export it to ONNX, then check ONNX Runtime reproduces PyTorch."""
    from ufo_nas.checkpoint import load_supernet, load_timm_checkpoint, save_subnet
    from ufo_nas.cvpr22 import parse_arch
    from ufo_nas.export import verify_onnx
    from ufo_nas.latency.weights import trained_like_
    from ufo_nas.onnx_io import export_onnx
    from ufo_nas.supernet import SuperViT, extract

    space = load_space(args.space)
    tasks = space.select_tasks(args.task)
    arch = parse_arch(space, args.arch)
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
            trained_like_(supernet)  # timed as trained weights are (no exact 0 or 1)
            print("warning: no --checkpoint: the weights are untrained (fine for latency trials)")
    subnet = extract(supernet.eval(), arch, tasks)
    save_subnet(subnet, targets[0])
    export_onnx(subnet, targets[1], opset=args.opset)
    check = verify_onnx(targets[1], subnet)
    print(f"arch  {arch}")
    params = sum(p.numel() for p in subnet.parameters())
    print(f"tasks {', '.join(tasks)}; params {_millions(params)}")
    for path in targets:
        print(f"wrote {path}")
    for task, output in check["outputs"].items():
        print(
            f"ONNX Runtime vs PyTorch, task {task}: max abs difference {output['max_abs_diff']:.2e}"
        )
