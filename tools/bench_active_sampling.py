"""Active vs uniform sampling for GP-NAS on the trained ufo_vit_tiny: which evaluations
teach the predictor more, at 25, 50 and 100 evaluated subnets per task.

Per task and seed, two accuracy tables are grown with `ufo eval`'s own chooser
(`evaluate.choose_archs`) and scorer (`evaluate.evaluate_archs`) on the validation split:
* uniform: the first n subnets of the seeded uniform stream;
* active: the first 10 of that stream, then the GP-NAS information sampler
  (`--sampler active`: a 2,000-subnet candidate pool, conditioned on the table so far),
  refitted at 25, 50 and 100.
At each budget GP-NAS is fitted on the table and scored on 60 held-out uniform subnets
(the same for every seed, none in any table): Kendall tau and RMSE of the predicted metric.
Writes tools/results/bench_active_sampling.md.

    python tools/bench_active_sampling.py [--checkpoint PATH] [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results  # noqa: E402

from ufo_nas.accuracy import GPNAS, AccuracyTable  # noqa: E402
from ufo_nas.checkpoint import load_supernet  # noqa: E402
from ufo_nas.data import load_task_data  # noqa: E402
from ufo_nas.evaluate import choose_archs, evaluate_archs, record_of  # noqa: E402
from ufo_nas.space import Arch, load_space  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACE = "ufo_vit_tiny"
BUDGETS = (25, 50, 100)
WARM_START = 10  # uniform subnets before the active sampler takes over
HELD_OUT, HELD_OUT_SEED = 60, 10_000


class Scorer:
    """Validation metric of archs of one task, each arch scored once."""

    def __init__(self, supernet, space, task: str):
        self.supernet, self.space, self.task = supernet, space, task
        self.kind = space.spec.task(task).kind
        self.data = load_task_data(space.spec, task, "val")
        self.cache: dict[str, object] = {}

    def records(self, archs: list[Arch]):
        missing = [a for a in archs if a.to_string() not in self.cache]
        for result in evaluate_archs(self.supernet, missing, self.task, self.data):
            self.cache[result.arch.to_string()] = record_of(
                result, self.task, self.kind, self.data.name, "bench_active_sampling"
            )
        return [self.cache[a.to_string()] for a in archs]


def grow(table: AccuracyTable, scorer: Scorer, n: int, sampler: str, seed: int) -> None:
    space, task = scorer.space, scorer.task
    archs = choose_archs(space, table, task, scorer.data.name, n, sampler, seed)
    table.append(scorer.records(archs))


def score_fit(table: AccuracyTable, scorer: Scorer, test: list[Arch], truth: np.ndarray):
    space, task = scorer.space, scorer.task
    rows = [r for r in table.records if r.task == task]
    model = GPNAS(space, task).fit([space.parse(r.arch) for r in rows], [r.value for r in rows])
    predicted = model.predict(space.encode_batch(test), return_std=False)
    tau = kendalltau(predicted, truth).statistic
    return float(tau), float(np.sqrt(np.mean((predicted - truth) ** 2))), len(rows)


def held_out(space, exclude: set[str]) -> list[Arch]:
    rng, archs = np.random.default_rng(HELD_OUT_SEED), []
    while len(archs) < HELD_OUT:
        arch = space.sample(rng)
        if arch.to_string() not in exclude and arch not in archs:
            archs.append(arch)
    return archs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "supernets" / f"{SPACE}.safetensors"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = load_space(SPACE)
    supernet = load_supernet(args.checkpoint).float()
    results: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    spread = {}
    for task in space.spec.task_names:
        scorer = Scorer(supernet, space, task)
        with tempfile.TemporaryDirectory() as tmp:
            tables = {}
            for seed in range(args.seeds):
                for sampler in ("uniform", "active"):
                    path = Path(tmp) / f"{sampler}-{seed}.csv"
                    tables[sampler, seed] = AccuracyTable(path, space)
            # the held-out set avoids every arch a uniform table will hold
            streams = set()
            for seed in range(args.seeds):
                streams |= {
                    a.to_string()
                    for a in choose_archs(
                        space, tables["uniform", seed], task, "-", BUDGETS[-1], "uniform", seed
                    )
                }
            test = held_out(space, streams)
            truth = np.array([r.value for r in scorer.records(test)])
            spread[task] = (truth.min(), truth.max(), len(np.unique(truth)))
            for seed in range(args.seeds):
                grow(tables["active", seed], scorer, WARM_START, "uniform", seed)
                for budget in BUDGETS:
                    for sampler in ("uniform", "active"):
                        table = tables[sampler, seed]
                        grow(table, scorer, budget, sampler, seed)
                        tau, rmse, n = score_fit(table, scorer, test, truth)
                        assert n == budget, (task, sampler, seed, n)
                        results.setdefault((task, sampler, budget), []).append((tau, rmse))
                print(f"{task} seed {seed} done ({len(scorer.cache)} subnets scored)", flush=True)

    def cell(task: str, sampler: str, budget: int, k: int) -> str:
        values = np.array(results[task, sampler, budget])[:, k]
        return f"{values.mean():.3f} ± {values.std():.3f}"

    lines = [
        "# Active vs uniform sampling for GP-NAS on the trained ufo_vit_tiny",
        "",
        f"`python tools/bench_active_sampling.py --seeds {args.seeds}` (checkpoint "
        f"`{Path(args.checkpoint).name}`). Per task and seed: a table grown by `ufo eval`'s "
        f"uniform stream, and one grown by {WARM_START} uniform then the active sampler; "
        f"GP-NAS fitted at each budget, scored on {HELD_OUT} held-out uniform subnets. "
        f"Mean ± std over {args.seeds} seeds.",
        "",
        "| task | held-out metric range | evaluations | Kendall tau, uniform | "
        "Kendall tau, active | RMSE, uniform | RMSE, active |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in space.spec.task_names:
        low, high, distinct = spread[task]
        for budget in BUDGETS:
            lines.append(
                f"| {task} | {low:.3f}..{high:.3f} ({distinct} distinct) | {budget} | "
                f"{cell(task, 'uniform', budget, 0)} | {cell(task, 'active', budget, 0)} | "
                f"{cell(task, 'uniform', budget, 1)} | {cell(task, 'active', budget, 1)} |"
            )
    wins = sum(
        np.mean(np.array(results[t, "active", b])[:, 0])
        > np.mean(np.array(results[t, "uniform", b])[:, 0])
        for t in space.spec.task_names
        for b in BUDGETS
    )
    lines += [
        "",
        f"Active sampling has the higher mean Kendall tau in {wins} of "
        f"{len(space.spec.task_names) * len(BUDGETS)} (task, budget) cells.",
        "",
    ]
    write_results(lines, ROOT / "tools" / "results" / "bench_active_sampling.md")


if __name__ == "__main__":
    main()
