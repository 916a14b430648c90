import pytest

from ufo_nas.cli import main


def test_space_describes_size_and_costs(capsys):
    assert main(["space", "ufo_vit_base"]) == 0
    out = capsys.readouterr().out
    assert "22,559,345,090,480,082,240,405,582,811,009,371 distinct subnets" in out
    assert "task face" in out and "MACs" in out


def test_sample_prints_parseable_archs(capsys, tiny):
    assert main(["sample", "ufo_vit_tiny", "-n", "4", "--seed", "2", "--task", "face"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    assert len(lines) == 4
    for line in lines:
        assert tiny.parse(line.split()[-1]) in tiny


def test_extract_writes_and_verifies(tmp_path, capsys):
    out = tmp_path / "ex"
    assert (
        main(
            [
                "extract",
                "ufo_vit_tiny",
                "--arch",
                "smallest",
                "--task",
                "face,object",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert (out / "subnet.onnx").is_file() and (out / "subnet.safetensors").is_file()
    assert "ONNX Runtime vs PyTorch, task object: max abs difference" in text
    before = (out / "subnet.onnx").read_bytes()
    assert main(["extract", "ufo_vit_tiny", "--arch", "largest", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "subnet.onnx").read_bytes() == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["space", "ufo_vit_huge"], "unknown search space 'ufo_vit_huge'"),
        (["sample", "ufo_vit_tiny", "--task", "car"], "unknown task 'car'"),
        (
            ["extract", "ufo_vit_tiny", "--arch", "d9-h1-m1", "--out", "x"],
            "num_heads has 1 entries",
        ),
    ],
)
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
