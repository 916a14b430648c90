import json
from pathlib import Path

import pytest
from conftest import DATASETS

from ufo_nas.accuracy import AccuracyRecord, AccuracyTable
from ufo_nas.checkpoint import save_supernet
from ufo_nas.cli import main
from ufo_nas.evaluate import choose_archs

pytestmark = pytest.mark.skipif(not (DATASETS / "orl_faces").is_dir(), reason="no shared data")


def test_uniform_choice_skips_what_the_table_holds(tiny, tmp_path):
    table = AccuracyTable(tmp_path / "t.csv", tiny)
    first = choose_archs(tiny, table, "face", "orl_faces:val", 4, "uniform", seed=3)
    assert len(set(first)) == 4
    row = AccuracyRecord(
        first[0].to_string(), "face", "orl_faces:val", "accuracy", 0.5, True, "t", "d"
    )
    table.append([row])
    again = choose_archs(tiny, table, "face", "orl_faces:val", 4, "uniform", seed=3)
    assert again == first[1:]  # resumes the same seeded stream, 3 still missing
    with pytest.raises(ValueError, match="unknown sampler 'greedy'"):
        choose_archs(tiny, table, "face", "x", 1, "greedy", seed=0)


def test_eval_cli_is_resumable_and_feeds_the_predictor(tiny, tiny_supernet, tmp_path, capsys):
    checkpoint = save_supernet(tiny_supernet, tmp_path / "super.safetensors")
    table = tmp_path / "acc.csv"
    base = [
        "eval",
        "--space",
        "ufo_vit_tiny",
        "--task",
        "face",
        "--checkpoint",
        str(checkpoint),
        "--table",
        str(table),
    ]
    assert main([*base, "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert "0 subnets already" in out and "accuracy" in out
    rows = AccuracyTable(table, tiny).records
    assert len(rows) == 3 and all(0.0 <= r.value <= 1.0 for r in rows)
    assert {r.benchmark for r in rows} == {"orl_faces:val"}
    assert main([*base, "-n", "3"]) == 0  # nothing missing: nothing evaluated
    assert len(AccuracyTable(table, tiny).records) == 3
    assert main([*base, "-n", "5", "--sampler", "active"]) == 0
    assert len({r.arch for r in AccuracyTable(table, tiny).records}) == 5
    capsys.readouterr()

    out_dir = tmp_path / "predictors"
    assert (
        main(
            [
                "fit-predictor",
                "--space",
                "ufo_vit_tiny",
                "--task",
                "face",
                "--table",
                str(table),
                "--out",
                str(out_dir),
            ]
        )
        == 0
    )
    saved = json.loads((out_dir / "face.json").read_text())
    assert len(saved["training_set"]) == 5 and saved["target"].startswith("accuracy")
    assert (
        main(
            [
                "fit-predictor",
                "--space",
                "ufo_vit_tiny",
                "--task",
                "face",
                "--table",
                str(table),
                "--out",
                str(out_dir),
            ]
        )
        == 2
    )
    assert "already exists" in capsys.readouterr().err
    assert (
        main(
            [
                "predict",
                "--space",
                "ufo_vit_tiny",
                "--task",
                "face",
                "--arch",
                "smallest",
                "largest",
                "--predictor",
                str(out_dir / "face.json"),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "+-" in lines[1]


def test_predict_with_the_shipped_predictor(capsys, base):
    assert (
        main(
            [
                "predict",
                "--space",
                "ufo_vit_base",
                "--task",
                "person",
                "--arch",
                "largest",
                "j111231321311311221231121111231000000",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    scores = [float(line.split()[0]) for line in out.strip().splitlines()[1:]]
    assert len(scores) == 2 and scores[0] > scores[1]  # the largest subnet ranks better


def test_missing_predictor_and_table_are_clear(tmp_path, capsys):
    """A space nothing ships for: a renamed copy of the tiny one."""
    text = (Path(__file__).parents[1] / "search_spaces" / "ufo_vit_tiny.yaml").read_text()
    space = tmp_path / "other.yaml"
    space.write_text(text.replace("name: ufo_vit_tiny", "name: other_tiny"))
    argv = ["predict", "--space", str(space), "--task", "object", "--arch", "smallest"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "fit one with `ufo fit-predictor --space other_tiny --task object`" in err
    assert (
        main(["fit-predictor", "--space", "ufo_vit_tiny", "--table", str(tmp_path / "none.csv")])
        == 2
    )
    assert "run `ufo eval` first" in capsys.readouterr().err
