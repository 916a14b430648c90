import csv
import json
from pathlib import Path

import pytest

from ufo_nas.errors import UfoError
from ufo_nas.search.engine import SearchSettings
from ufo_nas.search.report import FRONTS_PNG, SearchReport, search_out_folder
from ufo_nas.search.run import prepare, search_devices

SMALL = SearchSettings(population=12, generations=6, seed=0)


@pytest.fixture(scope="module")
def report(base) -> SearchReport:
    return search_devices(prepare(base, ["face", "person"], ["cpu-onnxruntime", "jetson"]), SMALL)


def test_report_holds_one_front_per_device_with_labelled_latency(base, report):
    assert [f.device for f in report.fronts] == ["cpu-onnxruntime", "jetson"]
    measured, estimate = report.fronts
    assert measured.latency_measured and "measured table" in measured.latency_source
    assert not estimate.latency_measured and "ESTIMATE" in estimate.latency_source
    for front in report.fronts:
        assert front.generations == 6 and len(front.hypervolume) == 6
        assert front.evaluations >= len(front.rows) > 0
        latencies = [r.latency_ms for r in front.rows]
        assert latencies == sorted(latencies)
        for row in front.rows:
            assert base.parse(row.arch) in base
            assert set(row.score) == set(row.score_std) == {"face", "person"}
    assert report.objectives == ["score.face", "score.person", "latency_ms"]
    assert "rank" in report.score_targets["face"]


def test_json_round_trip_and_csv_rows(tmp_path, report):
    written = report.write(tmp_path)
    assert [p.name for p in written] == ["pareto.json", "pareto.csv"]
    assert SearchReport.load(tmp_path) == report
    rows = list(csv.DictReader((tmp_path / "pareto.csv").open()))
    assert len(rows) == sum(len(f.rows) for f in report.fronts)
    assert {
        "device",
        "index",
        "score_face",
        "score_std_person",
        "latency_ms",
        "latency_measured",
        "params",
        "macs",
        "arch",
    } <= set(rows[0])
    jetson = [r for r in rows if r["device"] == "jetson"]
    assert {r["latency_measured"] for r in jetson} == {"False"}
    assert jetson[0]["arch"] == report.front("jetson").rows[0].arch


def test_existing_results_are_never_overwritten(tmp_path, report):
    report.write(tmp_path)
    before = (tmp_path / "pareto.json").read_text()
    with pytest.raises(UfoError, match="already exists"):
        report.write(tmp_path)
    assert (tmp_path / "pareto.json").read_text() == before
    report.write(tmp_path, overwrite=True)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"format": "something-else"}), "not a ufo-nas search result"),
        (json.dumps({"format": "ufo-nas-search", "schema": 99}), "schema 99"),
        (json.dumps({"format": "ufo-nas-search", "schema": 1, "space": "x"}), "corrupt"),
    ],
)
def test_bad_result_files_get_clear_errors(tmp_path, content, message):
    path = tmp_path / "pareto.json"
    path.write_text(content)
    with pytest.raises(UfoError, match=message):
        SearchReport.load(path)
    with pytest.raises(UfoError, match="no search result"):
        SearchReport.load(tmp_path / "missing")


def test_text_table_marks_estimates(report):
    text = report.format_front(report.front("jetson"), limit=2)
    assert "face score" in text and "person score" in text
    assert "roofline ESTIMATE" in text and "more in pareto.csv" in text
    assert "ESTIMATE" not in report.format_front(report.front("cpu-onnxruntime"))
    with pytest.raises(UfoError, match="no device 'rpi4'"):
        report.front("rpi4")


def test_search_out_folder_takes_the_first_free_name_or_refuses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = search_out_folder("search_spaces/ufo_vit_tiny.yaml", ["jetson", "rpi4"], ["face"])
    assert first == Path("runs/search/ufo_vit_tiny-jetson+rpi4-face")
    first.mkdir(parents=True)
    assert search_out_folder("ufo_vit_tiny", ["jetson", "rpi4"], ["face"]) == first
    (first / FRONTS_PNG).write_bytes(b"png")
    second = search_out_folder("ufo_vit_tiny", ["jetson", "rpi4"], ["face"])
    assert second == first.with_name(first.name + "-2")
    assert search_out_folder("ufo_vit_tiny", ["jetson"], ["face"], out=tmp_path / "new") == (
        tmp_path / "new"
    )
    with pytest.raises(UfoError, match=r"already holds search results \(pareto.png\)"):
        search_out_folder("ufo_vit_tiny", ["jetson"], ["face"], out=first)
    assert search_out_folder("ufo_vit_tiny", ["jetson"], ["face"], first, overwrite=True) == first


def test_held_genes_latency_kind_and_short_archs_are_reported(tmp_path, base, report):
    """The shipped predictors never saw task/mix paths: the report says they were held, labels
    roofline latency a lower bound and gives the searched tasks' paths only."""
    notes = report.unseen_notes()
    assert notes == [
        "path.face.0-11: held at shared: the face predictor never saw task, mix there "
        "(--search-unseen searches them anyway)",
        "path.person.0-11: held at shared: the person predictor never saw task, mix there "
        "(--search-unseen searches them anyway)",
    ]
    report.write(tmp_path)
    rows = list(csv.DictReader((tmp_path / "pareto.csv").open()))
    kinds = {r["device"]: r["latency_kind"] for r in rows}
    assert kinds == {"cpu-onnxruntime": "measured", "jetson": "roofline lower bound"}
    assert {r["held"] for r in rows} == {"path.face.0-11=shared; path.person.0-11=shared"}
    legend = json.loads((tmp_path / "pareto.json").read_text())["legend"]
    assert (
        "normal score of the rank" in legend["score_face"] and "lower bound" in legend["latency_ms"]
    )
    assert legend["held"] == " | ".join(notes)
    for row in rows:
        assert (
            "-vehicle:" not in row["arch"] and "-face:" in row["arch"] and "-person:" in row["arch"]
        )
        arch = base.parse(row["arch"])
        assert set(arch.task_paths("vehicle")) == {"shared"} and arch in base


def test_a_search_of_unseen_choices_says_so(base):
    problems = prepare(base, ["face"], ["jetson"], search_unseen=True)
    unseen = search_devices(problems, SMALL)
    assert unseen.settings["search_unseen"] and len(unseen.unseen) == base.layers
    assert unseen.unseen_notes() == [
        "path.face.0-11: task, mix searched although the face predictor never saw them: its "
        "score there is a guess with a larger std"
    ]
    assert {r["held"] for r in unseen.csv_rows()} == {""}


def test_a_device_given_twice_is_refused(base):
    with pytest.raises(UfoError, match="devices must be distinct"):
        prepare(base, ["face"], ["jetson", "jetson"])
