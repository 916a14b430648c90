"""Bad command-line input is refused with one error line before any work, and write
failures are one line naming the path."""

import json
import math
from decimal import Decimal
from pathlib import Path

import pytest

from ufo_nas.cli import main
from ufo_nas.fileio import TMP_MARK

SEARCH = ["search", "--device", "jetson", "--task", "face"]
QUICK = ["--population", "8", "--generations", "2"]


def refused(argv: list[str], capsys) -> str:
    """The one error line of a refused command (argparse prints its usage above it)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "argv, message",
    [
        ([*SEARCH, "--risk", "nan"], "argument --risk: 'nan' is out of range; expected a number"),
        ([*SEARCH, "--risk", "inf"], "'inf' is out of range"),
        ([*SEARCH, "--risk", "-1"], "expected a number >= 0"),
        (["search", "--device", "jetson", "--task", ""], "argument --task: '' names nothing"),
        (["search", "--device", "jetson,jetson", "--task", "face"], "names 'jetson' twice"),
        ([*SEARCH, "--seed", "-1"], "argument --seed: '-1' is out of range; expected an integer"),
        ([*SEARCH, "--max-params", "-5M"], "'-5M' is not a positive count"),
        ([*SEARCH, "--max-params=0"], "'0' is not a positive count"),
        ([*SEARCH, "--latency-ms", "nan"], "argument --latency-ms: 'nan' is out of range"),
        ([*SEARCH, "--population", "0"], "argument --population: '0' is out of range"),
        ([*SEARCH, "--generations", "-3"], "argument --generations: '-3' is out of range"),
        ([*SEARCH, "--generations", "2.5"], "'2.5' is not an integer"),
        (["sample", "-n", "-3"], "argument -n: '-3' is out of range; expected an integer >= 1"),
        (["sample", "--seed", "-1"], "argument --seed"),
        (["eval", "--task", "face", "--checkpoint", "c", "-n", "-1"], "argument -n: '-1'"),
        (["eval", "--task", "face", "--checkpoint", "c", "--batch-size", "0"], "--batch-size"),
        (["fit-predictor", "--task", ","], "names nothing"),
    ],
)
def test_bad_values_are_refused_before_any_work(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert message in refused(argv, capsys)
    assert not any(tmp_path.iterdir())


def test_out_naming_a_file_is_refused_before_searching(tmp_path, capsys):
    out = tmp_path / "results.txt"
    out.write_text("mine")
    err = refused([*SEARCH, *QUICK, "--out", str(out)], capsys)
    assert f"--out {out} is a file, not a folder" in err
    assert out.read_text() == "mine"


def test_an_unwritable_out_is_refused_before_searching(tmp_path, capsys, monkeypatch):
    def no_probe(self, *args, **kwargs):
        if ".ufo-write-probe" in self.name:
            raise PermissionError(13, "Permission denied")
        return real_mkdir(self, *args, **kwargs)

    real_mkdir = Path.mkdir
    monkeypatch.setattr(Path, "mkdir", no_probe)
    err = refused([*SEARCH, *QUICK, "--out", str(tmp_path / "o")], capsys)
    assert "is not writable (Permission denied)" in err
    err = refused(["plot", "fronts", str(tmp_path), "--out", str(tmp_path / "f.png")], capsys)
    assert "is not writable" in err


def test_a_write_failure_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    def full_disk(self, *args, **kwargs):
        if TMP_MARK in self.name:
            raise OSError(28, "No space left on device")
        return real_write_text(self, *args, **kwargs)

    real_write_text = Path.write_text
    monkeypatch.setattr(Path, "write_text", full_disk)
    err = refused([*SEARCH, *QUICK, "--out", str(tmp_path)], capsys)
    assert err.endswith(f"cannot write {tmp_path / 'pareto.json'}: No space left on device")


def test_a_space_file_that_is_not_text_is_one_line(tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_bytes(b"\xff\xfe\x00\x89PNG")
    assert f"{path}: not UTF-8 text" in refused(["space", "--space", str(path)], capsys)


def test_a_huge_space_prints_its_size_without_overflow(tmp_path, capsys):
    text = (Path(__file__).parents[1] / "search_spaces" / "ufo_vit_tiny.yaml").read_text()
    path = tmp_path / "deep.yaml"
    path.write_text(text.replace("depth: [4, 5, 6]", "depth: [4, 250]"))
    assert main(["space", "--space", str(path)]) == 0
    size = 243**250 + 243**4  # heads x mlp x three tasks' paths: 243 choices a layer
    expected = format(Decimal(size), ".3e")
    assert f"distinct subnets ({expected})" in capsys.readouterr().out
    path.write_text(text.replace("depth: [4, 5, 6]", "depth: [4, 600]"))
    assert main(["space", "--space", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected an integer from 1 to 256, got 600" in err


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["hyperparameters"].update(log_noise="loud"), "hyperparameters.log_noise"),
        (lambda d: d["hyperparameters"].pop("relevance_spread"), "relevance_spread is missing"),
        (lambda d: d["training_set"][3].update(y=math.nan), "training_set.3.y is nan"),
        (
            lambda d: d["hyperparameters"]["log_relevance"].update(depth=math.inf),
            "hyperparameters.log_relevance.depth is inf; expected a number in [-24, 16]",
        ),
        (lambda d: d.pop("target"), "target is missing"),
        (lambda d: d["training_set"][0].update(arch="d9"), "training_set.0.arch"),
    ],
)
def test_a_bad_predictor_file_is_one_line_naming_the_key(tmp_path, capsys, change, message):
    shipped = Path(__file__).parents[1] / "predictors" / "ufo_vit_base" / "face.json"
    data = json.loads(shipped.read_text())
    change(data)
    path = tmp_path / "face.json"
    path.write_text(json.dumps(data))
    argv = ["predict", "--task", "face", "--arch", "largest", "--predictor", str(path)]
    err = refused(argv, capsys)
    assert str(path) in err and message in err


def test_a_long_bad_arch_is_echoed_shortened(capsys):
    arch = "d10-h" + "x," * 65_000
    err = refused(["predict", "--task", "face", "--arch", arch], capsys)
    assert len(err) < 300 and "d10-hx,x," in err and "..." in err
