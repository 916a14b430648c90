"""The UFO claim at CPU scale: a subnet extracted from the multi-task supernet (no fine-tuning)
against the same arch trained on one task alone, with as many of that task's images seen.

For the smallest, a middle and the largest arch of ufo_vit_tiny (each task on its mix path,
as both stages train it), per task:
* extracted: the arch cut out of the trained supernet (default: the shipped one);
* alone: `ufo train` of a one-task recipe that differs from the shipped one only in its
  task list and in `stages.task.arch` (that arch, every step), for as many steps as the
  supernet run had in both stages (each step saw one batch of every task), chip stage off.
Both are scored by `ufo eval`'s code on the task's validation split. Parameters are those
of the extracted module (cost.CostModel). Then one trunk serving all three tasks against
three single-task models: total parameters and each task's accuracy.
Writes tools/results/bench_ufo_claim.md; the single-task runs stay in --runs (reused).

    python tools/bench_ufo_claim.py [--supernet PATH] [--runs runs/claim] [--threads 1]
    python tools/bench_ufo_claim.py --train-only   # the single-task runs only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results  # noqa: E402

from ufo_nas.checkpoint import load_supernet  # noqa: E402
from ufo_nas.cost import CostModel  # noqa: E402
from ufo_nas.data import PRIMARY_METRIC, load_task_data  # noqa: E402
from ufo_nas.evaluate import evaluate_archs  # noqa: E402
from ufo_nas.space import Arch, SearchSpace  # noqa: E402
from ufo_nas.train import load_recipe  # noqa: E402
from ufo_nas.train.stages import path_genes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "ufo_vit_tiny.yaml"


def sized_archs(space: SearchSpace) -> dict[str, Arch]:
    """Smallest, middle (every gene at its middle choice) and largest; mix paths."""
    top = space.cardinalities - 1
    genes = {"smallest": top * 0, "middle": top // 2, "largest": top}
    return {k: space.decode(path_genes(space, g, "router", None)) for k, g in genes.items()}


def alone_recipe(task: str, arch: Arch, steps: int, folder: Path) -> Path:
    """The shipped recipe with one task and a fixed-arch task stage of `steps` steps."""
    data = yaml.safe_load(RECIPE.read_text())
    data["tasks"] = {task: data["tasks"][task]}
    data["stages"] = {"task": {"steps": steps, "arch": arch.to_string()}, "chip": {"steps": 0}}
    data["validate_every"] = data["checkpoint_every"] = steps
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{task}-{arch.depth}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def train_alone(recipe: Path, out: Path, threads: int) -> float:
    """Run `ufo train` into `out` unless it already holds a finished run; its seconds."""
    done = out / "supernet.safetensors"
    stamp = out / "seconds.txt"
    if done.exists() and stamp.exists():
        return float(stamp.read_text())
    began = time.perf_counter()
    command = [sys.executable, "-m", "ufo_nas", "train", "--recipe", str(recipe), "--out",
               str(out), "--threads", str(threads)]  # fmt: skip
    if out.exists():
        command.append("--resume")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"ufo train failed for {recipe}:\n{result.stderr[-2000:]}")
    seconds = time.perf_counter() - began
    stamp.write_text(f"{seconds:.1f}")
    return seconds


def score(checkpoint: Path, arch: Arch, task: str, space: SearchSpace) -> float:
    data = load_task_data(space.spec, task, "val")
    [result] = evaluate_archs(load_supernet(checkpoint).float(), [arch], task, data)
    return float(result.metrics[PRIMARY_METRIC[space.spec.task(task).kind]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--supernet", default=str(ROOT / "supernets" / "ufo_vit_tiny.safetensors"))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "claim"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-only", action="store_true", help="only the single-task runs")
    args = parser.parse_args()
    recipe, space = load_recipe(RECIPE)
    steps = recipe.task_stage.steps + recipe.chip_stage.steps
    tasks = recipe.task_names
    archs = sized_archs(space)
    cost = CostModel(space)
    runs = Path(args.runs)
    seconds = {
        (task, role): train_alone(
            alone_recipe(task, arch, steps, runs), runs / f"{task}-{role}", args.threads
        )
        for task in tasks
        for role, arch in archs.items()
    }
    if args.train_only:
        return
    rows, table = [], {}
    for task in tasks:
        metric = PRIMARY_METRIC[space.spec.task(task).kind]
        for role, arch in archs.items():
            out = runs / f"{task}-{role}"
            extracted = score(Path(args.supernet), arch, task, space)
            alone = score(out / "supernet.safetensors", arch, task, space)
            table[task, role] = (extracted, alone)
            params = int(cost.params([arch], task)[0])
            rows.append(
                f"| {task} | {metric} | {role} | {params / 1e6:.3f} | {extracted:.4f} | "
                f"{alone:.4f} | {extracted - alone:+.4f} | {seconds[task, role]:.0f} |"
            )
            print(rows[-1], flush=True)
    trunk = []
    for role, arch in archs.items():
        shared = int(cost.params([arch], list(tasks))[0])
        separate = sum(int(cost.params([arch], t)[0]) for t in tasks)
        accs = " / ".join(f"{table[t, role][0]:.3f} vs {table[t, role][1]:.3f}" for t in tasks)
        trunk.append(
            f"| {role} | {shared / 1e6:.3f} | {separate / 1e6:.3f} | {shared / separate:.2f} | "
            f"{accs} |"
        )
    wins = sum(e >= a for e, a in table.values())
    lines = [
        "# The UFO claim at CPU scale: extracted from the supernet vs trained alone",
        "",
        "`python tools/bench_ufo_claim.py` (2-core CPU). Extracted: the arch cut out of "
        f"`{os.path.relpath(args.supernet, ROOT)}` "
        f"(both stages of `recipes/ufo_vit_tiny.yaml`: {recipe.task_stage.steps} task-stage + "
        f"{recipe.chip_stage.steps} chip-stage steps, one batch of every task per step), no "
        f"fine-tuning. Alone: the same arch trained by `ufo train` on that task only for "
        f"{steps} steps of the same batches (same images seen, same optimiser and schedule, "
        "`stages.task.arch`). Every task on its mix path; scored on the validation split by "
        "`ufo eval`'s code; one training seed each.",
        "",
        "| task | metric | arch | params (M) | extracted | alone | extracted - alone | "
        "alone train s |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Extracted >= alone in {wins} of {len(table)} (task, arch) pairs.",
        "",
        "One trunk serving all tasks against one model per task (same arch):",
        "",
        f"| arch | one trunk, params (M) | {len(tasks)} models, params (M) | ratio | "
        f"{' / '.join(tasks)}: extracted vs alone |",
        "|---|---|---|---|---|",
        *trunk,
        "",
        "Archs: " + "; ".join(f"{k} `{space.short_string(a, tasks)}`" for k, a in archs.items()),
        "",
    ]
    write_results(lines, ROOT / "tools" / "results" / "bench_ufo_claim.md")


if __name__ == "__main__":
    main()
