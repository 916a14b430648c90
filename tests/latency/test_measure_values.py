"""`ufo profile` on a fake backend with known costs and a fake clock: the table's values,
the division of chained copies, the anchor scaling and the calibration are checked as
numbers; the provenance command, the cleaning of killed runs' work folders, and chunks
re-timed while other processes load the CPUs."""

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ufo_nas.backends import BACKEND_MODULES, Backend, get_backend
from ufo_nas.errors import UfoWarning
from ufo_nas.hardware import load_profile, profile_from_dict
from ufo_nas.latency import measure, timing
from ufo_nas.latency.measure import (
    ProfileSettings,
    anchor_subnet,
    implied_anchor_ms,
    matched_anchor_ms,
    profile_command,
    run_profile,
)
from ufo_nas.latency.operator_set import space_operators
from ufo_nas.latency.predictor import LatencyPredictor
from ufo_nas.latency.table import (
    LatencyTable,
    LatencyTableError,
    OperatorRow,
    ReferenceSubnet,
    ValidationRow,
)
from ufo_nas.latency.weights import WEIGHTS_TAG
from ufo_nas.search.report import ParetoRow
from ufo_nas.search.verify import measure_front

A, B = 1.25, 0.5  # whole subnet = A * sum of its operators + B (ms)
SETTINGS = ProfileSettings(validation_subnets=6, chunk=4, rounds=3, copies=2)


class Clock:
    """perf_counter_ns that moves only when a fake model runs, `slow` times its cost."""

    def __init__(self) -> None:
        self.ns, self.slow = 0, 1.0

    def run(self, ms: float) -> None:
        self.ns += round(ms * self.slow * 1e6)


def _costs(tiny) -> dict[str, float]:
    """A distinct whole number of microseconds per operator."""
    return {op.key: (100 + 25 * k) / 1000 for k, op in enumerate(space_operators(tiny.spec))}


@pytest.fixture
def fake(tiny, monkeypatch):
    """A `fake` backend whose models cost known times on a fake clock."""
    clock, costs = Clock(), _costs(tiny)
    odd: dict[str, float] = {}  # arch -> the factor its subnet runs at (a model out of step)
    true_table = LatencyTable(
        tiny.name,
        tiny.spec.fingerprint(),
        "truth",
        True,
        operators={k: OperatorRow(k, ms, ms, 0.0, 1.0) for k, ms in costs.items()},
    )
    truth = LatencyPredictor(tiny, true_table)

    class FakeBackend(Backend):
        name = "fake"
        needs_onnx = False

        @classmethod
        def unavailable_reason(cls):
            return None

        @classmethod
        def versions(cls):
            return {"fake": "1"}

        def compile(self, module, onnx_path, work_dir):
            if hasattr(module, "arch"):  # a whole subnet
                ms = A * float(truth.sum_ms([module.arch], module.tasks)[0]) + B
                arch = module.arch.to_string()
                return lambda x: clock.run(ms * odd.get(arch, 1.0)) or []
            else:  # op-<key>-x<copies>-<weights tag>
                name = work_dir.name.removeprefix("op-").removesuffix(f"-{WEIGHTS_TAG}")
                key, _, copies = name.rpartition("-x")
                ms = int(copies) * costs[key]
            return lambda x: clock.run(ms) or []

    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter_ns=lambda: clock.ns))
    # the fake models burn no CPU: the machine's real load says nothing about them
    monkeypatch.setattr(measure, "cpu_load_ticks", lambda: None)
    monkeypatch.setitem(BACKEND_MODULES, "fake", "ufo_nas.backends.torch_eager")
    monkeypatch.setattr(
        measure, "get_backend", lambda name: FakeBackend if name == "fake" else get_backend(name)
    )
    profile = profile_from_dict(load_profile("cpu-torch").to_dict() | {"backend": "fake"}, "f")
    return SimpleNamespace(clock=clock, costs=costs, truth=truth, profile=profile, odd=odd)


class Interrupt(Exception):
    pass


def _stop(what: str, n: int) -> None:
    raise Interrupt


def test_table_values_copies_anchor_scaling_and_calibration(tiny, tmp_path, fake):
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    with pytest.raises(Interrupt):
        run_profile(tiny, fake.profile, out, work, SETTINGS, progress=_stop)
    fake.clock.slow = 2.0  # the resumed run's process is twice as slow
    table = run_profile(tiny, fake.profile, out, work, SETTINGS)

    arch, tasks = anchor_subnet(tiny)
    anchor = A * float(fake.truth.sum_ms([arch], tasks)[0]) + B
    for key, cost in fake.costs.items():
        row = table.operators[key]
        slow = 1.0 if row.session == 0 else 2.0
        chained = key.startswith(("attn", "ffn"))
        assert row.copies == (2 if chained else 1)
        assert row.ms == pytest.approx(cost * slow, rel=1e-6)  # per copy
        assert row.anchor_ms == pytest.approx(anchor * slow, rel=1e-6)
        assert row.spread == 0.0
        assert table.op_ms(key) == pytest.approx(cost, rel=1e-6)  # on session 0's scale
    assert {row.session for row in table.operators.values()} == {0, 1}
    assert table.reference_anchor_ms == pytest.approx(anchor, rel=1e-6)
    for row in table.validation:
        want = A * float(fake.truth.sum_ms([tiny.parse(row.arch)], row.tasks)[0]) + B
        assert row.measured_ms == pytest.approx(2 * want, rel=1e-6)
        assert table.scaled_ms(row.measured_ms, row.anchor_ms) == pytest.approx(want, rel=1e-6)
    cal = table.calibration
    assert cal["a"] == pytest.approx(A, rel=1e-5) and cal["b"] == pytest.approx(B, abs=1e-4)
    assert cal["c"] == pytest.approx(0.0, abs=1e-5)
    assert table.metrics["mean_abs_pct_error"] == pytest.approx(0.0, abs=1e-3)
    assert table.metrics["validation_subnets"] == 6
    assert not list(work.glob("subnet-*"))  # nothing built to keep: no folders left


