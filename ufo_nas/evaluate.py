"""Evaluate subnets of a supernet on a task's validation data into the accuracy table."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import torch

from ufo_nas.accuracy import GPNAS, AccuracyRecord, AccuracyTable, select_informative
from ufo_nas.data import PRIMARY_METRIC, ImageSet, evaluate_embeddings
from ufo_nas.space import Arch, SearchSpace
from ufo_nas.supernet import SuperViT

SAMPLERS = ("uniform", "active")
ACTIVE_POOL = 2000  # random candidates the active sampler chooses from


@dataclass(frozen=True)
class EvalResult:
    arch: Arch
    metrics: dict[str, float]


def choose_archs(
    space: SearchSpace,
    table: AccuracyTable,
    task: str,
    benchmark: str,
    n: int,
    sampler: str,
    seed: int,
) -> list[Arch]:
    """The archs still to evaluate so that the table holds `n` subnets of `task` on
    `benchmark`; none of them is already in the table.

    uniform: the next not-yet-evaluated archs of a seeded random stream, so rerunning an
    interrupted command evaluates exactly what is missing. active: the GP-NAS information
    sampler over a seeded candidate pool, conditioned on what the table already holds.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler '{sampler}'; allowed: {', '.join(SAMPLERS)}")
    done = table.evaluated(task, benchmark)
    n = max(0, n - len(done))
    rng = np.random.default_rng(seed)
    if sampler == "uniform":
        chosen: list[Arch] = []
        seen: set[Arch] = set()
        for _ in range(1000 * n + 1000):  # bounded: duplicates are rare in any real space
            if len(chosen) == n:
                break
            arch = space.sample(rng)
            if arch not in seen:
                seen.add(arch)
                if arch.to_string() not in done:
                    chosen.append(arch)
        return chosen
    pool = space.sample_genes(rng, ACTIVE_POOL)
    pool = np.unique(pool, axis=0)
    fresh = [i for i, a in enumerate(space.decode_batch(pool)) if a.to_string() not in done]
    pool = pool[fresh]
    model = GPNAS(space, task)
    rows = [r for r in table.records if r.task == task and r.benchmark == benchmark]
    if len(rows) >= 2:
        model.fit([space.parse(r.arch) for r in rows], [r.value for r in rows])
    return space.decode_batch(pool[select_informative(model, pool, min(n, len(pool)))])


@torch.no_grad()
def evaluate_archs(
    supernet: SuperViT,
    archs: list[Arch],
    task: str,
    data: ImageSet,
    batch_size: int = 64,
) -> Iterator[EvalResult]:
    """Run each arch of the supernet on `data`, on the supernet's device (CPU or a GPU
    while training there), and score it with the task's metric."""
    supernet.eval()
    kind = supernet.spec.task(task).kind
    device = next(supernet.parameters()).device
    for arch in archs:
        outputs = torch.cat(
            [
                supernet(chunk.to(device), arch, task).float().cpu()
                for chunk in data.images.split(batch_size)
            ]
        )
        yield EvalResult(arch, evaluate_embeddings(kind, outputs.numpy(), data))


def record_of(result: EvalResult, task: str, kind: str, benchmark: str, source: str):
    """The accuracy-table row of a result's primary metric."""
    metric = PRIMARY_METRIC[kind]
    return AccuracyRecord(
        arch=result.arch.to_string(),
        task=task,
        benchmark=benchmark,
        metric=metric,
        value=float(result.metrics[metric]),
        higher_is_better=True,
        source=source,
        date=datetime.now(timezone.utc).date().isoformat(),
    )
