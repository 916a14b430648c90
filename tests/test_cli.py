import shlex
import subprocess
import sys

import pytest
import yaml

from tests.test_space import huge_spec_dict
from ufo_nas import cli
from ufo_nas.cli import main


def test_space_describes_size_and_costs(capsys):
    assert main(["space", "--space", "ufo_vit_base"]) == 0
    out = capsys.readouterr().out
    assert "22,559,345,090,480,082,240,405,582,811,009,371 distinct subnets" in out
    assert "task face" in out and "MACs" in out


def test_space_of_over_4300_digits_is_described(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump(huge_spec_dict()))
    assert main(["space", "--space", str(path)]) == 0
    assert "distinct subnets (5.268e+4885)" in capsys.readouterr().out


def test_a_closed_pipe_ends_quietly():
    """`ufo space | head -1`: no BrokenPipeError traceback, the exit status of SIGPIPE."""
    command = f"{shlex.quote(sys.executable)} -m ufo_nas space --space ufo_vit_base | head -1"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.startswith("space ufo_vit_base") and done.stdout.count("\n") == 1
    assert done.stderr == "" and done.returncode in (0, cli.EXIT_BROKEN_PIPE)
    reader_gone = subprocess.Popen(
        [sys.executable, "-m", "ufo_nas", "space", "--space", "ufo_vit_base"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    reader_gone.stdout.close()  # every write fails: the broken pipe is certain
    assert reader_gone.stderr.read() == b""
    assert reader_gone.wait(timeout=120) == cli.EXIT_BROKEN_PIPE


def test_ctrl_c_ends_in_one_line_with_the_exit_status_of_sigint(monkeypatch, capsys):
    """Ctrl-C during a long command (a profiling session, training): no traceback."""
    import ufo_nas.cli.space as space_cli

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(space_cli, "load_space", stopped)
    assert main(["space", "--space", "ufo_vit_tiny"]) == cli.EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "\nufo space: interrupted\n"


def test_sample_prints_parseable_archs(capsys, tiny):
    assert (
        main(["sample", "--space", "ufo_vit_tiny", "-n", "4", "--seed", "2", "--task", "face"]) == 0
    )
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
                "--space",
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
    assert main(["extract", "--space", "ufo_vit_tiny", "--arch", "largest", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "subnet.onnx").read_bytes() == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["space", "--space", "ufo_vit_huge"], "unknown search space 'ufo_vit_huge'"),
        (["sample", "--space", "ufo_vit_tiny", "--task", "car"], "unknown task 'car'"),
        (
            ["extract", "--space", "ufo_vit_tiny", "--arch", "d9-h1-m1", "--out", "x"],
            "num_heads has 1 entries",
        ),
    ],
)
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_the_positional_space_still_works_with_a_note(capsys):
    assert main(["space", "--space", "ufo_vit_tiny"]) == 0
    new = capsys.readouterr()
    assert main(["space", "ufo_vit_tiny"]) == 0
    old = capsys.readouterr()
    assert old.out == new.out and new.err == ""
    assert old.err == (
        "ufo space: note: the positional SPACE is deprecated, write --space ufo_vit_tiny "
        "(accepted until 0.3)\n"
    )
    assert main(["space", "ufo_vit_tiny", "--space", "ufo_vit_base"]) == 2
    assert "give the space once" in capsys.readouterr().err


def test_help_lists_every_command_on_one_line(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    commands = (
        "space sample extract eval fit-predictor predict latency profile search plot export train"
    )
    listed = [line.split()[0] for line in lines if line.startswith("    ")]
    assert listed == commands.split()
    assert all(len(line.split()) > 1 for line in lines if line.startswith("    "))


@pytest.mark.parametrize("alias", ["eval", "profile", "search", "plot", "export"])
def test_aliases_name_themselves_in_usage_and_errors(alias, capsys, monkeypatch):
    entry = getattr(cli, f"{alias}_main")
    monkeypatch.setattr(sys, "argv", [f"ufo-{alias}", "--help"])
    with pytest.raises(SystemExit):
        entry()
    assert capsys.readouterr().out.startswith(f"usage: ufo-{alias} ")
    monkeypatch.setattr(sys, "argv", [f"ufo-{alias}", "--no-such-option"])
    with pytest.raises(SystemExit):
        entry()
    assert f"\nufo-{alias}: error: " in capsys.readouterr().err


def test_library_errors_of_aliases_name_the_alias(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ufo-profile", "--new-profile", "mine"])
    assert cli.profile_main() == 2
    assert capsys.readouterr().err.startswith("ufo-profile: error: --new-profile needs --backend")


def test_library_warnings_print_once_as_one_line(tmp_path, capsys):
    """A torn accuracy table warns (UfoWarning) once, as `ufo <command>: warning: ...`."""
    table = tmp_path / "t.csv"
    table.write_text("arch,task,benchmark,metric,value,higher_is_better,source,date\nd4-h2")
    argv = ["fit-predictor", "--space", "ufo_vit_tiny", "--table", str(table), "--out", "p"]
    assert main(argv) == 2  # the table holds no complete row
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("ufo fit-predictor: warning: ") and "last line is cut" in err[0]
    assert err[1].startswith("ufo fit-predictor: error: ") and len(err) == 2
