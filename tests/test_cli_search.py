"""The README's main command, run as a user would, and the search CLI's errors."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ufo_nas.cli import main

BIN = Path(sys.executable).parent


def test_readme_command_writes_the_pareto_set(tmp_path, base):
    command = [str(BIN / "ufo-search"), "--device", "jetson", "--task", "face"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "runs" / "search" / "ufo_vit_base-jetson-face"
    for name in ("pareto.json", "pareto.csv", "pareto.png", "convergence.png"):
        assert (out / name).stat().st_size > 0
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    assert len(rows) >= 5
    for row in rows:
        assert base.parse(row["arch"]) in base and row["latency_measured"] == "False"
    scores = [float(r["score_face"]) for r in rows]
    latencies = [float(r["latency_ms"]) for r in rows]
    assert latencies == sorted(latencies) and scores[-1] > scores[0]
    data = json.loads((out / "pareto.json").read_text())
    assert data["fronts"][0]["device"] == "jetson" and data["settings"]["population"] == 64
    assert "ESTIMATE" in done.stdout and "Pareto-optimal" in done.stdout
    # a second run never touches the first one's results
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert (out.with_name(out.name + "-2") / "pareto.csv").is_file()


def test_explicit_out_holding_results_is_refused(tmp_path, capsys):
    args = [
        "search",
        "--device",
        "jetson",
        "--task",
        "face",
        "--population",
        "8",
        "--generations",
        "2",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    before = (tmp_path / "pareto.csv").read_bytes()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already holds search results" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "pareto.csv").read_bytes() == before
    assert main([*args, "--overwrite", "--seed", "1"]) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--device", "nope", "--task", "face"], "unknown device 'nope'"),
        (["--device", "jetson", "--task", "faces"], "unknown task 'faces'"),
        (["--device", "jetson", "--task", "face", "--space", "nope"], "unknown search space"),
        (["--device", "jetson", "--task", "face", "--latency-ms", "0.01"], "the fastest is d10-"),
        (["--device", "jetson", "--task", "face", "--max-params", "1M"], "the smallest is"),
        (["--device", "jetson", "--task", "face", "--minimise", "flops"], "latency, params, macs"),
    ],
)
def test_search_errors_are_one_line(tmp_path, capsys, extra, message):
    assert main(["search", *extra, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_plot_command_overlays_results(tmp_path, capsys):
    for device in ("jetson", "cpu-onnxruntime"):
        assert (
            main(
                [
                    "search",
                    "--device",
                    device,
                    "--task",
                    "face",
                    "--population",
                    "8",
                    "--generations",
                    "3",
                    "--out",
                    str(tmp_path / device),
                ]
            )
            == 0
        )
    out = tmp_path / "fronts.png"
    assert (
        main(
            [
                "plot",
                "fronts",
                str(tmp_path / "jetson"),
                str(tmp_path / "cpu-onnxruntime"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.stat().st_size > 0
    assert (
        main(["plot", "convergence", str(tmp_path / "jetson"), "--out", str(tmp_path / "c.png")])
        == 0
    )
    assert (
        main(
            [
                "plot",
                "latency",
                "--device",
                "cpu-openvino",
                "--space",
                "ufo_vit_tiny",
                "--out",
                str(tmp_path / "l.png"),
            ]
        )
        == 0
    )
    assert main(["plot", "fronts", "--out", str(tmp_path / "x.png")]) == 2
    assert "needs search results" in capsys.readouterr().err


def test_search_does_not_import_torch(tmp_path):
    argv = "search --device jetson --task face --population 8 --generations 1 --out o".split()
    command = [sys.executable, "-X", "importtime", "-m", "ufo_nas.cli", *argv]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    modules = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "ufo_nas.search.run" in modules and "torch" not in modules


def test_search_prints_the_genes_it_held_or_searched_unseen(tmp_path, capsys):
    quick = ["search", "--device", "jetson", "--task", "face", "--population", "8"]
    assert main([*quick, "--generations", "2", "--out", str(tmp_path / "held")]) == 0
    out = capsys.readouterr().out
    assert "path.face.0-11: held at shared: the face predictor never saw task, mix" in out
    assert "face score +- std" in out and "lower bound" in out
    archs = re.findall(r"^ +\d+ .* (d(\d+)-h\S+)$", out, flags=re.M)
    assert archs
    for arch, depth in archs:  # the short form, face paths all shared
        assert arch.endswith("-face:" + "s" * int(depth)) and "-person:" not in arch
    argv = [*quick, "--generations", "2", "--search-unseen", "--out", str(tmp_path / "all")]
    assert main(argv) == 0
    assert (
        "task, mix searched although the face predictor never saw them" in capsys.readouterr().out
    )
