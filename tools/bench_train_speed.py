"""Training speed: the supernet's overhead over plain timm models doing the same work.

Same process, same batch (96 images of 64x64, one CosFace head, AdamW), rounds interleaved,
median of each: a task-stage step of the largest `ufo_vit_tiny` subnet (shared paths) against
timm's VisionTransformer of that size, and a chip-stage sandwich step (largest, smallest and
one random subnet) against the same three subnets as static timm layers (`extract`). Goal:
the supernet's overhead stays under 20%. Writes tools/results/bench_train_speed.md.

    python tools/bench_train_speed.py [--rounds 9] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from timm.models import VisionTransformer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results  # noqa: E402

from ufo_nas.space import load_space  # noqa: E402
from ufo_nas.supernet import SuperViT, extract  # noqa: E402
from ufo_nas.train.heads import TaskHead  # noqa: E402
from ufo_nas.train.recipe import TaskRecipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BATCH = 96


def shared_paths(space, genes: np.ndarray):
    genes = genes.copy()
    for k, (name, _) in enumerate(space.variables):
        if name.startswith("path."):
            genes[k] = 0
    return space.decode(genes)


def step_fn(forward: Callable[[torch.Tensor], list[torch.Tensor]], params, head) -> Callable:
    """One optimiser step: every output through the CosFace head, backward, AdamW."""
    optimizer = torch.optim.AdamW([*params, *head.parameters()], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH, 3, 64, 64, generator=generator)
    labels = torch.randint(0, 40, (BATCH,), generator=generator)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        for embedding in forward(images):
            head(embedding, labels).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    space = load_space("ufo_vit_tiny")
    spec = space.spec
    supernet = SuperViT(spec).train()
    largest = shared_paths(space, space.cardinalities - 1)
    smallest = shared_paths(space, np.zeros(space.num_genes, dtype=np.int64))
    middle = shared_paths(space, space.sample_genes(np.random.default_rng(0), 1)[0])
    sandwich = [largest, smallest, middle]
    recipe = TaskRecipe("face", "cosface", margin=0.3, scale=50.0, batch_size=BATCH)
    head = TaskHead(recipe, spec.task("face").embed_dim, 40, classify=False)

    def super_forward(archs):
        return lambda x: [supernet(x, arch, "face") for arch in archs]

    vit = VisionTransformer(
        img_size=spec.image_size,
        patch_size=spec.patch_size,
        embed_dim=spec.embed_dim,
        depth=largest.depth,
        num_heads=max(largest.num_heads),
        mlp_ratio=max(largest.mlp_ratio),
        qkv_bias=spec.qkv_bias,
        num_classes=spec.task("face").embed_dim,
    ).train()
    static = [extract(supernet, arch, "face").train() for arch in sandwich]
    for subnet in static:
        subnet.requires_grad_(True)
    runs = {
        "task stage, supernet": step_fn(super_forward([largest]), supernet.parameters(), head),
        "task stage, timm ViT": step_fn(lambda x: [vit(x)], vit.parameters(), head),
        "chip stage, supernet": step_fn(super_forward(sandwich), supernet.parameters(), head),
        "chip stage, static timm subnets": step_fn(
            lambda x: [m(x) for m in static], [p for m in static for p in m.parameters()], head
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for step in runs.values():  # warm-up
        step()
    for _ in range(args.rounds):
        for name, step in runs.items():
            began = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - began)
    median = {name: statistics.median(t) for name, t in times.items()}
    images = {name: BATCH * (3 if name.startswith("chip") else 1) for name in runs}
    rows = [
        f"| {name} | {median[name] * 1000:.0f} | {images[name] / median[name]:.0f} |"
        for name in runs
    ]
    task_over = median["task stage, supernet"] / median["task stage, timm ViT"] - 1
    chip_over = median["chip stage, supernet"] / median["chip stage, static timm subnets"] - 1
    lines = [
        "# Training speed: supernet against plain timm models, same work",
        "",
        f"`python tools/bench_train_speed.py --rounds {args.rounds} --threads {args.threads}`",
        f"(batch {BATCH} images 64x64, CosFace head, AdamW step; median of {args.rounds} "
        "interleaved rounds, one process).",
        "",
        f"Archs: largest `{largest}`, smallest `{smallest}`, random `{middle}`.",
        "",
        "| step | ms | images/s |",
        "|---|---|---|",
        *rows,
        "",
        f"Overhead of the supernet: task stage {task_over:+.1%}, chip stage {chip_over:+.1%} "
        "(goal: under +20%).",
        "",
    ]
    write_results(lines, ROOT / "tools" / "results" / "bench_train_speed.md")


if __name__ == "__main__":
    main()
