"""UFO's ablation: heterogeneous batches (every task in every step) against single-task
batches (one task per step, round robin), same images of every task seen, one run.

Trains the task stage of recipes/ufo_vit_tiny.yaml twice from the same seed: N steps with
all three tasks per step, and 3N steps with one task per step (so each task sees the same
images either way), then validates the largest subnet. Writes tools/results/bench_batches.md.

    python tools/bench_batches.py [--steps 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results  # noqa: E402

from ufo_nas.train.monitor import read_metrics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def train(recipe: dict, folder: Path, threads: int) -> float:
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    began = time.perf_counter()
    command = [sys.executable, "-m", "ufo_nas", "train", "--recipe", str(path)]
    command += ["--out", str(folder / "run"), "--threads", str(threads)]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="heterogeneous steps")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    base = yaml.safe_load((ROOT / "recipes" / "ufo_vit_tiny.yaml").read_text())
    base["stages"] = {"task": {"steps": args.steps}, "chip": {"steps": 0}}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, steps in (("heterogeneous", args.steps), ("round_robin", 3 * args.steps)):
            recipe = {**base, "batches": mode, "validate_every": steps, "checkpoint_every": steps}
            recipe["stages"] = {"task": {"steps": steps}, "chip": {"steps": 0}}
            recipe["warmup_steps"] = base["warmup_steps"] * steps // args.steps
            folder = Path(tmp) / mode
            folder.mkdir()
            seconds = train(recipe, folder, args.threads)
            val = [r for r in read_metrics(folder / "run" / "metrics.csv") if r.kind == "val"]
            results[mode, steps] = (seconds, {(r.task, r.subnet): r for r in val})
    tasks = sorted({task for _, rows in results.values() for task, _ in rows})
    header = (
        "| batches | steps | s | " + " | ".join(f"{t} largest | {t} smallest" for t in tasks) + " |"
    )
    lines = [
        "# Heterogeneous vs single-task batches (task stage, ufo_vit_tiny)",
        "",
        f"`python tools/bench_batches.py --steps {args.steps} --threads {args.threads}`: "
        "the shipped recipe's task stage, same seed, each task seeing the same images.",
        "",
        header,
        "|---|---|---|" + "---|---|" * len(tasks),
    ]
    for (mode, steps), (seconds, rows) in results.items():
        cells = [f"{rows[t, s].value:.4f}" for t in tasks for s in ("largest", "smallest")]
        lines.append(f"| {mode} | {steps} | {seconds:.0f} | " + " | ".join(cells) + " |")
    metrics = {t: next(r.metric for (task, _), r in results[next(iter(results))][1].items()
                       if task == t) for t in tasks}  # fmt: skip
    lines += ["", "Metrics: " + ", ".join(f"{t} {m}" for t, m in metrics.items()) + ".", ""]
    write_results(lines, ROOT / "tools" / "results" / "bench_batches.md")


if __name__ == "__main__":
    main()
