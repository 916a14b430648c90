"""`ufo search --verify`: the front re-measured on this machine, on the table's scale."""

import contextlib
import csv
import io
import json
import math
import re
from dataclasses import replace
from functools import partial

import pytest

import ufo_nas.export
from ufo_nas import load_space
from ufo_nas.cli import main
from ufo_nas.errors import UfoError
from ufo_nas.latency import predictor as predictor_module
from ufo_nas.latency.measure import ProfileSettings
from ufo_nas.latency.predictor import LatencyPredictor
from ufo_nas.latency.table import LatencyTable
from ufo_nas.paths import project_root
from ufo_nas.plot import MEASURED_NOTE, OFF_FRONT_NOTE, fronts_figure
from ufo_nas.search import verify as verify_module
from ufo_nas.search.report import DeviceFront, ParetoRow, SearchReport
from ufo_nas.search.verify import on_measured_front, summary

# the columns pareto.csv had before --verify existed: a search without it writes just these
PLAIN_COLUMNS = [
    "device",
    "index",
    "score_face",
    "score_std_face",
    "latency_ms",
    "latency_measured",
    "latency_kind",
    "params",
    "macs",
    "arch",
    "held",
]
MEASURED_COLUMNS = ["measured_ms", "prediction_error_pct", "on_front_measured"]
QUICK = ["search", "--space", "ufo_vit_tiny", "--task", "face", "--population", "6"]


# --verify times the engines ONNX Runtime builds now, which the reference table did not (its
# threads slept between operators: --verify refuses it); this host's tables timed them.
TODAYS = (
    project_root() / "latency_tables/cpu-onnxruntime/hosts/intel-xeon-84ea994f/ufo_vit_tiny.yaml"
)


