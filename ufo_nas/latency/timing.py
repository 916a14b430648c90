"""Interleaved timing of compiled models in one process.

On shared machines the same model moves +-30% between processes but +-0.5% within one, so
everything compared is timed in the same process, in interleaved rounds (each round runs
every model, in a shuffled order), and reported by a low percentile with its spread. Many
short rounds beat few long ones: on this machine the ratio of two models' p25 over 21
rounds of 1 call varies by 1.9% between repeats, over 7 rounds of 3 calls by 3.1%.
Slow models need fewer rounds for the same spread, so a time budget may cut the rounds of
a chunk of slow models (never below `min_rounds`); fast ones need more, and a chunk whose
rounds take under `fill_s` gets as many as fill it (at most `max_rounds`): two builds of one
tiny subnet, identical engines timed in one chunk, differed by 4.5-6.1% (mean) over 15
rounds and by 3.2-4.0% over 60 (`tools/check_rounds.py`, 2-vCPU AVX2 EPYC). Steal time
(the hypervisor running other guests) is read from /proc/stat.

Each visit of a model in a round is warm: it first makes `WARM_CALLS` untimed calls (fewer
where fewer last `WARM_SECONDS`, at least one: a 40-200 ms ViT-Base subnet, cold, ran only
1.03-1.04x its warm time), as an engine serving one model runs. Timed cold (the first call
after the other models ran), the tiny anchor took 1.25-1.47x its warm time on every CPU
backend here (2.1x beside 33 other ONNX Runtime sessions), and larger subnets' times over
the anchor's came out up to 20% low; timed warm they land within 0.5-2.6% (mean) of a
10-call warm-up's (`tools/check_warm_timing.py`).

The host's own speed moves under a chunk: on the 2-vCPU EPYC a ViT-Base int8 subnet ran
44-48 ms for some rounds, then 60-70 ms, and back, every model alike (no steal time shows:
other guests share the cores). A p25 of each model's calls lands in the fast state or the
slow one unevenly between models. So each round's calls are first divided by the host's
speed in that round, read from every model of the chunk (`round_speeds`). Over windows of
7, 15 and 30 rounds of one recording, the ViT-Base int8 front subnets' prediction errors
then spread 3.71, 2.59, 1.25 points (sd; ORT) and 2.11, 1.43, 1.21 (OpenVINO), where as
plain p25s 4.47, 2.61, 2.04 and 3.18, 2.30, 1.18; tiny's, under a steadier host, 0.18-1.48
either way (`tools/check_round_speed.py`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ufo_nas.backends import Runner

LOW_PERCENTILE = 25
WARM_CALLS = 3  # untimed calls at each visit of a model, before its timed ones: at most
WARM_SECONDS = 0.010  # fewer where fewer last this long (at least one): a slow model is warm
MAX_ROUNDS = 60  # the most rounds a fill gives a chunk of fast models


@dataclass(frozen=True)
class Timing:
    ms: float  # the low percentile: the model's speed without interference
    median_ms: float
    spread: float  # (p90 - p10) / p10 over all calls
    calls: int


def _cpu_jiffies() -> list[int] | None:
    """The all-CPU line of /proc/stat (user, nice, system, idle, iowait, irq, softirq, steal,
    guest, guest_nice), padded to 8 fields, or None off Linux."""
    stat = Path("/proc/stat")
    if not stat.is_file():
        return None
    values = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
    return values + [0] * (8 - len(values))


def cpu_steal_ticks() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs since boot, or None off Linux."""
    values = _cpu_jiffies()
    return None if values is None else (values[7], sum(values))


def steal_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] == before[1]:
        return None
    return 100.0 * (after[0] - before[0]) / (after[1] - before[1])


def cpu_load_ticks() -> tuple[int, int, int] | None:
    """(busy, total, own) jiffies since boot: busy is every CPU's user, nice, system, irq
    and softirq time, total adds idle, iowait and steal, own is this process's CPU time (all
    its threads); None off Linux."""
    values = _cpu_jiffies()
    if values is None:
        return None
    busy = values[0] + values[1] + values[2] + values[5] + values[6]
    used = os.times()
    own = round((used.user + used.system) * os.sysconf("SC_CLK_TCK"))
    return busy, sum(values[:8]), own


def others_percent(
    before: tuple[int, int, int] | None, after: tuple[int, int, int] | None
) -> float | None:
    """The share of all CPUs' time that other processes used between two `cpu_load_ticks`
    (100: every core busy with them), or None where unknown."""
    if before is None or after is None or after[1] == before[1]:
        return None
    others = (after[0] - before[0]) - (after[2] - before[2])
    return 100.0 * max(others, 0) / (after[1] - before[1])


