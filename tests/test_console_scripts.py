"""Every console script of pyproject.toml, run once as a real subprocess on the tiny space.

The scripts run with $UFO_NAS_HOME at a temporary project root (the tiny space file, the
shipped hardware profiles and latency tables, and a GP-NAS predictor fitted here, since
none is shipped for the tiny space), so nothing is written into the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATASETS

from ufo_nas import load_space
from ufo_nas.accuracy import GPNAS
from ufo_nas.checkpoint import save_supernet
from ufo_nas.paths import project_root
from ufo_nas.supernet import SuperViT

SCRIPTS = ("ufo", "ufo-eval", "ufo-profile", "ufo-search", "ufo-plot", "ufo-export", "ufo-train")
TIMEOUT_S = 300


def script(name: str) -> str:
    """The installed script: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"console script {name} is not installed (pip install -e .)")
    return found


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root for the scripts: its own copy of the tiny space and a tiny predictor."""
    root = tmp_path_factory.mktemp("home")
    shipped = project_root()
    (root / "search_spaces").mkdir()
    shutil.copy(shipped / "search_spaces" / "ufo_vit_tiny.yaml", root / "search_spaces")
    for folder in ("hardware_profiles", "latency_tables"):
        (root / folder).symlink_to(shipped / folder, target_is_directory=True)
    space = load_space(root / "search_spaces" / "ufo_vit_tiny.yaml")
    genes = space.sample_genes(np.random.default_rng(0), 20)
    predictors = root / "predictors" / "ufo_vit_tiny"
    predictors.mkdir(parents=True)
    GPNAS(space, "face").fit(genes, genes.sum(axis=1).astype(float)).save(predictors / "face.json")
    return root


def run(name: str, args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "UFO_NAS_HOME": str(home), "UFO_NAS_DATA": str(DATASETS)}
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [script(name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def ok(result: subprocess.CompletedProcess) -> str:
    """Stdout of a run that must have succeeded."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_names_its_own_prog(name: str, home: Path, tmp_path: Path) -> None:
    out = ok(run(name, ["--help"], home, tmp_path))
    assert out.startswith(f"usage: {name} ")


def test_ufo_space(home: Path, tmp_path: Path) -> None:
    out = ok(run("ufo", ["space", "--space", "ufo_vit_tiny"], home, tmp_path))
    assert out.startswith("space ufo_vit_tiny ")
    assert "distinct subnets" in out and "task face" in out


def test_ufo_profile_dry_run(home: Path, tmp_path: Path) -> None:
    table = tmp_path / "table.yaml"
    args = ["--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny", "--dry-run"]
    out = ok(run("ufo-profile", [*args, "--out", str(table)], home, tmp_path))
    assert out.startswith(f"cpu-onnxruntime: onnxruntime on cpu, fp32, 2 threads -> {table}")
    assert "to measure: " in out and "  operator " in out and "  subnet " in out
    assert not table.exists()  # a dry run writes nothing


def test_ufo_search_then_ufo_plot(home: Path, tmp_path: Path) -> None:
    args = ["--space", "ufo_vit_tiny", "--device", "cpu-onnxruntime", "--task", "face"]
    args += ["--generations", "3", "--population", "8", "--out", "result"]
    out = ok(run("ufo-search", args, home, tmp_path))
    assert "\nwrote " in out and "result/pareto.json" in out
    for name in ("pareto.json", "pareto.csv", "pareto.png", "convergence.png"):
        assert (tmp_path / "result" / name).is_file()
    out = ok(run("ufo-plot", ["fronts", "result", "--out", "fronts.png"], home, tmp_path))
    assert "wrote fronts.png" in out
    assert (tmp_path / "fronts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ufo_export_onnx(home: Path, tmp_path: Path) -> None:
    args = ["--space", "ufo_vit_tiny", "--arch", "smallest", "--task", "face"]
    args += ["--backend", "onnx", "--out", "exported", "--no-time"]
    out = ok(run("ufo-export", args, home, tmp_path))
    assert "verification against PyTorch" in out and ": passed" in out
    assert (tmp_path / "exported" / "manifest.json").is_file()
    assert (tmp_path / "exported" / "subnet.onnx").is_file()


def test_ufo_eval_one_subnet(home: Path, tmp_path: Path) -> None:
    if not (DATASETS / "orl_faces").is_dir():
        pytest.skip(f"ORL faces not found in {DATASETS}")
    torch.manual_seed(0)
    space = load_space(home / "search_spaces" / "ufo_vit_tiny.yaml")
    checkpoint = save_supernet(SuperViT(space.spec).eval(), tmp_path / "supernet.safetensors")
    args = ["--space", "ufo_vit_tiny", "--task", "face", "--checkpoint", str(checkpoint)]
    out = ok(run("ufo-eval", [*args, "-n", "1", "--table", "acc.csv"], home, tmp_path))
    assert "face (face_verification) on orl_faces:val" in out
    assert "evaluating 1 more (uniform sampling)" in out
    lines = (tmp_path / "acc.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("arch,task,benchmark,metric,value")
    assert ",face,orl_faces:val,accuracy," in lines[1]


def test_ufo_train_two_steps_then_eval_its_supernet(home: Path, tmp_path: Path) -> None:
    if not (DATASETS / "orl_faces").is_dir():
        pytest.skip(f"ORL faces not found in {DATASETS}")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "space: ufo_vit_tiny\n"
        "tasks:\n"
        "  face: {classes_per_batch: 2, images_per_class: 2}\n"
        "  digits: {batch_size: 4}\n"
        "validate_every: 0\n"
        "stages: {task: {steps: 2}, chip: {steps: 1, random_subnets: 1}}\n"
    )
    args = ["--recipe", str(recipe), "--out", "run", "--threads", "1"]
    out = ok(run("ufo-train", args, home, tmp_path))
    assert "trained task stage 2 steps, chip stage 1 steps in " in out
    for name in ("supernet.safetensors", "metrics.csv", "curves.png", "checkpoints/chip-0000001"):
        assert (tmp_path / "run" / name).exists(), name
    args = ["--space", "ufo_vit_tiny", "--task", "digits"]
    args += ["--checkpoint", "run/supernet.safetensors"]
    out = ok(run("ufo-eval", [*args, "-n", "1", "--table", "acc.csv"], home, tmp_path))
    assert "digits (classification) on sklearn_digits:val: 355 images" in out
