"""The module-level functions of `ufo profile` (latency/measure.py) as numbers and records:
the work folder, the anchor, the validation subnets and the plan, the new table's
provenance and its sessions, the chunks, progress and steal of a measuring run, the rerun
of a complete table, the calibration and its error metrics, and the refusals of
`run_profile` and `recalibrate` (each naming the file). The fake backend and clock of
test_measure_values.py time them; subnets are not built (their cost needs only the arch)."""

from __future__ import annotations

import itertools
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pytest

from tests.latency.test_measure_values import SETTINGS, A, B, Interrupt, fake
from ufo_nas.backends.torch_eager import TorchBackend
from ufo_nas.cost import CostModel
from ufo_nas.hardware import profile_from_dict
from ufo_nas.latency import measure
from ufo_nas.latency.measure import (
    NO_EXPORT,
    SUBNETS_BUILT,
    calibrate,
    default_work_dir,
    error_metrics,
    new_table,
    plan,
    recalibrate,
    run_profile,
    start_session,
    validation_subnets,
)
from ufo_nas.latency.operator_set import space_operators
from ufo_nas.latency.predictor import LatencyPredictor
from ufo_nas.latency.table import SCHEMA, LatencyTable, LatencyTableError, ValidationRow
from ufo_nas.latency.weights import TIMED_WEIGHTS
from ufo_nas.onnx_io import PROFILE_EXPORT

__all__ = ["fake"]  # the fixture, used here by name


class _Net:
    """Stands in for the supernet: `extract` below needs only the arch and the tasks."""

    def eval(self) -> _Net:
        return self

    def parameters(self) -> list:
        return []


@pytest.fixture
def quick(fake, monkeypatch):
    """`fake` without building subnets, and a steal percent of 1, 2, 3, ... per chunk."""
    monkeypatch.setattr(measure, "SuperViT", lambda spec: _Net())
    monkeypatch.setattr(
        measure, "extract", lambda net, arch, tasks: SimpleNamespace(arch=arch, tasks=tasks)
    )
    steal = itertools.count(1.0)
    monkeypatch.setattr(measure, "steal_percent", lambda before, after: next(steal))
    monkeypatch.setattr(sys, "argv", ["/usr/bin/ufo", "profile", "--device", "f"])
    return fake