def test_every_chunk_times_its_anchor_beside_as_many_models(tiny, tmp_path, fake, monkeypatch):
    """6 subnets in chunks of 4: the short last chunk is filled with other validation
    subnets, timed and not recorded; the values stay exact. (Operator chunks are not.)"""
    timed: list[list[str]] = []
    time_chunk = measure.Profiler.time_chunk

    def spy(self, models, settings):
        timed.append(sorted(models))
        return time_chunk(self, models, settings)

    monkeypatch.setattr(measure.Profiler, "time_chunk", spy)
    table = run_profile(tiny, fake.profile, tmp_path / "t.yaml", tmp_path / "work", SETTINGS)
    ops = [op.key for op in space_operators(tiny.spec)]
    assert len(ops) == 13 and [len(models) for models in timed] == [4, 4, 4, 1, 4, 4]
    assert timed[5] == [f"{measure.CONTEXT}0", f"{measure.CONTEXT}1", "subnet-0", "subnet-1"]
    assert sorted(table.operators) == sorted(ops) and len(table.validation) == 6
    for key, cost in fake.costs.items():
        assert table.op_ms(key) == pytest.approx(cost, rel=1e-6)
    assert table.metrics["mean_abs_pct_error"] == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize(
    "argv, command",
    [
        (["/usr/bin/ufo", "profile", "--device", "d"], "ufo profile --device d"),
        (["/usr/bin/ufo", "--device", "d"], "ufo profile --device d"),
        (["/x/ufo_nas/__main__.py", "profile", "--device", "d"], "ufo profile --device d"),
        (["/usr/bin/ufo-profile", "--device", "d"], "ufo-profile --device d"),
    ],
)
def test_the_recorded_command_names_profile(monkeypatch, argv, command):
    monkeypatch.setattr(sys, "argv", argv)
    assert profile_command() == command


CHILD = """
import sys, time
from pathlib import Path
from ufo_nas import load_space
from ufo_nas.hardware import load_profile
from ufo_nas.latency.measure import Profiler, anchor_subnet
space = load_space("ufo_vit_tiny")
profiler = Profiler(space, load_profile("cpu-onnxruntime"), Path(sys.argv[1]))
profiler.compile_subnet(*anchor_subnet(space))
print("ready", flush=True)
time.sleep(600)
"""


def test_a_killed_profile_leaves_work_folders_the_next_run_removes(tiny, tmp_path):
    work = tmp_path / "work"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(work)], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"ready"
        left = list(work.glob("subnet-*"))
        assert len(left) == 1 and left[0].name.endswith(f".tmp-{child.pid}")
        assert not any(left[0].iterdir())  # the graph and its weights go once compiled
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    (work / "subnet-0123456789ab").mkdir()  # empty, as runs before this fix left them
    live = work / f"subnet-fedcba987654.tmp-{os.getpid()}"
    live.mkdir()
    measure.Profiler(tiny, load_profile("cpu-onnxruntime"), work)
    assert sorted(p.name for p in work.iterdir()) == [live.name]


def test_recalibrate_moves_a_table_to_a_new_host_keeping_its_operators(
    tiny, tmp_path, fake, monkeypatch
):
    """Host B runs whole subnets as 1.5 x (A2 * sum + B2): the operators are not re-timed,
    the validation subnets are, and predictions then match host B exactly."""
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    built = run_profile(tiny, fake.profile, out, work, SETTINGS)
    monkeypatch.setitem(built.provenance, "host", {"cpu": "other", "isa": [], "isa_checked": []})
    built.save(out)
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "A", 0.8)
    monkeypatch.setattr(module, "B", 2.0)
    fake.clock.slow = 1.5
    saved = out.read_bytes()
    with pytest.raises(Interrupt):  # a kill mid-way leaves the file as it was
        measure.recalibrate(tiny, fake.profile, out, work, SETTINGS, progress=_stop)
    assert out.read_bytes() == saved

    few = measure.recalibrate(
        tiny, fake.profile, out, work, replace(SETTINGS, validation_subnets=4)
    )
    assert len(few.validation) == 4 and few.metrics["validation_subnets"] == 4
    out.write_bytes(saved)
    table = measure.recalibrate(tiny, fake.profile, out, work, SETTINGS)
    assert LatencyTable.load(out, tiny).to_dict() == table.to_dict()
    assert table.operators == built.operators  # not re-measured
    assert [(r.arch, r.tasks) for r in table.validation] == [
        (r.arch, r.tasks) for r in built.validation
    ]
    session = table.provenance["sessions"][-1]
    assert table.provenance["reference_session"] == len(table.provenance["sessions"]) - 1 == 1
    assert {r.session for r in table.validation} == {1}
    assert session["kind"] == "recalibration" and session["replaced"]["host"]["cpu"] == "other"
    assert table.provenance["host"] == measure.host_fingerprint()
    assert session["before_here"]["mean_abs_pct_error"] > 10  # the old table was off here
    assert table.metrics["mean_abs_pct_error"] == pytest.approx(0.0, abs=1e-3)
    predictor = LatencyPredictor(tiny, table)
    for arch in (tiny.smallest(), tiny.largest(), tiny.sample(np.random.default_rng(4))):
        host_b = 1.5 * (0.8 * float(fake.truth.sum_ms([arch], ("face",))[0]) + 2.0)
        assert predictor.latency_ms([arch], "face")[0] == pytest.approx(host_b, rel=1e-4)


def test_added_sessions_fit_each_subnet_at_its_median_over_processes(
    tiny, tmp_path, fake, monkeypatch
):
    """A later process where each whole subnet costs 1.5 ms more (the anchor too, so scaled
    times shrink), then one where it costs 0.3 ms less: after the first the fit sees the
    mean of two times, after the second the median of three: the first process's again."""
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    built = run_profile(tiny, fake.profile, out, work, SETTINGS)
    first = LatencyPredictor(tiny, built).calibration_data()[1]
    module, n = sys.modules[__name__], SETTINGS.validation_subnets
    monkeypatch.setattr(module, "B", 2.0)
    saved = out.read_bytes()
    with pytest.raises(Interrupt):  # a kill mid-way leaves the file as it was
        measure.recalibrate(tiny, fake.profile, out, work, SETTINGS, _stop, add_session=True)
    assert out.read_bytes() == saved
    table = measure.recalibrate(tiny, fake.profile, out, work, SETTINGS, add_session=True)
    assert len(table.validation) == 2 * n and table.metrics["validation_subnets"] == n
    assert table.reference_anchor_ms == built.reference_anchor_ms  # the same scale
    assert table.operators == built.operators
    assert table.provenance["sessions"][-1]["kind"] == "added session"
    second = np.array([table.scaled_ms(r.measured_ms, r.anchor_ms) for r in table.validation[n:]])
    assert np.all(second / first < 0.97)  # the later process really drifted
    both = LatencyPredictor(tiny, table).calibration_data()[1]
    assert both == pytest.approx((first + second) / 2, rel=1e-9)
    measure.check_usable(tiny, LatencyTable.load(out, tiny), out)  # fitted on the medians

    monkeypatch.setattr(module, "B", 0.2)
    table = measure.recalibrate(tiny, fake.profile, out, work, SETTINGS, add_session=True)
    assert len(table.validation) == 3 * n and table.metrics["validation_subnets"] == n
    assert LatencyPredictor(tiny, table).calibration_data()[1] == pytest.approx(first, rel=1e-9)
    for key in ("a", "b", "c", "d"):
        assert table.calibration[key] == pytest.approx(built.calibration[key], rel=1e-6, abs=1e-9)


