"""Task-MoE on the shipped trained ufo_vit_tiny: what the router learnt, what each path is worth.

1. The router's weight on the task FFN (softmax of its logits, as a mix path runs at eval)
   per task and layer: tools/results/task_moe_router.png.
2. Shared vs task vs mix paths at equal arch: for the smallest, a middle and the largest
   arch, each task's validation metric with every layer on one path kind.
Writes tools/results/bench_task_moe.md.

    python tools/bench_task_moe.py [--checkpoint supernets/ufo_vit_tiny.safetensors]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results  # noqa: E402

from ufo_nas.checkpoint import load_supernet  # noqa: E402
from ufo_nas.data import PRIMARY_METRIC, load_task_data  # noqa: E402
from ufo_nas.evaluate import evaluate_archs  # noqa: E402
from ufo_nas.space import load_space  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("shared", "task", "mix")


def with_paths(space, genes: np.ndarray, path: str):
    """The arch of `genes` with every task on `path` at every layer."""
    genes = genes.copy()
    for k, (name, choices) in enumerate(space.variables):
        if name.startswith("path."):
            genes[k] = choices.index(path)
    return space.decode(genes)


def router_figure(weights: np.ndarray, tasks: tuple[str, ...]) -> Figure:
    fig = Figure(figsize=(1.1 * weights.shape[1] + 2, 0.6 * len(tasks) + 1.6), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(weights, vmin=0, vmax=1, cmap="coolwarm")
    for (i, j), w in np.ndenumerate(weights):
        ax.text(j, i, f"{w:.2f}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(weights.shape[1]), [f"layer {j}" for j in range(weights.shape[1])])
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_title("Task-MoE router: weight on the task's own FFN (0.5 = initial 50/50)")
    fig.colorbar(image, ax=ax, label="task FFN weight")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--checkpoint", default=str(ROOT / "supernets" / "ufo_vit_tiny.safetensors")
    )
    args = parser.parse_args()
    space = load_space("ufo_vit_tiny")
    supernet = load_supernet(args.checkpoint, space)
    tasks = space.spec.task_names
    with torch.no_grad():
        weights = np.stack(
            [block.router_logits.softmax(-1)[:, 1].numpy() for block in supernet.blocks], axis=1
        )
    figure = ROOT / "tools" / "results" / "task_moe_router.png"
    router_figure(weights, tasks).savefig(figure, dpi=110)
    middle = space.sample_genes(np.random.default_rng(0), 1)[0]
    archs = {
        "smallest": np.zeros(space.num_genes, dtype=np.int64),
        "middle": middle,
        "largest": space.cardinalities - 1,
    }
    rows = []
    for task in tasks:
        data = load_task_data(space.spec, task, "val")
        metric = PRIMARY_METRIC[space.spec.task(task).kind]
        for size, genes in archs.items():
            scores = []
            for path in PATHS:
                [result] = evaluate_archs(supernet, [with_paths(space, genes, path)], task, data)
                scores.append(f"{result.metrics[metric]:.4f}")
            rows.append(f"| {task} ({metric}) | {size} | " + " | ".join(scores) + " |")
    router_rows = [
        f"| {task} | " + " | ".join(f"{w:.3f}" for w in weights[i]) + " |"
        for i, task in enumerate(tasks)
    ]
    layers = weights.shape[1]
    lines = [
        "# Task-MoE on the trained ufo_vit_tiny",
        "",
        f"`python tools/bench_task_moe.py` on `{Path(args.checkpoint).relative_to(ROOT)}`.",
        "",
        "Router weight on the task's own FFN per layer (softmax of the learnt logits; the mix",
        "path runs `(1 - w) * shared + w * task` at eval), [plot](task_moe_router.png):",
        "",
        "| task | " + " | ".join(f"layer {j}" for j in range(layers)) + " |",
        "|---|" + "---|" * layers,
        *router_rows,
        "",
        "Validation metric with every layer on one path kind, same arch otherwise",
        f"(middle arch: `{space.decode(middle)}` before the paths are set):",
        "",
        "| task | arch | shared | task | mix |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]
    write_results(lines, ROOT / "tools" / "results" / "bench_task_moe.md")


if __name__ == "__main__":
    main()
