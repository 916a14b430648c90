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


ROW = ("fronts", 0, "rows", 0)


@pytest.mark.parametrize(
    "keys, value, message",
    [  # found by tools/fuzz_loaders.py: TypeError, ValueError, KeyError, AttributeError later
        ((*ROW, "score"), None, r"fronts\[0\].rows\[0\].score is None; expected a mapping of"),
        ((*ROW, "score", "face"), "x", r"rows\[0\].score.face is 'x'; expected a finite number"),
        ((*ROW, "latency_ms"), float("nan"), r"rows\[0\].latency_ms is nan; expected a finite"),
        ((*ROW, "params"), float("inf"), r"rows\[0\].params is inf; expected a whole number"),
        ((*ROW, "macs"), 10**400, r"rows\[0\].macs is 1000000.*; expected a whole number >= 0"),
        ((*ROW, "score_std", "person"), -1.0, r"score_std.person is -1.0; expected a finite"),
        ((*ROW, "arch"), 0, r"rows\[0\].arch is 0; expected a non-empty string"),
        ((*ROW, "arch"), "d1-h1-m1-face:s", r"rows\[0\].arch holds no paths of person"),
        (("fronts", 0, "hypervolume", 1), float("nan"), r"hypervolume\[1\] is nan"),
        (("tasks", 0), -1, r"tasks\[0\] is -1; expected a non-empty string"),
        (("tasks",), 0, "tasks is 0; expected a non-empty list"),
        (("score_targets",), None, "score_targets is None; expected a mapping of face, person"),
        (("budgets", "params"), float("-inf"), r"budgets.params is -inf; expected a finite"),
        (("provenance", "versions", "ufo_nas"), float("inf"), "provenance.versions.ufo_nas is inf"),
        (("unseen", 0), 0, r"unseen\[0\] is 0; expected a mapping"),
        (("unseen", 0, "gene"), 0, r"unseen\[0\].gene is 0; expected a gene name"),
        (("unseen", 0, "gene"), "path.face.}", r"unseen\[0\].gene is 'path.face.}'"),
        (("unseen", 0, "tasks", 0), -1, r"unseen\[0\].tasks\[0\] is -1"),
        (("unseen", 0, "tasks"), ["cat"], r"unseen\[0\].tasks is \['cat'\]; expected some of"),
        (("unseen", 0, "observed", 0), float("nan"), r"unseen\[0\].observed\[0\] is nan"),
    ],
)
def test_a_corrupt_result_file_is_one_clear_line(tmp_path, report, keys, value, message):
    report.write(tmp_path)
    path = tmp_path / "pareto.json"
    data = json.loads(path.read_text())
    parent = data
    for key in keys[:-1]:
        parent = parent[key]
    parent[keys[-1]] = value
    path.write_text(json.dumps(data))
    with pytest.raises(UfoError, match=message) as info:
        SearchReport.load(path)
    assert str(info.value).startswith(f"{path} is a corrupt search result: ")
    assert "\n" not in str(info.value)


def test_a_result_file_with_a_missing_or_unknown_key_is_one_clear_line(tmp_path, report):
    report.write(tmp_path)
    path = tmp_path / "pareto.json"
    data = json.loads(path.read_text())
    del data["fronts"][0]["rows"][0]["macs"]
    path.write_text(json.dumps(data))
    with pytest.raises(UfoError, match=r"fronts\[0\].rows\[0\].macs is missing"):
        SearchReport.load(path)
    data["fronts"][0]["extra"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(UfoError, match=r"fronts\[0\] has an unknown key 'extra'"):
        SearchReport.load(path)