def test_a_session_is_added_only_on_the_host_the_table_describes(tiny, tmp_path, fake):
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    built = run_profile(tiny, fake.profile, out, work, SETTINGS)
    built.provenance["host"] = {"cpu": "other", "isa": [], "isa_checked": []}
    built.save(out)
    saved = out.read_bytes()
    with pytest.raises(LatencyTableError, match=r"t\.yaml describes another host .*--recalibrate"):
        measure.recalibrate(tiny, fake.profile, out, work, SETTINGS, add_session=True)
    assert out.read_bytes() == saved


def test_recalibrate_refuses_an_incomplete_table(tiny, tmp_path, fake):
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    with pytest.raises(Interrupt):
        run_profile(tiny, fake.profile, out, work, SETTINGS, progress=_stop)
    with pytest.raises(LatencyTableError, match="is incomplete: .* resumes it"):
        measure.recalibrate(tiny, fake.profile, out, work, SETTINGS)


def _loads(monkeypatch, shares: list[float]):
    """cpu_load_ticks for chunks timed while other processes used `shares` percent of the
    CPUs, one share per attempt (10,000 jiffies each, this process idle)."""
    ticks, busy, total = [], 0, 0
    for share in shares:
        ticks.append((busy, total, 0))
        busy, total = busy + round(100 * share), total + 10_000
        ticks.append((busy, total, 0))
    feed = iter(ticks)
    monkeypatch.setattr(measure, "cpu_load_ticks", lambda: next(feed))


def _slowed_per_attempt(monkeypatch, clock, slows: list[float]) -> list[int]:
    """Each time_interleaved call (one attempt) runs with the clock at its `slows` factor;
    returns the list of calls made."""
    calls, real = [], measure.time_interleaved

    def attempt(*args, **kwargs):
        clock.slow = slows[len(calls)]
        calls.append(len(calls))
        return real(*args, **kwargs)

    monkeypatch.setattr(measure, "time_interleaved", attempt)
    return calls


@pytest.mark.parametrize(
    "shares, slows, limit, attempts, kept",
    [
        ([50.0, 2.0], [3.0, 1.0], 10.0, 2, 1),  # disturbed, then quiet: the quiet one
        ([60.0, 40.0, 50.0], [3.0, 2.0, 4.0], 10.0, 3, 1),  # never quiet: the least disturbed
        ([60.0], [3.0], None, 1, 0),  # no limit: timed once
        ([9.0], [3.0], 10.0, 1, 0),  # under the limit: timed once
        ([10.0], [3.0], 10.0, 1, 0),  # at the limit: timed once
        ([50.0, 50.0, 50.0], [3.0, 2.0, 4.0], 10.0, 3, 0),  # a tie keeps the earlier
        ([0.8, 0.0], [3.0, 2.0], 0.5, 2, 1),  # an idle machine is the least disturbed
    ],
)
def test_a_chunk_timed_while_others_load_the_cpus_is_timed_again(
    tiny, tmp_path, fake, monkeypatch, shares, slows, limit, attempts, kept
):
    _loads(monkeypatch, shares)
    calls = _slowed_per_attempt(monkeypatch, fake.clock, slows)
    profiler = measure.Profiler(tiny, fake.profile, tmp_path)
    settings = ProfileSettings(rounds=3, max_others_percent=limit, retries=2)
    arch, tasks = tiny.smallest(), ("face",)
    timings, anchor_ms, _ = profiler.time_chunk(
        {"s": profiler.compile_subnet(arch, tasks)}, settings
    )
    assert len(calls) == attempts
    anchor = A * float(fake.truth.sum_ms([anchor_subnet(tiny)[0]], anchor_subnet(tiny)[1])[0]) + B
    assert anchor_ms == pytest.approx(slows[kept] * anchor, rel=1e-6)
    subnet = A * float(fake.truth.sum_ms([arch], tasks)[0]) + B
    assert timings["s"].ms == pytest.approx(slows[kept] * subnet, rel=1e-6)
    assert profiler.others_percent == [shares[kept]]


def test_a_profile_disturbed_throughout_records_it_and_warns(tiny, tmp_path, fake, monkeypatch):
    chunks = -(-len(space_operators(tiny.spec)) // SETTINGS.chunk) + -(
        -SETTINGS.validation_subnets // SETTINGS.chunk
    )
    _loads(monkeypatch, [80.0] * chunks * (SETTINGS.retries + 1))
    out = tmp_path / "t.yaml"
    with pytest.warns(UfoWarning) as caught:
        run_profile(tiny, fake.profile, out, tmp_path / "work", SETTINGS)
    (message,) = [str(w.message) for w in caught]
    assert message == (
        f"{out}: {chunks} of {chunks} chunks were timed while other processes used up to 80% "
        "of the CPUs (limit 10%, each timed 3 times); its times may be off: measure it again "
        "on a quiet machine"
    )
    session = LatencyTable.load(out, tiny).provenance["sessions"][0]
    assert session["others_percent"] == [80.0] * chunks


def test_the_share_of_other_processes_is_kept_to_a_tenth_of_a_percent(
    tiny, tmp_path, fake, monkeypatch
):
    _loads(monkeypatch, [12.34])
    profiler = measure.Profiler(tiny, fake.profile, tmp_path)
    profiler.time_chunk({}, ProfileSettings(rounds=3, max_others_percent=20.0))
    assert profiler.others_percent == [12.3]


