import os
import time

import numpy as np
import pytest

from ufo_nas.latency.timing import (
    LOW_PERCENTILE,
    WARM_SECONDS,
    chunk_timings,
    cpu_load_ticks,
    cpu_steal_ticks,
    others_percent,
    round_speeds,
    steal_percent,
    time_interleaved,
    untimed_calls,
)

TRUE_MS = {"anchor": 50.0, "export": 51.5, "reference-0": 100.0, "reference-1": 300.0}


def host_switching_chunk(seed: int, rounds: int) -> dict[str, np.ndarray]:
    """(rounds, 2) call times of `TRUE_MS`'s models, visited in shuffled rounds on a host
    that runs at 1x or 1.45x their time and switches state before a visit with chance 0.05
    (as the 2-vCPU EPYC ran a ViT-Base int8 chunk: 44-48 ms for some rounds, 60-70 ms in
    others), each call 0-4% slow on its own."""
    rng = np.random.default_rng(seed)
    names, state = list(TRUE_MS), 1.0
    samples = {name: np.empty((rounds, 2)) for name in names}
    for r in range(rounds):
        for k in rng.permutation(len(names)):
            if rng.random() < 0.05:
                state = 2.45 - state
            noise = 1 + 0.02 * np.abs(rng.standard_normal(2))
            samples[names[k]][r] = TRUE_MS[names[k]] * state * noise
    return samples


def test_a_host_that_changes_speed_under_a_chunk_moves_no_models_ratio():
    """Over 200 simulated 15-round chunks, the export's time over the anchor's lands
    within 5% of the true 1.03 in all but a few once each round's calls are divided by the
    host's speed in it; taken as each model's plain p25 (before 2026-12-07), in 16."""
    adjusted, plain = [], []
    for seed in range(200):
        samples = host_switching_chunk(seed, rounds=15)
        timings = chunk_timings(samples)
        adjusted.append(timings["export"].ms / timings["anchor"].ms / 1.03 - 1)
        p25 = {n: np.percentile(v, LOW_PERCENTILE) for n, v in samples.items()}
        plain.append(p25["export"] / p25["anchor"] / 1.03 - 1)
    adjusted, plain = np.abs(adjusted), np.abs(plain)
    assert np.sum(adjusted > 0.05) <= 3 and np.sum(plain > 0.05) >= 12
    assert np.sqrt(np.mean(adjusted**2)) < 0.5 * np.sqrt(np.mean(plain**2))


def test_round_speeds_read_the_host_not_a_model():
    """Every model 1.4x slow in rounds 2 and 5: those rounds' speed is 1.4, the others'
    1; one model alone gives no speed to read (its own noise is not the host's)."""
    speed = np.ones(8)
    speed[[2, 5]] = 1.4
    samples = {n: ms * speed[:, None] * np.ones((8, 2)) for n, ms in TRUE_MS.items()}
    samples["export"][3] *= 1.3  # one model's slow round is its own
    np.testing.assert_allclose(round_speeds(samples), speed)
    np.testing.assert_allclose(round_speeds({"anchor": samples["anchor"]}), np.ones(8))


def test_chunk_timings_keep_the_chunks_level():
    """A chunk timed 1.3x slow throughout reads 1.3x slow (what the anchor-shift checks
    see); with steady rounds `ms` is each model's p25, `median_ms` and `spread` its calls'."""
    rng = np.random.default_rng(0)
    samples = {n: ms * (1 + 0.02 * rng.random((15, 2))) for n, ms in TRUE_MS.items()}
    steady = chunk_timings(samples)
    slow = chunk_timings({n: 1.3 * v for n, v in samples.items()})
    for name, values in samples.items():
        assert steady[name].ms == pytest.approx(np.percentile(values, LOW_PERCENTILE), rel=0.01)
        assert slow[name].ms == pytest.approx(1.3 * steady[name].ms)
        assert steady[name].median_ms == pytest.approx(np.median(values), rel=0.01)
        assert steady[name].calls == 30
    alone = chunk_timings({"anchor": samples["anchor"]})["anchor"]
    assert alone.ms == pytest.approx(np.percentile(samples["anchor"], LOW_PERCENTILE))


def sleeper(seconds: float):
    def run(x: np.ndarray) -> list[np.ndarray]:
        time.sleep(seconds)
        return [x]

    return run


def test_interleaved_timing_orders_models():
    x = np.zeros(1, np.float32)
    runners = {"short": sleeper(0.001), "long": sleeper(0.006)}
    seen = []
    timings = time_interleaved(runners, {"short": x, "long": x}, rounds=4, on_round=seen.append)
    assert seen == [0, 1, 2, 3]
    assert timings["short"].calls == 4
    assert timings["short"].ms >= 1.0 and timings["long"].ms >= 6.0
    assert timings["long"].ms > timings["short"].ms
    assert timings["short"].median_ms >= timings["short"].ms