class Recorder:
    """A progress callback that records its counted calls (not the steps it hears of with
    0 units) and raises Interrupt at `stop_at`."""

    def __init__(self, stop_at: str | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.stop_at = stop_at

    def __call__(self, what: str, n: int) -> None:
        if n:
            self.calls.append((what, n))
        if what == self.stop_at:
            raise Interrupt


def _subnet_ms(fake, arch, tasks) -> float:
    return A * float(fake.truth.sum_ms([arch], tuple(tasks))[0]) + B


def _pairs(pairs) -> list[tuple[str, tuple[str, ...]]]:
    return [(arch.to_string(), tuple(tasks)) for arch, tasks in pairs]


def _message(error: pytest.ExceptionInfo) -> str:
    return str(error.value)


# --- where, what and in which order -------------------------------------------------------


def test_the_default_work_dir_is_under_the_users_cache(tiny, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    want = tmp_path / ".cache" / "ufo-nas" / "profile" / "cpu-torch" / "ufo_vit_tiny"
    assert default_work_dir("cpu-torch", tiny) == want  # as `ufo profile --help` says


def test_validation_subnets_one_task_each_and_every_fourth_all_tasks(tiny):
    pairs = validation_subnets(tiny, 40, seed=0)
    assert len(pairs) == 40
    for k, (arch, tasks) in enumerate(pairs):
        tiny.check(arch)
        if k % 4 == 3:
            assert tasks == tiny.tasks
        else:
            assert len(tasks) == 1 and tasks[0] in tiny.tasks
    assert {tasks[0] for k, (_, tasks) in enumerate(pairs) if k % 4 != 3} == set(tiny.tasks)
    assert _pairs(validation_subnets(tiny, 8, seed=5)) == _pairs(validation_subnets(tiny, 8, 5))
    assert _pairs(validation_subnets(tiny, 8, seed=5)) != _pairs(validation_subnets(tiny, 8, 6))


def test_plan_follows_the_seed(tiny):
    settings = replace(SETTINGS, seed=3)
    todo = plan(tiny, None, settings)
    assert _pairs(todo.validation) == _pairs(validation_subnets(tiny, 6, 3))
    assert [op.key for op in todo.operators] == [op.key for op in space_operators(tiny.spec)]


# --- a measuring run -----------------------------------------------------------------------


def test_a_run_in_chunks_reports_progress_steal_and_resumes_its_subnets(tiny, tmp_path, quick):
    """13 operators in chunks of 4 and 6 subnets, interrupted after the first chunk of
    subnets: the plan then holds only the other two, which the resumed run measures."""
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    first = Recorder(stop_at="subnets")
    with pytest.raises(Interrupt):
        run_profile(tiny, quick.profile, out, work, SETTINGS, progress=first)
    assert first.calls == [("operators", 4)] * 3 + [("operators", 1), ("subnets", 4)]
    cut = LatencyTable.load(out, tiny)
    assert len(cut.operators) == 13 and len(cut.validation) == 4
    every = validation_subnets(tiny, 6, 0)
    assert _pairs(plan(tiny, cut, SETTINGS).validation) == _pairs(every[4:])
    assert not plan(tiny, cut, SETTINGS).operators

    second = Recorder()
    table = run_profile(tiny, quick.profile, out, work, SETTINGS, progress=second)
    assert second.calls == [("subnets", 2)]
    assert [(row.arch, tuple(row.tasks)) for row in table.validation] == _pairs(every)
    assert [row.session for row in table.validation] == [0] * 4 + [1] * 2
    sessions = table.provenance["sessions"]
    assert [s["steal_percent"] for s in sessions] == [[1.0, 2.0, 3.0, 4.0, 5.0], [6.0]]
    for key, cost in quick.costs.items():
        row = table.operators[key]
        assert row.ms == pytest.approx(cost) and row.median_ms == pytest.approx(cost)
    assert table.metrics["validation_subnets"] == 6


def test_a_new_table_records_its_setup_anchor_and_session(tiny, tmp_path, quick):
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    began = datetime.now(timezone.utc).replace(microsecond=0)
    run_profile(tiny, quick.profile, out, work, SETTINGS)
    table = LatencyTable.load(out, tiny)
    profile = quick.profile
    provenance = dict(table.provenance)
    sessions = provenance.pop("sessions")
    assert provenance == {
        "schema": SCHEMA,
        "backend": "fake",
        "versions": {"fake": "1"},
        "device": profile.device,
        "precision": profile.precision,
        "recipe": "",  # the graph as given
        "threads": profile.threads,
        "batch": profile.batch,
        "host": measure.host_fingerprint(),
        "timing": measure.TIMING,
        "anchor": {"arch": tiny.smallest().to_string(), "tasks": [tiny.tasks[0]]},
    }
    assert len(sessions) == 1
    session = dict(sessions[0])
    date = datetime.fromisoformat(session.pop("date"))
    assert date.utcoffset() == timedelta(0)  # UTC, to the second
    assert began <= date <= datetime.now(timezone.utc)
    want = {
        "command": "ufo profile --device f",
        "rounds": 3,
        "min_rounds": 7,
        "chunk_seconds": 30.0,
        "fill_seconds": 10.0,
        "max_rounds": 60,
        "calls_per_round": 2,
        "warm_calls": 3,  # each visit warm: 3 untimed calls before the 2 timed ones
        "copies": 2,
        "export": NO_EXPORT,  # the fake backend times the module itself
        "subnets": SUBNETS_BUILT,
        "weights": TIMED_WEIGHTS,
        "steal_percent": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    }
    assert {key: session[key] for key in want} == want
    anchor = _subnet_ms(quick, tiny.smallest(), tiny.tasks[:1])  # the first task's smallest
    anchors = [row.anchor_ms for row in table.operators.values()]
    assert anchors == pytest.approx([anchor] * len(quick.costs))


def test_start_session_begins_a_table_without_sessions(tiny):
    table = LatencyTable(tiny.name, tiny.spec.fingerprint(), "d", True)
    assert start_session(table, SETTINGS) == 0
    assert start_session(table, SETTINGS, needs_onnx=False) == 1
    exports = [session["export"] for session in table.provenance["sessions"]]
    assert exports == [PROFILE_EXPORT, NO_EXPORT]


def test_without_validation_subnets_the_operators_are_still_measured(tiny, tmp_path, quick):
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    table = run_profile(tiny, quick.profile, out, work, replace(SETTINGS, validation_subnets=0))
    assert set(table.operators) == set(quick.costs) and not table.validation
    assert len(table.provenance["sessions"]) == 1


def test_rerunning_a_complete_table_refits_its_lost_calibration_and_times_nothing(
    tiny, tmp_path, quick
):
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    built = run_profile(tiny, quick.profile, out, work, SETTINGS)
    cut = LatencyTable.load(out, tiny)
    cut.calibration, cut.metrics = {"a": 1.0, "b": 0.0, "c": 0.0}, {}
    cut.save(out)

    table = run_profile(tiny, quick.profile, out, work, SETTINGS, progress=Recorder("any"))
    assert table.to_dict() == built.to_dict()  # no new session, the same calibration
    assert LatencyTable.load(out, tiny).to_dict() == built.to_dict()
    assert table.calibration["a"] == pytest.approx(A, rel=1e-5)


# --- calibration and its metrics ------------------------------------------------------------


def test_error_metrics_are_relative_to_the_measured_time():
    measured = np.array([100.0, 100.0, 100.0, 200.0])
    predicted = np.array([105.0, 110.0, 150.0123, 200.0])  # errors 5%, 10%, ~50%, 0
    metrics = error_metrics(predicted, measured)
    assert set(metrics) == {"mean_abs_pct_error", "within_5pct", "within_10pct"}
    assert metrics["mean_abs_pct_error"] == pytest.approx(100 * 0.650123 / 4, abs=5e-4)
    assert metrics["within_5pct"] == pytest.approx(2 / 4, abs=5e-5)  # 5% exactly is within
    assert metrics["within_10pct"] == pytest.approx(3 / 4, abs=5e-5)
    thirds = error_metrics(np.array([1.0, 1.2, 2.0]), np.array([1.0, 1.0, 1.0]))
    assert thirds["within_5pct"] == pytest.approx(1 / 3, abs=5e-5)
    assert thirds["within_10pct"] == pytest.approx(1 / 3, abs=5e-5)
    assert thirds["mean_abs_pct_error"] == pytest.approx(100 * 1.2 / 3, abs=5e-4)


def test_calibrate_fits_a_parameter_term_and_reports_the_uncalibrated_error(tiny, fake):
    """Subnets costing 1.1 * sum + 0.4 + 0.3 ms per million parameters: the fit finds the
    parameter term, its in-sample error is zero, and the plain sum's error is reported
    beside it."""
    table = LatencyTable(
        tiny.name,
        tiny.spec.fingerprint(),
        "d",
        True,
        operators=fake.truth.table.operators,
        validation=[
            ValidationRow(arch.to_string(), list(tasks), 1.0, 1.0)
            for arch, tasks in validation_subnets(tiny, 12, seed=1)
        ],
    )
    x, _ = LatencyPredictor(tiny, table).calibration_data()
    mparams = [
        CostModel(tiny).params([tiny.parse(row.arch)], row.tasks)[0] / 1e6
        for row in table.validation
    ]
    np.testing.assert_allclose(x.mparams, mparams)
    measured = 1.1 * x.sum_ms + 0.4 + 0.3 * x.mparams
    for row, ms in zip(table.validation, measured):
        row.measured_ms = float(ms)
    calibrate(tiny, table)
    cal = table.calibration
    assert cal["model"] == "a*sum+b+d*mparams relative"
    assert (cal["a"], cal["b"], cal["c"], cal["d"]) == pytest.approx((1.1, 0.4, 0, 0.3), abs=1e-6)
    assert table.metrics["validation_subnets"] == 12
    assert table.metrics["mean_abs_pct_error"] == pytest.approx(0.0, abs=1e-3)
    assert table.metrics["within_5pct"] == table.metrics["within_10pct"] == 1.0
    uncalibrated = 100 * float(np.mean(np.abs(x.sum_ms - measured) / measured))
    assert uncalibrated > 5
    assert table.metrics["uncalibrated_mean_abs_pct_error"] == pytest.approx(uncalibrated, abs=5e-4)


# --- refusals ---------------------------------------------------------------------------------


def test_run_profile_refuses_another_devices_or_an_estimated_table(tiny, tmp_path, quick):
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    name = quick.profile.name
    estimate = new_table(tiny, quick.profile)
    estimate.measured = False
    estimate.save(out)
    with pytest.raises(LatencyTableError) as error:
        run_profile(tiny, quick.profile, out, work, SETTINGS)
    assert _message(error) == (
        f"{out} holds a table of device '{name}' (an estimate), not a measured '{name}' table"
    )
    other = replace(new_table(tiny, quick.profile), device="cpu-other")
    other.save(out)
    with pytest.raises(LatencyTableError) as error:
        run_profile(tiny, quick.profile, out, work, SETTINGS)
    assert _message(error) == (
        f"{out} holds a table of device 'cpu-other', not a measured '{name}' table"
    )


def test_refit_refuses_an_estimate_and_an_incomplete_table_leaving_it_as_it_was(
    tiny, tmp_path, quick
):
    out = tmp_path / "t.yaml"
    estimate = new_table(tiny, quick.profile)
    estimate.measured = False
    estimate.save(out)
    saved = out.read_bytes()
    with pytest.raises(LatencyTableError) as error:
        measure.refit(tiny, LatencyTable.load(out, tiny), out)
    assert _message(error) == f"{out} is a roofline estimate; nothing to refit"
    assert out.read_bytes() == saved
    new_table(tiny, quick.profile).save(out)  # measured, no operator yet
    saved = out.read_bytes()
    with pytest.raises(LatencyTableError, match="is incomplete: 13 of 13 operators not measured"):
        measure.refit(tiny, LatencyTable.load(out, tiny), out)
    assert out.read_bytes() == saved


def test_run_and_recalibrate_refuse_a_table_of_another_space(tiny, base, tmp_path, quick):
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    new_table(base, quick.profile).save(out)
    before = out.read_bytes()
    for call in (run_profile, recalibrate):
        with pytest.raises(LatencyTableError, match="was built for space 'ufo_vit_base'"):
            call(tiny, quick.profile, out, work, SETTINGS)
    assert out.read_bytes() == before


def test_refusals_name_the_file(tiny, tmp_path, quick):
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    new_table(tiny, quick.profile).save(out)
    with pytest.raises(LatencyTableError) as error:  # nothing measured yet
        recalibrate(tiny, quick.profile, out, work, SETTINGS)
    assert _message(error).startswith(f"{out} is incomplete: ")

    run_profile(tiny, quick.profile, out, work, SETTINGS)
    threads = profile_from_dict(quick.profile.to_dict() | {"threads": 1}, "p.yaml")
    for call in (run_profile, recalibrate):
        with pytest.raises(LatencyTableError) as error:
            call(tiny, threads, out, work, SETTINGS)
        assert _message(error).startswith(f"{out} was measured with threads 2, but profile ")

    table = LatencyTable.load(out, tiny)
    table.measured = False
    table.save(out)
    with pytest.raises(LatencyTableError) as error:
        recalibrate(tiny, quick.profile, out, work, SETTINGS)
    assert _message(error) == f"{out} is a roofline estimate; nothing to recalibrate"


def test_resuming_or_recalibrating_a_table_of_another_engine_recipe_is_refused(
    tiny, tmp_path, quick, monkeypatch
):
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    run_profile(tiny, quick.profile, out, work, SETTINGS)
    before = out.read_bytes()
    name = quick.profile.name
    monkeypatch.setattr(
        TorchBackend, "recipe", classmethod(lambda cls, target, host=None: "int8 v9")
    )
    for call in (run_profile, recalibrate):
        with pytest.raises(LatencyTableError) as error:
            call(tiny, quick.profile, out, work, SETTINGS)
        assert _message(error) == (
            f"{out} timed the graph as given, but fake now builds 'int8 v9' for '{name}'; its "
            "operators cannot be reused: move the table aside to re-measure"
        )
    assert out.read_bytes() == before
    table = LatencyTable.load(out, tiny)
    del table.provenance["recipe"]  # a table from before tables recorded it
    table.save(out)
    with pytest.raises(LatencyTableError, match=f"^{out} records no engine recipe \\(tables"):
        run_profile(tiny, quick.profile, out, work, SETTINGS)
    monkeypatch.setattr(TorchBackend, "recipe", classmethod(lambda cls, target, host=None: ""))
    run_profile(tiny, quick.profile, out, work, SETTINGS)  # no record: the graph as given


def _resume_refusal(tiny, quick, out, work) -> str:
    """The one-line refusal to resume the table at `out`, which it leaves as it was."""
    before = out.read_bytes()
    with pytest.raises(LatencyTableError) as error:
        run_profile(tiny, quick.profile, out, work, SETTINGS)
    assert out.read_bytes() == before
    return _message(error)


def test_times_of_trained_like_weights_never_join_a_table_timed_on_init_weights(
    tiny, tmp_path, quick
):
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    table = run_profile(tiny, quick.profile, out, work, SETTINGS)
    assert table.timed_on_init_weights() == []
    assert "init weights" not in LatencyPredictor(tiny, table).source
    del table.provenance["sessions"][0]["weights"]  # as profiled before 2026-12-06
    complete = tmp_path / "complete.yaml"
    table.save(complete)
    assert LatencyTable.load(complete, tiny).timed_on_init_weights() == [
        "operators",
        "validation subnets",
    ]
    del table.operators[next(iter(table.operators))]  # an interrupted run, to resume
    table.save(out)
    assert _resume_refusal(tiny, quick, out, work) == (
        f"{out}: its operators and validation subnets were timed on freshly initialised "
        "weights (before 2026-12-06), which some backends run at another speed than trained "
        "ones, and times on trained-like weights cannot join them: move the table aside to "
        "re-measure (or --recalibrate it, which re-times its validation subnets)"
    )
    before = complete.read_bytes()
    with pytest.raises(LatencyTableError, match="timed on freshly initialised weights"):
        recalibrate(tiny, quick.profile, complete, work, SETTINGS, add_session=True)
    assert complete.read_bytes() == before
    moved = recalibrate(tiny, quick.profile, complete, work, SETTINGS)
    assert moved.timed_on_init_weights() == ["operators"]  # its subnets re-timed noised
    assert moved.provenance["sessions"][-1]["weights"] == TIMED_WEIGHTS
    # a session joins the re-timed subnets (what `--recalibrate --sessions 2` runs next)
    added = recalibrate(tiny, quick.profile, complete, work, SETTINGS, add_session=True)
    assert len({row.session for row in added.validation}) == 2
    assert added.timed_on_init_weights() == ["operators"]
    assert LatencyPredictor(tiny, moved).source.endswith(
        "; operators timed on init weights: a trained model may run at another speed)"
    )


def test_warm_times_never_join_a_table_timed_cold_until_it_is_recalibrated(tiny, tmp_path, quick):
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    table = run_profile(tiny, quick.profile, out, work, SETTINGS)
    assert table.cold_timed() == []
    del table.provenance["sessions"][0]["warm_calls"]  # as profiled before 2026-12-05
    del table.operators[next(iter(table.operators))]  # an interrupted run, to resume
    table.save(out)
    assert LatencyTable.load(out, tiny).cold_timed() == ["operators", "validation subnets"]
    assert _resume_refusal(tiny, quick, out, work) == (
        f"{out}: its operators and validation subnets were timed cold (one call per visit, "
        "before 2026-12-05), and warm times cannot join them: move the table aside to "
        "re-measure (or --recalibrate it, which re-times its validation subnets)"
    )
    run_profile(tiny, quick.profile, out, work, replace(SETTINGS, warm_calls=0))  # cold: resumes
    with pytest.raises(LatencyTableError, match="timed cold"):
        recalibrate(tiny, quick.profile, out, work, SETTINGS, add_session=True)
    moved = recalibrate(tiny, quick.profile, out, work, SETTINGS)
    assert moved.cold_timed() == ["operators"]  # its validation subnets re-timed warm
    added = recalibrate(tiny, quick.profile, out, work, SETTINGS, add_session=True)
    assert len({row.session for row in added.validation}) == 2
    assert LatencyPredictor(tiny, moved).source.endswith(
        "; operators timed cold: slower than a warm engine)"
    )


# --- recalibration ----------------------------------------------------------------------------


def test_recalibrate_reports_progress_and_steal_and_keeps_the_replaced_metrics(
    tiny, tmp_path, quick
):
    out, work = tmp_path / "t.yaml", tmp_path / "work"
    built = run_profile(tiny, quick.profile, out, work, SETTINGS)  # steal 1 to 6
    progress = Recorder()
    table = recalibrate(tiny, quick.profile, out, work, SETTINGS, progress=progress)
    assert progress.calls == [("subnets", 4), ("subnets", 2)]
    session = table.provenance["sessions"][-1]
    assert session["steal_percent"] == [7.0, 8.0]
    assert session["replaced"] == {"host": built.provenance["host"], "metrics": built.metrics}
    assert session["before_here"]["mean_abs_pct_error"] == pytest.approx(0.0, abs=1e-3)