def _host_states(monkeypatch, fake, states: list[tuple[float, float]]) -> list[int]:
    """Each time_interleaved call (one attempt) runs with the clock at its state's first
    factor and the anchor subnet at the second on top (a host state that slows models
    unevenly); returns the list of calls made."""
    anchor = anchor_subnet(fake.truth.space)[0].to_string()
    calls, real = [], measure.time_interleaved

    def attempt(*args, **kwargs):
        fake.clock.slow, fake.odd[anchor] = states[len(calls)]
        calls.append(len(calls))
        return real(*args, **kwargs)

    monkeypatch.setattr(measure, "time_interleaved", attempt)
    return calls


@pytest.mark.parametrize(
    "shares, warning",
    [
        ([10.0, 80.0, None], "1 of 2 chunks were timed while other processes used up to 80%"),
        ([10.0, 10.0], None),  # at the limit: no warning
        ([None], None),
    ],
)
def test_the_warning_counts_only_chunks_over_the_limit(shares, warning, recwarn):
    profiler = SimpleNamespace(others_percent=shares, anchor_shifts=[None] * len(shares))
    measure.warn_if_disturbed(profiler, ProfileSettings(), "t.yaml")
    messages = [str(w.message) for w in recwarn.list if w.category is UfoWarning]
    assert messages == ([] if warning is None else [messages[0]])
    if warning:
        assert messages[0].startswith(f"t.yaml: {warning} of the CPUs (limit 10%, each timed 3")


@pytest.mark.parametrize("limit", [0.3, None])
def test_a_chunk_whose_anchor_ran_far_off_the_runs_median_is_timed_again(
    tiny, tmp_path, fake, monkeypatch, limit
):
    """The third chunk's first attempt runs the anchor 1.8x slow and the subnet 1.3x (a host
    state that slows models unevenly): timed again, the subnet keeps its true time over the
    anchor; without the limit it is 28% off."""
    anchor_arch, anchor_tasks = anchor_subnet(tiny)
    states = [(1.0, 1.0), (1.0, 1.0), (1.3, 1.8 / 1.3), (1.0, 1.0)]
    calls = _host_states(monkeypatch, fake, states)
    profiler = measure.Profiler(tiny, fake.profile, tmp_path)
    arch, tasks = tiny.largest(), ("face",)
    models = {"s": profiler.compile_subnet(arch, tasks)}
    settings = ProfileSettings(rounds=3, max_anchor_shift=limit)
    scaled = []
    for _ in range(3):
        timings, anchor_ms, _ = profiler.time_chunk(models, settings)
        scaled.append(timings["s"].ms / anchor_ms)
    subnet = A * float(fake.truth.sum_ms([arch], tasks)[0]) + B
    anchor = A * float(fake.truth.sum_ms([anchor_arch], anchor_tasks)[0]) + B
    if limit is None:
        assert len(calls) == 3
        assert scaled == pytest.approx([subnet / anchor] * 2 + [subnet / anchor * 1.3 / 1.8])
    else:
        assert len(calls) == 4
        assert scaled == pytest.approx([subnet / anchor] * 3, rel=1e-9)
    assert profiler.anchor_shifts[:2] == [None, None]
    assert profiler.anchor_shifts[2] == pytest.approx(0.0 if limit else 0.8)


def test_a_chunk_whose_anchor_stays_off_keeps_the_nearest_attempt_and_warns(
    tiny, tmp_path, fake, monkeypatch
):
    slows = [1.0, 1.0, 2.0, 1.6, 1.9]  # the third chunk's three attempts all far off
    calls = _slowed_per_attempt(monkeypatch, fake.clock, slows)
    profiler = measure.Profiler(tiny, fake.profile, tmp_path)
    settings = ProfileSettings(rounds=3)
    anchors = [profiler.time_chunk({}, settings)[1] for _ in range(3)]
    assert len(calls) == 5 and anchors[2] == pytest.approx(1.6 * anchors[0])
    assert profiler.anchor_shifts[2] == pytest.approx(0.6)
    with pytest.warns(UfoWarning) as caught:
        measure.warn_if_disturbed(profiler, settings, "t.yaml")
    assert [str(w.message) for w in caught] == [
        "t.yaml: 1 of 3 chunks kept an anchor up to 60% off its median in the run (limit 30%, "
        "each timed 3 times); its times may be off: measure it again on a quiet machine"
    ]


def test_a_chunk_whose_anchor_ran_off_the_runs_median_can_be_timed_again_in_place(
    tiny, tmp_path, fake, monkeypatch
):
    """Four chunks, the first 12% slow: `off_chunks` names it at a 5% limit, not at 15%; a
    second attempt at its usual speed replaces its record and keeps the lists aligned, one
    farther off leaves the first attempt in place."""
    calls = _slowed_per_attempt(monkeypatch, fake.clock, [1.12, 1.0, 1.0, 1.0, 1.0, 1.2])
    profiler = measure.Profiler(tiny, fake.profile, tmp_path)
    settings = ProfileSettings(rounds=3)
    for _ in range(4):
        profiler.time_chunk({}, settings)
    usual = profiler.anchor_alone_ms[1]
    assert profiler.anchor_alone_ms[0] == pytest.approx(1.12 * usual)
    assert profiler.off_chunks(0.05) == [0]
    assert profiler.off_chunks(0.15) == profiler.off_chunks(None) == []
    assert profiler.retime_chunk(0, {}, settings) is not None  # at 1.0: kept
    assert profiler.anchor_alone_ms == pytest.approx([usual] * 4)
    assert profiler.anchor_ms == pytest.approx([usual] * 4)
    assert len(profiler.anchor_shifts) == len(profiler.others_percent) == 4
    assert profiler.off_chunks(0.05) == []
    assert profiler.retime_chunk(1, {}, settings) is None  # at 1.2: the first stays
    assert profiler.anchor_alone_ms == pytest.approx([usual] * 4)
    assert len(calls) == 6