def test_each_visit_times_a_model_warm_after_its_untimed_calls():
    """A model runs slow (8 ms) on its first call after another model, fast after itself:
    the timed calls of a visit come after `warm_calls` untimed ones, so they are warm."""
    x = np.zeros(1, np.float32)
    called: list[str] = []

    def model(name: str, warm_s: float):
        def run(x: np.ndarray) -> list[np.ndarray]:
            time.sleep(warm_s if called and called[-1] == name else 0.008)
            called.append(name)
            return [x]

        return run

    runners = {"a": model("a", 0.001), "b": model("b", 0.003), "c": model("c", 0.002)}
    inputs = dict.fromkeys(runners, x)
    warm = time_interleaved(runners, inputs, rounds=4, calls_per_round=2, warm_calls=3)
    assert len(called) == 3 * (2 + 4 * (3 + 2))  # 2 warm-up calls, then 5 a visit
    assert {name: t.calls for name, t in warm.items()} == dict.fromkeys(runners, 8)
    assert 1.0 <= warm["a"].median_ms < 2.5 and 3.0 <= warm["b"].median_ms < 4.5
    assert warm["b"].median_ms > warm["c"].median_ms > warm["a"].median_ms
    cold = time_interleaved(runners, inputs, rounds=9, warm_calls=0)  # one call a visit
    assert all(t.median_ms >= 8.0 for t in cold.values())  # after another model, mostly


def test_a_slow_model_is_visited_with_fewer_untimed_calls():
    """Untimed calls stop once they last `WARM_SECONDS` (at least one): a ViT-Base subnet
    (40-200 ms) is warm after one, and its chunk fits its time budget."""
    assert WARM_SECONDS == 0.010
    assert [untimed_calls(3, s) for s in (0.0005, 0.004, 0.006, 0.05)] == [3, 3, 2, 1]
    assert untimed_calls(0, 0.05) == 0  # timed cold
    counts = {"slow": 0, "fast": 0}

    def model(name: str, seconds: float):
        def run(x: np.ndarray) -> list[np.ndarray]:
            time.sleep(seconds)
            counts[name] += 1
            return [x]

        return run

    runners = {"slow": model("slow", 0.012), "fast": model("fast", 0.0005)}
    timings = time_interleaved(
        runners, dict.fromkeys(runners, np.zeros(1)), rounds=3, calls_per_round=2
    )
    assert counts == {"slow": 2 + 3 * (1 + 2), "fast": 2 + 3 * (3 + 2)}
    assert timings["slow"].calls == timings["fast"].calls == 6


def test_steal_percent():
    assert steal_percent((10, 1000), (20, 1100)) == 10.0
    assert steal_percent(None, (1, 2)) is None
    ticks = cpu_steal_ticks()
    assert ticks is None or ticks[1] >= ticks[0] >= 0


def test_others_percent_is_busy_time_less_this_process_own():
    # 1000 jiffies of all CPUs pass: 600 busy, 200 of them this process's
    assert others_percent((100, 5000, 20), (700, 6000, 220)) == 40.0
    assert others_percent((100, 5000, 20), (150, 6000, 220)) == 0.0  # never negative
    assert others_percent(None, (1, 2, 0)) is None
    assert others_percent((1, 2, 0), (1, 2, 0)) is None


def test_cpu_load_ticks_counts_this_process_cpu_time():
    before = cpu_load_ticks()
    if before is None:  # not Linux
        return
    start = time.process_time()
    while time.process_time() - start < 0.3:  # burn 0.3 s of this process's CPU
        pass
    after = cpu_load_ticks()
    own = after[2] - before[2]
    assert 0.25 * os.sysconf("SC_CLK_TCK") <= own  # at least 0.25 s of own time counted
    assert after[0] - before[0] >= own - 2  # busy time includes it (to a tick each end)
    assert after[1] > after[0] and after[1] - before[1] >= after[0] - before[0]


def test_budget_cuts_rounds_of_slow_models_only():
    x = np.zeros(1, np.float32)
    slow = {"a": sleeper(0.01), "b": sleeper(0.01)}  # a round takes ~20 ms
    timings = time_interleaved(slow, {"a": x, "b": x}, rounds=21, budget_s=0.1, min_rounds=3)
    assert 3 <= timings["a"].calls <= 5  # 0.1 s / ~0.02 s (sleeps overshoot under load)
    floor = time_interleaved(slow, {"a": x, "b": x}, rounds=21, budget_s=0.001, min_rounds=3)
    assert floor["b"].calls == 3
    fast = time_interleaved({"a": sleeper(0.0)}, {"a": x}, rounds=5, budget_s=1.0, min_rounds=3)
    assert fast["a"].calls == 5  # never more than `rounds`
    few = time_interleaved(slow, {"a": x, "b": x}, rounds=2, budget_s=0.001, min_rounds=7)
    assert few["a"].calls == 2  # `rounds` below the floor wins


def test_fill_adds_rounds_to_fast_models_only():
    x = np.zeros(1, np.float32)
    fast = time_interleaved({"a": sleeper(0.0)}, {"a": x}, rounds=5, fill_s=1.0, max_rounds=40)
    assert fast["a"].calls == 40  # as many as fill 1 s: far more than 40
    slow = {"a": sleeper(0.02)}  # a round: 1 untimed and 1 timed call of at least 20 ms
    kept = time_interleaved(slow, {"a": x}, rounds=5, fill_s=0.1, max_rounds=40)
    assert kept["a"].calls == 5  # 5 rounds already last longer than 0.1 s
    filled = time_interleaved(slow, {"a": x}, rounds=2, fill_s=0.6, max_rounds=40)
    assert 2 < filled["a"].calls <= 15  # 0.6 s / at least 40 ms
    capped = time_interleaved(slow, {"a": x}, rounds=2, fill_s=0.6, budget_s=0.2, max_rounds=40)
    assert 2 <= capped["a"].calls <= 5  # the chunk's budget bounds the fill
    off = time_interleaved({"a": sleeper(0.0)}, {"a": x}, rounds=5)
    assert off["a"].calls == 5