def time_interleaved(
    runners: Mapping[str, Runner], inputs: Mapping[str, np.ndarray], *args: Any, **kwargs: Any
) -> dict[str, Timing]:
    """Each runner's `Timing` (`chunk_timings`) over its calls timed by `interleaved_calls`
    with these arguments."""
    return chunk_timings(interleaved_calls(runners, inputs, *args, **kwargs))


def interleaved_calls(
    runners: Mapping[str, Runner],
    inputs: Mapping[str, np.ndarray],
    rounds: int = 21,
    calls_per_round: int = 1,
    warmup: int = 2,
    seed: int = 0,
    on_round: Callable[[int], None] | None = None,
    budget_s: float | None = None,
    min_rounds: int = 7,
    warm_calls: int = WARM_CALLS,
    fill_s: float | None = None,
    max_rounds: int = MAX_ROUNDS,
) -> dict[str, np.ndarray]:
    """Time every runner on its input in shuffled rounds: each one's timed calls in ms, a
    (rounds, calls_per_round) array. In each round every runner makes untimed calls, then
    `calls_per_round` timed ones. Untimed: `warm_calls`, or fewer (at least one) where fewer
    of its warm-up calls last `WARM_SECONDS`. `rounds` of them; by the last warm-up calls'
    times, with `budget_s` no more than fit in it (at least `min_rounds`), with `fill_s` (or
    `budget_s` if less) no fewer than fit in it (at most `max_rounds`)."""
    rng = np.random.default_rng(seed)
    names = list(runners)
    last_call_s = dict.fromkeys(names, 0.0)
    for name in names:
        for _ in range(warmup):
            start = time.perf_counter_ns()
            runners[name](inputs[name])
            last_call_s[name] = (time.perf_counter_ns() - start) / 1e9
    untimed = {name: untimed_calls(warm_calls, last_call_s[name]) for name in names}
    round_s = max(sum((untimed[n] + calls_per_round) * last_call_s[n] for n in names), 1e-9)
    if budget_s is not None and warmup:
        rounds = min(rounds, max(min_rounds, int(budget_s / round_s)))
    if fill_s is not None and warmup:
        fill_s = fill_s if budget_s is None else min(fill_s, budget_s)
        rounds = max(rounds, min(max_rounds, int(fill_s / round_s)))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for k in rng.permutation(len(names)):
            name = names[k]
            runner, x = runners[name], inputs[name]
            for _ in range(untimed[name]):
                runner(x)
            for _ in range(calls_per_round):
                start = time.perf_counter_ns()
                runner(x)
                samples[name].append((time.perf_counter_ns() - start) / 1e6)
        if on_round:
            on_round(r)
    return {name: np.reshape(v, (rounds, calls_per_round)) for name, v in samples.items()}


def round_speeds(samples: Mapping[str, np.ndarray]) -> np.ndarray:
    """The host's speed in each round of a chunk (1: its usual; 1.3: every model ran 1.3x
    its usual time), from each model's (rounds, calls) times: per round, the median over the
    models of the fastest call's time over the model's median of those. All ones where
    fewer than two models share the rounds (a model's own noise is not the host's)."""
    fastest = np.log(np.maximum(np.stack([np.min(v, axis=1) for v in samples.values()]), 1e-9))
    if len(fastest) < 2:
        return np.ones(fastest.shape[1])
    return np.exp(np.median(fastest - np.median(fastest, axis=1, keepdims=True), axis=0))


def chunk_timings(samples: Mapping[str, np.ndarray]) -> dict[str, Timing]:
    """Each model's `Timing` from its (rounds, calls) times in ms: `ms` and `median_ms` the
    low percentile and median of its calls once each round's are divided by the host's
    speed then (`round_speeds`), put back on the chunk's level (the median over its models
    of their plain low percentile over this); `spread` and `calls` of the calls as timed."""
    speeds = round_speeds(samples)
    steady = {n: v / speeds[:, None] for n, v in samples.items()}
    level = float(
        np.median(
            [
                np.percentile(v, LOW_PERCENTILE) / np.percentile(steady[n], LOW_PERCENTILE)
                for n, v in samples.items()
            ]
        )
    )
    out = {}
    for name, values in samples.items():
        low, median = np.percentile(steady[name], [LOW_PERCENTILE, 50]) * level
        p10, p90 = np.percentile(values, [10, 90])
        out[name] = Timing(float(low), float(median), float((p90 - p10) / p10), values.size)
    return out


def untimed_calls(warm_calls: int, call_s: float) -> int:
    """Untimed calls at each visit of a model whose call takes `call_s`: `warm_calls`, or
    as few (at least one) as last `WARM_SECONDS`; 0 when `warm_calls` is 0 (timed cold)."""
    if warm_calls <= 0:
        return 0
    return min(warm_calls, max(1, math.ceil(WARM_SECONDS / max(call_s, 1e-9))))