@pytest.mark.parametrize("recheck", [0.05, None])
def test_a_verified_chunk_whose_anchor_ran_off_is_timed_again_and_its_rows_land_true(
    tiny, tmp_path, fake, monkeypatch, recheck
):
    """`--verify`'s first chunk runs while the host slows the rows 1.25x and the anchor
    only 1.10x (as two real runs' first chunks did, before the guard has any history):
    re-checked at the end it is timed again and every row lands on its true time; without
    the re-check its rows land 13.6% slow."""
    table = run_profile(tiny, fake.profile, tmp_path / "t.yaml", tmp_path / "work", SETTINGS)
    states = [(1.25, 1.10 / 1.25), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0)]
    calls = _host_states(monkeypatch, fake, states)
    predictor, tasks = LatencyPredictor(tiny, table), ("face",)
    pairs = measure.validation_subnets(tiny, 12, seed=3)
    rows = [
        ParetoRow(a.to_string(), {}, {}, float(predictor.latency_ms([a], tasks)[0]), 1, 1)
        for a, _ in pairs
    ]
    settings = ProfileSettings(rounds=3, chunk=4, recheck_shift=recheck)
    profiler = measure.Profiler(tiny, fake.profile, tmp_path / "later")  # the anchor alone
    try:
        measured, steal, again = measure_front(profiler, table, tiny, tasks, rows, settings)
    finally:
        profiler.close()
    true_ms = [_true_ms(tiny, fake, arch, tasks) for arch, _ in pairs]
    off = [m / t - 1 for m, t in zip(measured, true_ms)]
    if recheck is None:
        assert len(calls) == 3 and again == []
        assert off[:4] == pytest.approx([1.25 / 1.10 - 1] * 4, rel=1e-6)
        assert off[4:] == pytest.approx([0.0] * 8, abs=1e-9)
    else:
        assert len(calls) == 4 and len(steal) == 3
        first = 1.10 * _true_ms(tiny, fake, *anchor_subnet(tiny))
        assert again == [{"chunk": 0, "first_anchor_ms": pytest.approx(first), "kept": "again"}]
        assert off == pytest.approx([0.0] * 12, abs=1e-9)


@pytest.mark.parametrize("recheck", [0.05, None])
def test_a_verified_chunk_whose_references_outvoted_its_anchor_is_timed_again(
    tiny, tmp_path, fake, monkeypatch, recheck
):
    """`--verify`'s first chunk runs its reference subnets 20% slow while its anchor and
    rows run true (a bf16 run's first chunk ran its references 18-19% over its anchor): the
    references outvote the anchor (`implied_anchor_ms`), so the chunk's scale lies 20% off
    the run's though its anchor alone lies on it. Re-checked by that scale, the chunk is
    timed again and every row lands true; without the re-check its rows land 16.7% fast."""
    table = run_profile(tiny, fake.profile, tmp_path / "t.yaml", tmp_path / "work", SETTINGS)
    predictor, tasks = LatencyPredictor(tiny, table), ("face",)
    refs = predictor.reference_subnets()
    pairs = measure.validation_subnets(tiny, 12, seed=3)
    assert len(refs) == 2 and not {r.arch for r in refs} & {a.to_string() for a, _ in pairs}
    calls, real = [], measure.time_interleaved

    def attempt(*args, **kwargs):  # the references 1.2x slow in the first attempt only
        fake.odd.update({ref.arch: 1.2 if not calls else 1.0 for ref in refs})
        calls.append(len(calls))
        return real(*args, **kwargs)

    monkeypatch.setattr(measure, "time_interleaved", attempt)
    rows = [
        ParetoRow(a.to_string(), {}, {}, float(predictor.latency_ms([a], tasks)[0]), 1, 1)
        for a, _ in pairs
    ]
    settings = ProfileSettings(rounds=3, chunk=4, recheck_shift=recheck)
    profiler = measure.Profiler(tiny, fake.profile, tmp_path / "later", refs)
    try:
        measured, _, again = measure_front(profiler, table, tiny, tasks, rows, settings)
        alone = profiler.anchor_alone_ms
    finally:
        profiler.close()
    anchor = _true_ms(tiny, fake, *anchor_subnet(tiny))
    assert alone == pytest.approx([anchor] * 3)  # the anchor ran true in every attempt
    true_ms = [_true_ms(tiny, fake, arch, tasks) for arch, _ in pairs]
    off = [m / t - 1 for m, t in zip(measured, true_ms)]
    if recheck is None:
        assert len(calls) == 3 and again == []
        assert off[:4] == pytest.approx([1 / 1.2 - 1] * 4, rel=1e-6)
        assert off[4:] == pytest.approx([0.0] * 8, abs=1e-9)
    else:
        assert len(calls) == 4
        assert again == [
            {"chunk": 0, "first_anchor_ms": pytest.approx(1.2 * anchor), "kept": "again"}
        ]
        assert off == pytest.approx([0.0] * 12, abs=1e-9)


RECHECKED = replace(SETTINGS, validation_subnets=12)  # three chunks of subnets
OPERATOR_CHUNKS = 4  # the tiny space's 13 operators in chunks of 4


@pytest.mark.parametrize("recheck", [0.05, None])
def test_a_validation_chunk_whose_anchor_ran_off_is_timed_again_and_its_rows_land_true(
    tiny, tmp_path, fake, monkeypatch, recheck
):
    """The first chunk of validation subnets runs while the host slows them 1.25x and the
    anchor only 1.10x: re-checked once the three are timed, it is timed again and the table
    fits its subnets exactly (its session names the chunk); without the re-check its rows
    are 13.6% slow on the table's scale and the fit misses."""
    states = [(1.0, 1.0)] * OPERATOR_CHUNKS + [(1.25, 1.10 / 1.25)] + [(1.0, 1.0)] * 3
    calls = _host_states(monkeypatch, fake, states)
    out = tmp_path / "t.yaml"
    settings = replace(RECHECKED, recheck_shift=recheck)
    table = run_profile(tiny, fake.profile, out, tmp_path / "work", settings)
    assert table.to_dict() == LatencyTable.load(out, tiny).to_dict()
    off = [
        table.scaled_ms(row.measured_ms, row.anchor_ms)
        / _true_ms(tiny, fake, tiny.parse(row.arch), row.tasks)
        - 1
        for row in table.validation
    ]
    session = table.provenance["sessions"][0]
    if recheck is None:
        assert len(calls) == OPERATOR_CHUNKS + 3 and session["timed_again"] == []
        assert off[:4] == pytest.approx([1.25 / 1.10 - 1] * 4, rel=1e-6)
        assert off[4:] == pytest.approx([0.0] * 8, abs=1e-9)
        assert table.metrics["mean_abs_pct_error"] > 1.0
    else:
        assert len(calls) == OPERATOR_CHUNKS + 4
        first = 1.10 * _true_ms(tiny, fake, *anchor_subnet(tiny))
        (again,) = session["timed_again"]
        assert again["chunk"] == OPERATOR_CHUNKS and again["kept"] == "again"
        assert again["first_anchor_ms"] == pytest.approx(first)
        slow = [1.25 * _true_ms(tiny, fake, tiny.parse(r.arch), r.tasks) for r in table.validation]
        assert again["first_ms"] == pytest.approx(slow[:4])  # what the table held before
        assert off == pytest.approx([0.0] * 12, abs=1e-9)
        assert table.metrics["mean_abs_pct_error"] == pytest.approx(0.0, abs=1e-3)
    assert len(session["steal_percent"]) == len(session["others_percent"]) == OPERATOR_CHUNKS + 3


