"""`ufo export` from a Pareto file or an arch string, and its one-line errors."""

import json
from pathlib import Path

import pytest

from ufo_nas.checkpoint import save_supernet
from ufo_nas.cli import main
from ufo_nas.hardware import host_fingerprint
from ufo_nas.search.report import DeviceFront, ParetoRow, SearchReport

TINY_ONNX = "export --space ufo_vit_tiny --arch smallest --backend onnx".split()
HAS_BF16 = bool({"avx512_bf16", "amx_tile"} & set(host_fingerprint()["isa"]))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny_supernet):
    return save_supernet(tiny_supernet, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def _row(arch: str) -> ParetoRow:
    return ParetoRow(arch, {"face": 0.5}, {"face": 0.1}, 1.0, 1_000_000, 1_000_000)


@pytest.fixture(scope="module")
def pareto(tmp_path_factory, tiny):
    """A search result over ufo_vit_tiny with two fronts."""
    archs = [str(tiny.smallest()), "d5-h2,3,4,2,3-m2,3,4,2,3-face:sstms-object:sssss-digits:sssss"]
    front = DeviceFront(
        "cpu-onnxruntime",
        True,
        "measured table",
        [_row(a) for a in archs],
        100,
        10,
        0.5,
        [0.5] * 10,
    )
    report = SearchReport(
        tiny.name,
        tiny.spec.fingerprint(),
        ["face"],
        ["score.face", "latency_ms"],
        {"face": "test"},
        0.0,
        {"latency_ms": None, "params": None},
        {},
        [front, DeviceFront(**{**front.__dict__, "device": "cpu-openvino"})],
    )
    folder = tmp_path_factory.mktemp("search")
    report.write(folder)
    return folder, archs


def test_exports_a_pareto_row_with_trained_weights(tmp_path, pareto, tiny_checkpoint, capsys):
    folder, archs = pareto
    out = tmp_path / "m"
    argv = [
        "export",
        "--pareto",
        str(folder),
        "--row",
        "1",
        "--device",
        "cpu-openvino",
        "--checkpoint",
        str(tiny_checkpoint),
        "--no-time",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["subnet"]["arch"] == archs[1] and manifest["subnet"]["tasks"] == ["face"]
    assert manifest["artefact"]["format"] == "openvino"
    assert manifest["weights"] == {"checkpoint": str(tiny_checkpoint), "trained": True}
    text = capsys.readouterr().out
    assert "as openvino fp32" in text and "passed" in text and "model.xml" in text


def test_without_a_checkpoint_it_warns_that_weights_are_untrained(tmp_path, capsys):
    """A space with no shipped supernet (a renamed copy of the tiny one)."""
    text = (Path(__file__).parents[1] / "search_spaces" / "ufo_vit_tiny.yaml").read_text()
    space = tmp_path / "other.yaml"
    space.write_text(text.replace("name: ufo_vit_tiny", "name: other_tiny"))
    argv = ["export", "--space", str(space), "--arch", "smallest", "--backend", "onnx"]
    assert main([*argv, "--task", "face", "--no-time", "--out", str(tmp_path / "o")]) == 0
    assert "untrained" in capsys.readouterr().err
    assert (tmp_path / "o" / "subnet.onnx").is_file()


def test_without_a_checkpoint_the_shipped_supernet_is_used(tmp_path):
    shipped = Path(__file__).parents[1] / "supernets" / "ufo_vit_tiny.safetensors"
    assert main([*TINY_ONNX, "--task", "face", "--no-time", "--out", str(tmp_path / "o")]) == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["weights"] == {"checkpoint": str(shipped), "trained": True}


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--row", "7", "--device", "cpu-openvino"],
            "row 7 is out of range: the cpu-openvino front in",
        ),
        (["--row", "0"], "holds fronts for cpu-onnxruntime, cpu-openvino; pick one with --device"),
        (["--row", "0", "--device", "jetson"], "the search has no device 'jetson'"),
        ([], "--pareto needs --row"),
    ],
)
def test_pareto_errors_are_one_line(tmp_path, pareto, capsys, argv, message):
    folder, _ = pareto
    out = tmp_path / "o"
    assert main(["export", "--pareto", str(folder), *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_subject_errors_are_one_line(tmp_path, tiny_checkpoint, capsys):
    cases = [
        (
            [
                "--space",
                "ufo_vit_tiny",
                "--arch",
                "d4-h9,2,2,2-m2,2,2,2-face:ssss-object:ssss",
                "--backend",
                "onnx",
            ],
            "num_heads 9 not in",
        ),
        (
            [
                "--space",
                "ufo_vit_base",
                "--arch",
                "smallest",
                "--checkpoint",
                str(tiny_checkpoint),
                "--backend",
                "onnx",
            ],
            "was saved for space 'ufo_vit_tiny'",
        ),
        (
            ["--space", "ufo_vit_tiny", "--arch", "smallest", "--device", "cpu-torch"],
            "no deployable artefact",
        ),
    ]
    for argv, message in cases:
        assert main(["export", *argv, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1], err
        assert not (tmp_path / "o").exists()


def test_an_existing_output_folder_is_refused(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "model.xml").write_text("keep")
    argv = [*TINY_ONNX, "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "o" / "model.xml").read_text() == "keep"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--backend", "onnx", "--precision", "int8"], "format onnx writes fp32, not int8"),
        (["--backend", "openvino", "--precision", "int8"], "give --calibration FOLDER"),
        (["--backend", "tvm", "--precision", "fp16"], "format tvm writes fp32, not fp16"),
        (["--device", "jetson"], "device jetson needs backend 'tensorrt', not usable here"),
        (["--backend", "onnxruntime", "--precision", "bf16"], "writes fp32/fp16/int8, not bf16"),
        pytest.param(
            ["--backend", "openvino", "--precision", "bf16"],
            "openvino CPU has no bf16 compute here",
            marks=pytest.mark.skipif(HAS_BF16, reason="this CPU computes in bf16"),
        ),
    ],
)
def test_what_cannot_be_exported_is_refused_before_any_work(tmp_path, capsys, argv, message):
    base = ["export", "--space", "ufo_vit_tiny", "--arch", "smallest", "--task", "face"]
    missing = str(tmp_path / "never-read.safetensors")  # the check comes before loading it
    assert main([*base, *argv, "--checkpoint", missing, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_or_unwritable_folder_as_out_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("keep")
    assert main([*TINY_ONNX, "--out", str(tmp_path / "file")]) == 2
    assert "file already exists as a file, not a folder" in capsys.readouterr().err
    real_mkdir = type(tmp_path).mkdir

    def read_only(self, *args, **kwargs):
        if self.parent == tmp_path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "mkdir", read_only)
    assert main([*TINY_ONNX, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path} is not writable (Permission denied)" in err[0]


def test_a_failed_verification_writes_its_manifest_and_exits_2(tmp_path, monkeypatch, capsys):
    """One image of eight has a wrong output: the per-image bound catches it."""
    import numpy as np

    import ufo_nas.export as export_module

    real = export_module._artefact

    def one_bad_image(*args, **kwargs):
        exported = real(*args, **kwargs)
        calls, run = [0], exported.runner

        def perturbed(images):
            outputs = run(images)
            calls[0] += 1
            if calls[0] == 4:  # the 4th of 8 single-image batches
                outputs = [np.random.default_rng(0).normal(size=o.shape) for o in outputs]
            return outputs

        exported.runner = perturbed
        return exported

    monkeypatch.setattr(export_module, "_artefact", one_bad_image)
    out = tmp_path / "o"
    assert main([*TINY_ONNX, "--task", "face", "--no-time", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "output 'face' differs from PyTorch: cosine" in err[-1]
    assert f"(see {out / 'manifest.json'})" in err[-1]
    check = json.loads((out / "manifest.json").read_text())["verification"]
    assert check["passed"] is False and check["images"] == 8
    assert check["outputs"]["face"]["min_cosine"] < 0.5 < check["min_cosine_required"]