def on_the_host_of_todays_tables(patch: pytest.MonkeyPatch) -> None:
    host = LatencyTable.load(TODAYS).provenance["host"]
    for module in (ufo_nas.export, predictor_module):
        patch.setattr(module, "host_fingerprint", lambda: dict(host))
    patch.setattr(predictor_module, "_PREDICTORS", {})


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One tiny search on cpu-onnxruntime with --verify and the same search without it:
    (verified folder, plain folder, stdout of the verified run)."""
    root = tmp_path_factory.mktemp("verify")
    run = [*QUICK, "--device", "cpu-onnxruntime", "--generations", "2"]
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(root / "home"))  # the profiler's work dir, under ~/.cache
        on_the_host_of_todays_tables(patch)
        # 15 rounds as before filled rounds: a fill of 10 s per chunk would add 15 s here
        unfilled = partial(verify_module.verify_report, settings=ProfileSettings(fill_seconds=None))
        patch.setattr(verify_module, "verify_report", unfilled)
        with contextlib.redirect_stdout(stdout):
            assert main([*run, "--verify", "--out", str(root / "verified")]) == 0
            assert main([*run, "--out", str(root / "plain")]) == 0
    return root / "verified", root / "plain", stdout.getvalue()


def read_csv(folder):
    with (folder / "pareto.csv").open() as f:
        return list(csv.DictReader(f))


def test_measured_columns_are_positive_and_the_error_is_against_the_prediction(searched):
    verified, _, _ = searched
    rows = read_csv(verified)
    assert list(rows[0]) == PLAIN_COLUMNS[:7] + MEASURED_COLUMNS + PLAIN_COLUMNS[7:]
    for row in rows:
        measured, predicted = float(row["measured_ms"]), float(row["latency_ms"])
        assert math.isfinite(measured) and measured > 0
        error = 100 * (predicted - measured) / measured
        assert float(row["prediction_error_pct"]) == pytest.approx(error, rel=1e-3, abs=1e-3)
        assert row["on_front_measured"] in ("True", "False")
    report = SearchReport.load(verified)
    tiny = load_space("ufo_vit_tiny")
    front = report.fronts[0]
    assert front.verified and front.verification["backend"] == "onnxruntime"
    timed = front.verification
    assert timed["reference_anchor_ms"] > 0 and timed["anchor_ms"]
    assert len(timed["anchor_alone_ms"]) == len(timed["anchor_ms"])
    assert all(again["kept"] in ("first", "again") for again in timed["timed_again"])
    assert timed["references"] == [
        [ref.arch, list(ref.tasks), ref.anchors]
        for ref in LatencyPredictor(tiny, LatencyTable.load(TODAYS, tiny)).reference_subnets()
    ]
    assert len(timed["references"]) == 2
    for row in front.rows:
        assert row.prediction_error_pct == pytest.approx(
            100 * (row.latency_ms - row.measured_ms) / row.measured_ms
        )
    assert [r.on_front_measured for r in front.rows] == on_measured_front(
        report, front.rows, [r.measured_ms for r in front.rows]
    )
    again = verified.parent / "again"
    report.write(again)
    assert SearchReport.load(again) == report


def test_rows_keep_their_order_and_a_plain_search_writes_the_files_as_before(searched):
    verified, plain, _ = searched
    measured, before = read_csv(verified), read_csv(plain)
    assert list(before[0]) == PLAIN_COLUMNS
    assert [{k: r[k] for k in PLAIN_COLUMNS} for r in measured] == before
    data = json.loads((plain / "pareto.json").read_text())
    assert "verification" not in data["fronts"][0]
    assert set(data["fronts"][0]["rows"][0]) == {
        "arch",
        "score",
        "score_std",
        "latency_ms",
        "params",
        "macs",
    }
    assert "measured_ms" not in data["legend"]
    assert not SearchReport.load(plain).fronts[0].verified


def test_the_summary_line_names_the_rows_off_the_front(searched):
    verified, _, out = searched
    front = SearchReport.load(verified).fronts[0]
    line = re.search(
        r"^verified (\d+) front subnets on cpu-onnxruntime: mean \|error\| .*$", out, re.M
    )
    assert line and int(line.group(1)) == len(front.rows)
    rows_part = line.group(0).split("; the anchor ran")[0]  # a drift clause past one chunk
    off = [i for i, r in enumerate(front.rows) if not r.on_front_measured]
    if off:
        assert rows_part.endswith(
            f"({'row' if len(off) == 1 else 'rows'} {', '.join(map(str, off))})"
        )
    else:
        assert rows_part.endswith("all stay on the front when measured")
    assert "measured ms" in out and "error" in out


def synthetic(latency, score, params=None, objectives=("latency_ms",), risk=0.0):
    """A one-front report of the face task with the given rows (std 0.01 x row + 1)."""
    params = params or [1] * len(latency)
    rows = [
        ParetoRow(f"a{i}", {"face": s}, {"face": 0.01 * (i + 1)}, ms, p, 1)
        for i, (ms, s, p) in enumerate(zip(latency, score, params))
    ]
    front = DeviceFront("cpu-onnxruntime", True, "test", rows, 3, 1, 0.1, [1.0])
    return SearchReport(
        "s", "f", ["face"], ["score.face", *objectives], {"face": "rank"}, risk, {}, {}, [front]
    )


def test_a_row_dominated_once_measured_is_flagged_and_only_that_row():
    report = synthetic([1.0, 2.0, 3.0], [0.1, 0.2, 0.3])
    rows = report.fronts[0].rows
    assert on_measured_front(report, rows, [1.0, 2.0, 3.0]) == [True, True, True]
    # row 1 measured slower than row 2, which scores higher: dominated
    assert on_measured_front(report, rows, [1.0, 3.5, 3.0]) == [True, False, True]
    # row 0 measured slower than row 1: dominated; row 1 stays
    assert on_measured_front(report, rows, [2.5, 2.0, 3.0]) == [False, True, True]


def test_the_flag_uses_the_objectives_as_searched():
    # fewer params keep row 1 on a (score, latency, params) front although slower than row 2
    report = synthetic([1.0, 2.0, 3.0], [0.1, 0.2, 0.3], (5, 1, 5), ("latency_ms", "params"))
    assert on_measured_front(report, report.fronts[0].rows, [1.0, 3.5, 3.0]) == [True] * 3
    # scored as searched, mean - 2 std: row 2 (0.21 - 0.06) falls below row 1 (0.2 - 0.04)
    for risk, flags in ((0.0, [True] * 3), (2.0, [True, True, False])):
        report = synthetic([1.0, 2.0, 3.0], [0.1, 0.2, 0.21], risk=risk)
        assert on_measured_front(report, report.fronts[0].rows, [1.0, 2.0, 3.0]) == flags


def verified_synthetic(measured):
    report = synthetic([1.0, 2.0, 3.0], [0.1, 0.2, 0.3])
    front = report.fronts[0]
    flags = on_measured_front(report, front.rows, measured)
    rows = [
        replace(
            r,
            measured_ms=m,
            prediction_error_pct=100 * (r.latency_ms - m) / m,
            on_front_measured=f,
        )
        for r, m, f in zip(front.rows, measured, flags)
    ]
    return replace(report, fronts=[replace(front, rows=rows, verification={"backend": "x"})])


def test_summary_line():
    report = verified_synthetic([1.1, 3.5, 3.0])  # predicted 1, 2, 3: errors of the measured
    assert summary(report.fronts[0]) == (  # 0.1 / 1.1, 1.5 / 3.5, 0
        "verified 3 front subnets on cpu-onnxruntime: mean |error| 17.3%, max 42.9%, "
        "1 falls off the front when measured (row 1)"
    )


def test_the_summary_line_says_how_far_the_anchor_drifted_between_chunks():
    report = verified_synthetic([1.1, 3.5, 3.0])
    timed = {"anchor_ms": [0.58, 0.832, 0.61], "reference_anchor_ms": 0.874}
    front = replace(report.fronts[0], verification=timed)
    assert summary(front).endswith(
        "(row 1); the anchor ran 0.58-0.832 ms over the 3 chunks (as it and the reference "
        "subnets put it; table: 0.874 ms), the drift each chunk's times were scaled by"
    )
    one_chunk = replace(front, verification={**timed, "anchor_ms": [0.6]})
    assert summary(one_chunk).endswith("(row 1)")


def test_the_summary_line_says_which_chunks_were_timed_again():
    report = verified_synthetic([1.1, 3.5, 3.0])
    again = [{"chunk": 0, "first_anchor_ms": 0.29, "kept": "again"}]
    front = replace(report.fronts[0], verification={"timed_again": again})
    assert summary(front).endswith(
        "(row 1); 1 chunk whose anchor ran off the others' timed again (1 kept the new times)"
    )
    two = [*again, {"chunk": 3, "first_anchor_ms": 0.25, "kept": "first"}]
    front = replace(front, verification={"timed_again": two})
    assert summary(front).endswith(
        "2 chunks whose anchor ran off the others' timed again (1 kept the new times)"
    )
    assert summary(replace(front, verification={"timed_again": []})).endswith("(row 1)")


def test_a_long_list_of_rows_off_the_front_is_cut():
    report = synthetic([1.0 + i for i in range(14)], [0.1 * i for i in range(14)])
    front = report.fronts[0]
    rows = [
        replace(r, measured_ms=1.0, prediction_error_pct=0.0, on_front_measured=i == 0)
        for i, r in enumerate(front.rows)
    ]
    line = summary(replace(front, rows=rows, verification={}))
    assert line.endswith(
        "13 fall off the front when measured (rows 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ... 3 more: "
        "on_front_measured in pareto.csv)"
    )


def test_the_front_plot_draws_measured_latency_and_marks_rows_off_the_front():
    fig = fronts_figure([verified_synthetic([1.1, 3.5, 3.0])])
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert MEASURED_NOTE in texts and OFF_FRONT_NOTE in texts
    ax = fig.axes[0]
    hollow = [
        c for c in ax.collections if len(c.get_offsets()) == 3 and not c.get_facecolor().any()
    ]
    assert hollow and [tuple(p) for p in hollow[0].get_offsets()] == [
        (1.1, 0.1),
        (3.5, 0.2),
        (3.0, 0.3),
    ]
    assert ax.get_xlim()[1] >= 3.5
    fig = fronts_figure([verified_synthetic([1.0, 2.0, 3.0])])
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert MEASURED_NOTE in texts and OFF_FRONT_NOTE not in texts


def test_a_verified_row_missing_its_measurement_is_one_clear_line(searched, tmp_path):
    verified, _, _ = searched
    data = json.loads((verified / "pareto.json").read_text())
    del data["fronts"][0]["rows"][0]["measured_ms"]
    (tmp_path / "pareto.json").write_text(json.dumps(data))
    with pytest.raises(UfoError, match=r"rows\[0\].measured_ms is missing"):
        SearchReport.load(tmp_path)


@pytest.mark.parametrize("devices", ["jetson", "cpu-onnxruntime,jetson"])
def test_verify_on_a_device_this_machine_cannot_run_fails_before_searching(
    tmp_path, capsys, monkeypatch, devices
):
    import ufo_nas.search.run

    def no_search(*args, **kwargs):
        raise AssertionError("searched before refusing --verify")

    monkeypatch.setattr(ufo_nas.search.run, "search_devices", no_search)
    on_the_host_of_todays_tables(monkeypatch)
    out = tmp_path / "o"
    assert main([*QUICK, "--device", devices, "--verify", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and not captured.out
    assert "--verify cannot measure jetson" in err and "roofline estimate" in err
    assert "can verify for ufo_vit_tiny here: cpu-onnxruntime" in err
    assert not out.exists()
