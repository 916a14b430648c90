"""Benchmark accuracy predictors on the 400 real UFO ViT-Base subnets (CVPR'22 track 2).

P2: 5-fold cross-validated Kendall tau per benchmark and its mean over the 8, for GP-NAS
(alone and sharing strength across tasks) and baselines, all in one run; then active vs
uniform sampling at 25/50/100 evaluations; then the fit time. Writes a Markdown table.

    python tools/bench_predictors.py [--out tools/results/bench_predictors.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy
import sklearn
from results_io import write_results
from scipy.special import ndtri
from scipy.stats import kendalltau
from sklearn.model_selection import KFold
from tqdm import tqdm

from ufo_nas import load_space
from ufo_nas.accuracy import GPNAS, select_informative, share_strength
from ufo_nas.accuracy.baselines import BoostedStumps, FixedKernelGPNAS, RidgeOneHot
from ufo_nas.cvpr22 import decode_cvpr22

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "cvpr22_ufo_vit_base" / "train_400.json"
BENCHMARKS = ["cplfw", "market1501", "dukemtmc", "msmt17", "veri", "vehicleid", "veriwild", "sop"]
BUDGETS = (25, 50, 100)


def load_data(space):
    records = list(json.loads(DATA.read_text()).values())
    genes = space.encode_batch([decode_cvpr22(space, r["arch"]) for r in records])
    ranks = np.array([[r[f"{b}_rank"] for b in BENCHMARKS] for r in records], float)
    # rank 0 is best among the 500 released subnets: normal score, higher is better
    return genes, ndtri(1.0 - (ranks + 0.5) / 500.0)


def task_of(space, benchmark: str) -> str:
    return next(t.name for t in space.spec.tasks if benchmark in t.benchmarks)


def cross_validated_tau(space, genes, scores, folds=5, seed=0) -> dict[str, np.ndarray]:
    baselines = {
        "PaddleSlim GP-NAS (fixed kernel, integer codes)": lambda: FixedKernelGPNAS(space),
        "ridge, one-hot (penalty by LOO-CV)": lambda: RidgeOneHot(space),
        "gradient boosting, stumps, one-hot": lambda: BoostedStumps(space),
    }
    taus = {name: np.zeros(len(BENCHMARKS)) for name in ["GP-NAS", "GP-NAS + shared tasks"]}
    taus.update({name: np.zeros(len(BENCHMARKS)) for name in baselines})
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(genes))
    for train, test in tqdm(splits, desc="P2 folds"):
        models = {
            b: GPNAS(space, task_of(space, b)).fit(genes[train], scores[train, j])
            for j, b in enumerate(BENCHMARKS)
        }
        shared = share_strength(models)
        for j, b in enumerate(BENCHMARKS):
            truth = scores[test, j]
            for name, model in (("GP-NAS", models[b]), ("GP-NAS + shared tasks", shared[b])):
                pred = model.predict(genes[test], return_std=False)
                taus[name][j] += kendalltau(pred, truth).statistic / folds
            for name, make in baselines.items():
                pred = make().fit(genes[train], scores[train, j]).predict(genes[test])
                taus[name][j] += kendalltau(pred, truth).statistic / folds
    return taus


def sampling_curves(space, genes, scores, repeats=5, first=10, batch=5):
    """Mean tau on 100 held-out subnets after n evaluations from a 300-subnet pool."""
    curves = {"uniform": {n: [] for n in BUDGETS}, "active (GP-NAS MI)": {n: [] for n in BUDGETS}}
    for j, b in enumerate(tqdm(BENCHMARKS, desc="sampling")):
        task = task_of(space, b)
        for r in range(repeats):
            order = np.random.default_rng(r).permutation(len(genes))
            test, pool = order[:100], order[100:]
            truth = scores[test, j]
            for n in BUDGETS:
                chosen = pool[:n]
                model = GPNAS(space, task).fit(genes[chosen], scores[chosen, j])
                pred = model.predict(genes[test], return_std=False)
                curves["uniform"][n].append(kendalltau(pred, truth).statistic)
            model = GPNAS(space, task)
            chosen = pool[select_informative(model, genes[pool], first)]
            while len(chosen) < max(BUDGETS):
                model = GPNAS(space, task).fit(genes[chosen], scores[chosen, j])
                if len(chosen) in BUDGETS:
                    pred = model.predict(genes[test], return_std=False)
                    curves["active (GP-NAS MI)"][len(chosen)].append(
                        kendalltau(pred, truth).statistic
                    )
                rest = np.setdiff1d(pool, chosen)
                chosen = np.concatenate(
                    [chosen, rest[select_informative(model, genes[rest], batch)]]
                )
            model = GPNAS(space, task).fit(genes[chosen], scores[chosen, j])
            pred = model.predict(genes[test], return_std=False)
            curves["active (GP-NAS MI)"][len(chosen)].append(kendalltau(pred, truth).statistic)
    return {k: {n: float(np.mean(v)) for n, v in c.items()} for k, c in curves.items()}


def fit_seconds(space, genes, scores) -> dict[str, float]:
    model = GPNAS(space, "person")
    best = {}
    for label, n in (("400 real subnets", 400), ("500 (400 real + 100 repeated)", 500)):
        rows = np.resize(np.arange(len(genes)), n)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            model.fit(genes[rows], scores[rows, 1])
            times.append(time.perf_counter() - start)
        best[label] = min(times)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "tools" / "results" / "bench_predictors.md"))
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"missing {DATA}: the shared datasets must sit beside the project", file=sys.stderr)
        return 2
    space = load_space("ufo_vit_base")
    genes, scores = load_data(space)
    taus = cross_validated_tau(space, genes, scores)
    curves = sampling_curves(space, genes, scores)
    seconds = fit_seconds(space, genes, scores)

    lines = [
        "# Accuracy predictors on the 400 real UFO ViT-Base subnets",
        "",
        "Command: `python tools/bench_predictors.py`  ",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, scikit-learn {sklearn.__version__}  ",
        "Data: `../shared/datasets/cvpr22_ufo_vit_base/train_400.json`; targets are normal scores "
        "of the released ranks (rank 0 = best).",
        "",
        "## P2: 5-fold cross-validated Kendall tau (same folds for every method)",
        "",
        "| method | " + " | ".join(BENCHMARKS) + " | mean |",
        "|---" * (len(BENCHMARKS) + 2) + "|",
    ]
    for name, tau in taus.items():
        cells = " | ".join(f"{t:.3f}" for t in tau)
        lines.append(f"| {name} | {cells} | **{tau.mean():.4f}** |")
    lines += [
        "",
        "## Active vs uniform sampling: mean Kendall tau on 100 held-out subnets",
        "",
        "8 benchmarks x 5 random pool/test splits (pool 300). Active: the first 10 archs by",
        "prior information gain, then batches of 5 by posterior information gain, refitting",
        "GP-NAS after each batch.",
        "",
        "| sampling | " + " | ".join(f"{n} evaluations" for n in BUDGETS) + " |",
        "|---" * (len(BUDGETS) + 1) + "|",
    ]
    for name, curve in curves.items():
        lines.append(f"| {name} | " + " | ".join(f"{curve[n]:.4f}" for n in BUDGETS) + " |")
    lines += ["", "## GP-NAS fit time (best of 5)", "", "| training set | seconds |", "|---|---|"]
    lines += [f"| {label} | {s:.3f} |" for label, s in seconds.items()]
    write_results(lines, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