def test_undoing_the_recheck_gives_back_the_table_profiled_without_it(
    tiny, tmp_path, fake, monkeypatch
):
    """`tools/undo_recheck.py`: the first attempts a session records put back in place
    give the rows (and so the fit) a profile without the re-check wrote on the same host."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    from undo_recheck import undo_recheck

    tables, timed = [], measure.time_interleaved
    for recheck in (0.05, None):
        states = [(1.0, 1.0)] * OPERATOR_CHUNKS + [(1.25, 1.10 / 1.25)] + [(1.0, 1.0)] * 3
        monkeypatch.setattr(measure, "time_interleaved", timed)  # each run its own states
        _host_states(monkeypatch, fake, states)
        settings = replace(RECHECKED, recheck_shift=recheck)
        out, work = tmp_path / f"{recheck}.yaml", tmp_path / f"work-{recheck}"
        tables.append(run_profile(tiny, fake.profile, out, work, settings))
    rechecked, without = tables
    assert undo_recheck(rechecked, RECHECKED.chunk) == 1
    assert rechecked.validation == without.validation
    measure.calibrate(tiny, rechecked)
    assert rechecked.calibration == pytest.approx(without.calibration)


@pytest.mark.parametrize("cap, retimed", [(1, [0]), (None, [0, 1])])
def test_a_session_times_again_at_most_its_cap_of_chunks_farthest_first(
    tiny, tmp_path, fake, monkeypatch, cap, retimed
):
    """Two of four subnet chunks run anchor and subnets 20% and 10% slow: with a cap of one
    only the farther is timed again (ViT-Base's P5 has room for about two)."""
    slow = [(1.2, 1.0), (1.1, 1.0), (1.0, 1.0), (1.0, 1.0)]
    states = [(1.0, 1.0)] * OPERATOR_CHUNKS + slow + [(1.0, 1.0)] * 2
    calls = _host_states(monkeypatch, fake, states)
    settings = replace(RECHECKED, validation_subnets=16, recheck_chunks=cap)
    table = run_profile(tiny, fake.profile, tmp_path / "t.yaml", tmp_path / "work", settings)
    assert len(calls) == OPERATOR_CHUNKS + 4 + len(retimed)
    again = table.provenance["sessions"][0]["timed_again"]
    assert [a["chunk"] - OPERATOR_CHUNKS for a in again] == retimed
    assert table.metrics["mean_abs_pct_error"] == pytest.approx(0.0, abs=1e-3)


def test_the_re_check_ends_at_the_first_attempt_that_comes_no_nearer(
    tiny, tmp_path, fake, monkeypatch
):
    """Two of four subnet chunks run 20% and 10% slow, and the host is still 20% slow when
    the farther is timed again: that attempt is not kept, and the nearer is not tried."""
    slow = [(1.2, 1.0), (1.1, 1.0), (1.0, 1.0), (1.0, 1.0)]
    states = [(1.0, 1.0)] * OPERATOR_CHUNKS + slow + [(1.2, 1.0)] + [(1.0, 1.0)] * 2
    calls = _host_states(monkeypatch, fake, states)
    settings = replace(RECHECKED, validation_subnets=16, recheck_chunks=None)
    table = run_profile(tiny, fake.profile, tmp_path / "t.yaml", tmp_path / "work", settings)
    assert len(calls) == OPERATOR_CHUNKS + 4 + 1
    again = table.provenance["sessions"][0]["timed_again"]
    assert [(a["chunk"] - OPERATOR_CHUNKS, a["kept"]) for a in again] == [(0, "first")]


def test_operator_chunks_are_not_timed_again(tiny, tmp_path, fake, monkeypatch):
    """The first operator chunk runs its anchor and operators 20% slow: `off_chunks` names
    it, but only chunks of subnets are timed again; anchor-scaled, its rows are true."""
    states = [(1.2, 1.0)] + [(1.0, 1.0)] * (OPERATOR_CHUNKS + 2)
    calls = _host_states(monkeypatch, fake, states)
    table = run_profile(tiny, fake.profile, tmp_path / "t.yaml", tmp_path / "work", RECHECKED)
    assert len(calls) == OPERATOR_CHUNKS + 3
    assert table.provenance["sessions"][0]["timed_again"] == []
    for key, cost in fake.costs.items():
        assert table.op_ms(key) == pytest.approx(cost, rel=1e-6)


def test_a_recalibration_rechecks_its_chunks_and_keeps_the_first_where_the_second_is_worse(
    tiny, tmp_path, fake, monkeypatch
):
    """Recalibrating (`--recalibrate`, `--add-session`) times subnets as profiling does: its
    first chunk's anchor runs 8% off, and so does the attempt timed again (16%): the first
    attempt stays, and the session says so."""
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    run_profile(tiny, fake.profile, out, work, RECHECKED)
    calls = _host_states(monkeypatch, fake, [(1.08, 1.0), (1.0, 1.0), (1.0, 1.0), (1.16, 1.0)])
    table = measure.recalibrate(tiny, fake.profile, out, work, RECHECKED)
    assert len(calls) == 4
    first = 1.08 * _true_ms(tiny, fake, *anchor_subnet(tiny))
    (again,) = table.provenance["sessions"][-1]["timed_again"]
    assert again["chunk"] == 0 and again["kept"] == "first"
    assert again["first_anchor_ms"] == pytest.approx(first)
    assert again["first_ms"] == [row.measured_ms for row in table.validation[:4]]  # kept
    assert table.metrics["mean_abs_pct_error"] == pytest.approx(0.0, abs=1e-3)


def test_a_disturbed_recalibration_records_it_and_warns_naming_the_table(
    tiny, tmp_path, fake, monkeypatch
):
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    run_profile(tiny, fake.profile, out, work, SETTINGS)
    chunks = -(-SETTINGS.validation_subnets // SETTINGS.chunk)
    _loads(monkeypatch, [80.0] * chunks * (SETTINGS.retries + 1))
    with pytest.warns(UfoWarning, match=f"^{out}: {chunks} of {chunks} chunks were timed"):
        measure.recalibrate(tiny, fake.profile, out, work, SETTINGS)
    session = LatencyTable.load(out, tiny).provenance["sessions"][-1]
    assert session["kind"] == "recalibration"
    assert session["others_percent"] == [80.0] * chunks


def test_recalibrating_into_another_file_leaves_the_table_it_moved_as_it_was(
    tiny, tmp_path, fake, monkeypatch
):
    source, work = tmp_path / "t.yaml", tmp_path / "work"
    built = run_profile(tiny, fake.profile, source, work, SETTINGS)
    built.provenance["host"] = {"cpu": "other", "isa": [], "isa_checked": []}
    built.save(source)
    saved = source.read_bytes()
    monkeypatch.setattr(sys.modules[__name__], "B", 2.0)
    out = tmp_path / "hosts" / "here" / "t.yaml"
    table = measure.recalibrate(tiny, fake.profile, out, work, SETTINGS, source=source)
    assert source.read_bytes() == saved
    assert LatencyTable.load(out, tiny).to_dict() == table.to_dict()
    assert table.provenance["host"] == measure.host_fingerprint()
    assert table.operators == built.operators
    assert table.provenance["sessions"][-1]["replaced"]["host"]["cpu"] == "other"
    assert table.metrics["mean_abs_pct_error"] == pytest.approx(0.0, abs=1e-3)


def _true_ms(tiny, fake, arch, tasks) -> float:
    return A * float(fake.truth.sum_ms([arch], tuple(tasks))[0]) + B


def test_reference_subnets_are_validation_subnets_spread_over_the_tables_times(
    tiny, tmp_path, fake
):
    table = run_profile(tiny, fake.profile, tmp_path / "t.yaml", tmp_path / "work", SETTINGS)
    anchor = _true_ms(tiny, fake, *anchor_subnet(tiny))
    refs = LatencyPredictor(tiny, table).reference_subnets()
    assert [(r.arch, r.tasks) for r in refs] == table.reference_pairs()
    for ref in refs:
        want = _true_ms(tiny, fake, tiny.parse(ref.arch), ref.tasks) / anchor
        assert ref.anchors == pytest.approx(want, rel=1e-6)
    # six subnets at 1.0-8.0 ms (anchor 1 ms), four of them small as one-task subnets are:
    # the range's thirds on a log scale are 2 and 4 ms, nearest 1.3 and 4.0 (the quantiles
    # would pick 1.1 and 1.2, leaving the large subnets without a reference of their size)
    table.validation = [
        ValidationRow(f"s{ms}", ["face"], ms, 1.0) for ms in (1.0, 1.1, 1.2, 1.3, 4.0, 8.0)
    ]
    assert table.reference_pairs() == [("s1.3", ("face",)), ("s4.0", ("face",))]
    assert table.reference_pairs(1) == [("s4.0", ("face",))]  # sqrt(8) = 2.8: log-nearer 4
    table.validation = []
    assert table.reference_pairs() == []


def test_a_references_time_is_taken_over_four_rows_of_its_kind(tiny, tmp_path, fake):
    """A reference's own row is one timing: 6% high, it would scale every model of its size
    6% off; taken over the four rows serving as many tasks nearest its size, the one row
    does not move it. A level the table measured for a whole kind (every-task subnets 5%
    over the fit) stays: the references carry the table's times, not its fit's."""
    table = run_profile(tiny, fake.profile, tmp_path / "t.yaml", tmp_path / "work", SETTINGS)
    anchor = _true_ms(tiny, fake, *anchor_subnet(tiny))
    pairs = measure.validation_subnets(tiny, 40, 0)
    table.validation = [  # 40 subnets on the exact fit, 10 of them serving every task
        ValidationRow(a.to_string(), list(t), _true_ms(tiny, fake, a, t), anchor) for a, t in pairs
    ]
    pairs = table.reference_pairs()
    kinds = {len(tasks) for _, tasks in pairs}
    assert kinds == {1, len(tiny.tasks)}  # one reference of each kind here

    def anchors() -> dict[int, float]:
        refs = LatencyPredictor(tiny, table).references_of(pairs)
        return {len(ref.tasks): ref.anchors for ref in refs}

    exact = anchors()
    for row in table.validation:
        if (row.arch, tuple(row.tasks)) in pairs:
            row.measured_ms *= 1.06
    assert anchors() == pytest.approx(exact, rel=1e-6)
    for row in table.validation:
        row.measured_ms /= 1.06 if (row.arch, tuple(row.tasks)) in pairs else 1.0
        row.measured_ms *= 1.05 if len(row.tasks) > 1 else 1.0
    moved = anchors()
    assert moved[1] == pytest.approx(exact[1], rel=1e-6)
    assert moved[len(tiny.tasks)] == pytest.approx(1.05 * exact[len(tiny.tasks)], rel=1e-6)
    assert LatencyPredictor(tiny, table).references_of([("d1-h1", ("face",))]) == []


def test_a_host_that_slows_large_models_more_is_followed_by_the_references(tiny, tmp_path, fake):
    """`ufo search --verify` on a later host 1.5x slower, and slower still the larger the
    model (a neighbour thrashing the shared cache: held out, tiny TVM subnets serving every
    task slowed 10-13% while the anchor moved 1.5%): each front row up to the largest
    reference's size lands on its true time; scaled by its chunk's anchor alone it would land
    up to 10% slow. Fronts for one task and for all, as their sizes differ."""
    table = run_profile(tiny, fake.profile, tmp_path / "t.yaml", tmp_path / "work", SETTINGS)
    predictor = LatencyPredictor(tiny, table)
    refs = predictor.reference_subnets()
    anchor = _true_ms(tiny, fake, *anchor_subnet(tiny))
    largest = max(ref.anchors for ref in refs)
    for ref in refs:  # 1 + 0.1 ln(size): linear on the log scale of size
        fake.odd[ref.arch] = 1 + 0.1 * np.log(ref.anchors)
    fake.clock.slow = 1.5
    settings = ProfileSettings(rounds=3, chunk=4)
    off = []
    for seed, tasks in enumerate((("face",), tuple(tiny.tasks))):
        rows, true_ms = [], []
        for arch, _ in measure.validation_subnets(tiny, 40, seed):
            ms = _true_ms(tiny, fake, arch, tasks)
            if ms <= largest * anchor and arch.to_string() not in fake.odd:
                fake.odd[arch.to_string()] = 1 + 0.1 * np.log(ms / anchor)
                predicted = float(predictor.latency_ms([arch], tasks)[0])
                rows.append(ParetoRow(arch.to_string(), {}, {}, predicted, 1, 1))
                true_ms.append(ms)
        assert len(rows) >= 4
        profiler = measure.Profiler(tiny, fake.profile, tmp_path / "later", refs)
        try:
            measured, _, again = measure_front(profiler, table, tiny, tasks, rows, settings)
            assert again == []  # every chunk's anchor at the same time: none timed again
            anchors = profiler.anchor_ms
        finally:
            profiler.close()
        assert measured == pytest.approx(true_ms, rel=1e-6)
        for k, ms in enumerate(true_ms):  # its raw time, scaled by its chunk's anchor instead
            raw = 1.5 * ms * (1 + 0.1 * np.log(ms / anchor))
            off.append(table.scaled_ms(raw, anchors[k // settings.chunk]) / ms - 1)
    assert max(off) > 0.08  # rows from 1.3 to 2.9 anchors


def test_a_model_is_scaled_by_the_timed_models_nearest_its_size():
    """The anchor (1 anchor) ran at 1.0 ms; references of 2 and 4 anchors imply 1.1 and 1.2
    ms for it (the host slowed the larger models more)."""
    refs = [ReferenceSubnet("b", ("face",), 4.0), ReferenceSubnet("a", ("face",), 2.0)]
    ms = [4.8, 2.2]  # in the order of refs
    assert matched_anchor_ms(1.0, refs, ms, 1.0) == pytest.approx(1.0)  # the anchor's size
    assert matched_anchor_ms(1.0, refs, ms, 0.5) == pytest.approx(1.0)  # held at the ends
    assert matched_anchor_ms(1.0, refs, ms, 2.0) == pytest.approx(1.1)
    assert matched_anchor_ms(1.0, refs, ms, 4.0) == pytest.approx(1.2)
    assert matched_anchor_ms(1.0, refs, ms, 9.0) == pytest.approx(1.2)
    assert matched_anchor_ms(1.0, refs, ms, 8**0.5) == pytest.approx(1.15)  # halfway, on logs
    assert matched_anchor_ms(1.0, [], [], 3.0) == 1.0  # no references: the anchor alone


@pytest.mark.parametrize(
    "odd_one, references",
    [
        ("anchor", 2),  # the anchor 25% fast, the references in step: outvoted
        ("reference", 2),  # a reference 30% slow: outvoted
        ("anchor", 0),  # no references: the anchor alone sets the scale, 25% off
    ],
)
def test_an_anchor_out_of_step_with_the_references_is_outvoted(
    tiny, tmp_path, fake, odd_one, references
):
    """Another process, 1.5x slower, measures a subnet against the table: on the table's
    scale it lands on its true time unless a lone anchor ran out of step."""
    table = run_profile(tiny, fake.profile, tmp_path / "t.yaml", tmp_path / "work", SETTINGS)
    refs = LatencyPredictor(tiny, table).reference_subnets()[:references]
    anchor_arch, anchor_tasks = anchor_subnet(tiny)
    anchor = _true_ms(tiny, fake, anchor_arch, anchor_tasks)
    fake.clock.slow = 1.5
    first_reference = table.reference_pairs()[0][0]
    odd = {"anchor": (anchor_arch.to_string(), 0.75), "reference": (first_reference, 1.3)}
    fake.odd[odd[odd_one][0]] = odd[odd_one][1]
    profiler = measure.Profiler(tiny, fake.profile, tmp_path / "later", refs)
    arch, tasks = tiny.largest(), ("face",)
    try:
        timings, anchor_ms, _ = profiler.time_chunk(
            {"s": profiler.compile_subnet(arch, tasks)}, ProfileSettings(rounds=3)
        )
    finally:
        profiler.close()
    alone = 1.5 * anchor * (0.75 if odd_one == "anchor" else 1.0)
    assert profiler.anchor_alone_ms == [pytest.approx(alone, rel=1e-6)]
    scale = alone if references == 0 else 1.5 * anchor
    assert anchor_ms == pytest.approx(scale, rel=1e-6)
    measured = table.scaled_ms(timings["s"].ms, anchor_ms)
    off = 1 / 0.75 if references == 0 else 1.0
    assert measured == pytest.approx(off * _true_ms(tiny, fake, arch, tasks), rel=1e-6)
    assert set(timings) == {"s"}  # the anchor's and references' timings are not returned
    assert not list((tmp_path / "later").glob("subnet-*"))  # close removed the kept folders


def test_the_references_outvote_only_an_anchor_far_out_of_step():
    refs = [ReferenceSubnet("a", ("face",), 2.0), ReferenceSubnet("b", ("face",), 4.0)]
    assert implied_anchor_ms(0.44, refs, [1.18, 2.40]) == pytest.approx(0.59)  # 0.44, .59, .60
    assert implied_anchor_ms(0.76, refs, [1.18, 2.40]) == pytest.approx(0.60)  # 27% slow
    assert implied_anchor_ms(0.60, refs, [1.20, 2.40]) == 0.60  # all agree
    assert implied_anchor_ms(0.55, refs, [1.18, 2.40]) == 0.55  # 7% off: the references' noise
    assert implied_anchor_ms(0.52, refs, [1.04, 2.40]) == 0.52  # one reference agrees
    assert implied_anchor_ms(0.5, [], []) == 0.5
    with pytest.raises(ValueError):
        implied_anchor_ms(0.5, refs, [1.0])
