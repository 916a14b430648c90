"""`ufo profile` end to end on ufo_vit_tiny with the torch backend and few rounds."""

import os
import signal
import subprocess
import sys
import time
import weakref

import pytest
import yaml

from ufo_nas.cli import build_parser, main
from ufo_nas.hardware import load_profile, profile_from_dict
from ufo_nas.latency.measure import NO_EXPORT, Profiler, ProfileSettings, plan, run_profile
from ufo_nas.latency.predictor import LatencyPredictor
from ufo_nas.latency.table import CALIBRATION_FORMS, LatencyTable, LatencyTableError

# quick: 2 rounds, not filled to 10 s a chunk
SETTINGS = ProfileSettings(validation_subnets=6, chunk=4, rounds=2, copies=2, fill_seconds=None)


class Interrupt(Exception):
    pass


def test_profile_resumes_and_calibrates(tiny, tmp_path):
    profile = load_profile("cpu-torch")
    out, work = tmp_path / "table.yaml", tmp_path / "work"
    finished = []

    def stop_after_first_chunk(what: str, n: int) -> None:
        finished.append((what, n))
        raise Interrupt

    with pytest.raises(Interrupt):
        run_profile(tiny, profile, out, work, SETTINGS, progress=stop_after_first_chunk)
    first = LatencyTable.load(out, tiny)
    assert len(first.operators) == 4 and not first.validation and finished == [("operators", 4)]
    todo = plan(tiny, first, SETTINGS)
    assert len(todo.operators) == 9 and len(todo.validation) == 6

    table = run_profile(tiny, profile, out, work, SETTINGS)
    assert len(table.operators) == 13 and len(table.validation) == 6
    for key, row in first.operators.items():  # nothing measured before is lost
        assert table.operators[key] == row
    assert len(table.provenance["sessions"]) == 2
    assert {s["export"] for s in table.provenance["sessions"]} == {NO_EXPORT}  # torch: no ONNX
    assert {row.session for row in table.validation} == {1}
    assert table.calibration["model"] in CALIBRATION_FORMS
    assert table.metrics["validation_subnets"] == 6
    predictor = LatencyPredictor(tiny, LatencyTable.load(out, tiny))
    assert predictor.measured
    small, large = predictor.sum_ms([tiny.smallest(), tiny.largest()], ("face", "object"))
    assert 0 < small < large


def test_profile_refuses_to_mix_setups(tiny, tmp_path):
    out, work = tmp_path / "table.yaml", tmp_path / "work"
    profile = load_profile("cpu-torch")
    settings = ProfileSettings(
        validation_subnets=0, chunk=12, rounds=1, copies=1, fill_seconds=None
    )
    run_profile(tiny, profile, out, work, settings)
    before = out.read_bytes()
    other_threads = profile_from_dict(profile.to_dict() | {"threads": 1}, "p.yaml")
    with pytest.raises(LatencyTableError, match="was measured with threads 2.*now says 1"):
        run_profile(tiny, other_threads, out, work, settings)
    other_device = profile_from_dict(profile.to_dict() | {"name": "cpu-other"}, "p.yaml")
    with pytest.raises(LatencyTableError, match="holds a table of device 'cpu-torch'"):
        run_profile(tiny, other_device, out, work, settings)
    assert out.read_bytes() == before


def test_cli_dry_run_lists_the_work(tmp_path, capsys):
    out = tmp_path / "t.yaml"
    argv = ["profile", "--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny", "--dry-run"]
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "to measure: 13 operators, 40 validation subnets" in text
    assert "operator ffn.m512.x2" in text and not out.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--device", "tpu9"], "unknown device 'tpu9'"),
        (["--device", "jetson", "--space", "ufo_vit_tiny"], "backend 'tensorrt' is not usable"),
        (["--new-profile", "mine"], "--new-profile needs --backend"),
        (["--space", "ufo_vit_tiny"], "--device is required"),
        (
            ["--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny", "--recalibrate"],
            "--recalibrate: no table at",
        ),
        (
            ["--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny", "--add-session"],
            "--add-session: no table at",
        ),
        (
            [
                "--device",
                "cpu-onnxruntime",
                "--space",
                "ufo_vit_tiny",
                "--recalibrate",
                "--add-session",
            ],
            "pass one of them",
        ),
        (
            ["--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny", "--add-session"]
            + ["--sessions", "2"],
            "--sessions 2 applies to a build or --recalibrate; --add-session times one session",
        ),
        (
            ["--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny", "--refit"]
            + ["--sessions", "2"],
            "--sessions 2 applies to a build or --recalibrate; --refit times nothing",
        ),
        (
            ["--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny", "--refit", "--add-session"],
            "pass one of them",
        ),
        (["--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny", "--refit"], "no table at"),
    ],
)
def test_cli_errors_are_one_line(argv, message, tmp_path, capsys):
    assert main(["profile", *argv, "--out", str(tmp_path / "t.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "t.yaml").exists()


def test_new_profile_describes_this_machine(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UFO_NAS_HOME", str(tmp_path))
    (tmp_path / "hardware_profiles").mkdir()
    assert main(["profile", "--new-profile", "my-cpu", "--backend", "onnxruntime"]) == 0
    data = yaml.safe_load((tmp_path / "hardware_profiles" / "my-cpu.yaml").read_text())
    assert data["backend"] == "onnxruntime" and data["peak"]["tflops"] > 0
    assert main(["profile", "--new-profile", "my-cpu", "--backend", "onnxruntime"]) == 2
    assert "already exists" in capsys.readouterr().err


def stub_sessions(monkeypatch, returncodes: list[int], after: list[dict] | None = None) -> list:
    """Replace each child process of `ufo profile --sessions N` by one that exits with the
    next of `returncodes` and leaves the table fitting as the next of `after`; the children's
    argv."""
    from types import SimpleNamespace

    import ufo_nas.cli.latency as cli

    commands: list[list[str]] = []
    table = SimpleNamespace(metrics=None)

    def run(command):
        commands.append(command)
        table.metrics = after[len(commands) - 1] if after else None
        return returncodes[len(commands) - 1]

    monkeypatch.setattr(cli, "run_child", run)
    real = LatencyTable.load  # tables read before the first child are the real ones
    load = classmethod(lambda cls, path, space: table if commands else real(path, space))
    monkeypatch.setattr(LatencyTable, "load", load)
    return commands


def sessions_run(monkeypatch, tmp_path, returncodes: list[int]) -> tuple[int, list[list[str]]]:
    """`ufo profile --sessions 3` with the build stubbed out and each child process replaced
    by one that exits with the next of `returncodes`; (exit status, the children's argv)."""
    import ufo_nas.cli.latency as cli

    settings = []
    monkeypatch.setattr(cli, "_measure", lambda *args: settings.append(args[4]))
    commands = stub_sessions(monkeypatch, returncodes)
    argv = ["profile", "--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny", "--seed", "5"]
    argv += ["--rounds", "9", "--fill-seconds", "2.5"]
    status = main([*argv, "--out", str(tmp_path / "t.yaml"), "--sessions", "3"])
    assert [(s.rounds, s.fill_seconds) for s in settings] == [(9, 2.5)]
    return status, commands


def test_each_further_session_re_times_the_table_in_a_new_process(monkeypatch, tmp_path):
    status, commands = sessions_run(monkeypatch, tmp_path, [0, 0])
    assert status == 0 and len(commands) == 2
    for command in commands:
        assert command[:4] == [sys.executable, "-m", "ufo_nas", "profile"]
        child = build_parser().parse_args(command[3:])  # a command `ufo profile` accepts
        assert child.add_session and not child.recalibrate and child.sessions == "auto"
        assert child.no_fit_advice  # the build advises once, after the last session
        assert (child.device, child.space, child.out) == (
            "cpu-onnxruntime",
            "ufo_vit_tiny",
            str(tmp_path / "t.yaml"),
        )
        assert (child.seed, child.rounds, child.validation) == (5, 9, 40)
        assert child.fill_seconds == 2.5  # each session times as the first


def fit(within_5pct: float) -> dict:
    """A table's in-sample metrics with `within_5pct` of its subnets within 5%."""
    metrics = {"validation_subnets": 40, "mean_abs_pct_error": 4.98}
    return metrics | {"within_5pct": within_5pct, "within_10pct": 0.9}


@pytest.mark.parametrize(
    ("built", "last", "sessions", "advised"),
    [(0.65, None, 1, "65%"), (0.9, None, 1, None), (0.85, 0.75, 3, "75%"), (0.65, 0.95, 3, None)],
)
def test_a_poor_fit_in_sample_is_named_with_the_command_that_adds_a_session(
    monkeypatch, tmp_path, capsys, built, last, sessions, advised
):
    """A build whose fit holds under 90% within 5% in sample after its last session says so
    once and names the --add-session command for its table; sessions that bring it to 90%
    leave it silent."""
    import ufo_nas.cli.latency as cli

    monkeypatch.setattr(cli, "_measure", lambda *args: fit(built))
    stub_sessions(monkeypatch, [0] * (sessions - 1), [fit(last)] * (sessions - 1) if last else None)
    out = tmp_path / "t.yaml"
    argv = ["profile", "--device", "cpu-onnxruntime-int8", "--space", "ufo_vit_base"]
    assert main([*argv, "--out", str(out), "--sessions", str(sessions)]) == 0
    text = capsys.readouterr().out
    command = f"ufo profile --device cpu-onnxruntime-int8 --space ufo_vit_base --out {out} "
    assert text.count("of the validation subnets are within 5%") == (1 if advised else 0)
    assert (f"only {advised} of the validation subnets" in text) is bool(advised)
    assert (command + "--add-session" in text) is bool(advised)


@pytest.mark.parametrize("advice", [True, False])
def test_an_added_session_whose_fit_stays_poor_says_so_too(monkeypatch, tmp_path, capsys, advice):
    """An added session whose fit stays under 90% within 5% says so, unless it is a session
    of a `--sessions N` build (whose parent advises once, after the last)."""
    from types import SimpleNamespace

    import ufo_nas.latency.measure as measure
    from ufo_nas.paths import project_root

    out = tmp_path / "t.yaml"
    out.write_bytes(
        (project_root() / "latency_tables/cpu-onnxruntime/ufo_vit_tiny.yaml").read_bytes()
    )
    before = {"mean_abs_pct_error": 4.98, "within_5pct": 0.65, "within_10pct": 0.9}
    after = before | {"validation_subnets": 40, "mean_abs_pct_error": 3.27, "within_5pct": 0.75}
    table = SimpleNamespace(provenance={"sessions": [{"before_here": before}]}, metrics=after)
    monkeypatch.setattr(measure, "recalibrate", lambda *args, **kwargs: table)
    argv = ["profile", "--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny", "--out", str(out)]
    assert main([*argv, "--add-session", *([] if advice else ["--no-fit-advice"])]) == 0
    text = capsys.readouterr().out
    assert "within 5% 65% -> 75%" in text
    assert ("only 75% of the validation subnets" in text) is advice
    assert (f"--out {out} --add-session` re-times them" in text) is advice


def test_a_failed_session_stops_the_rest_in_one_line(monkeypatch, tmp_path, capsys):
    status, commands = sessions_run(monkeypatch, tmp_path, [3, 0])
    assert status == 2 and len(commands) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "session 2 of 3 failed (exit 3)" in err and "keeps the sessions before it" in err


@pytest.mark.parametrize(
    ("fits", "children", "said"),
    [
        ([0.95], 0, None),  # holds after the build: no further session
        ([0.65, 0.8, 0.95], 2, None),  # two sessions bring it to 90%
        ([0.6, 0.7, 0.8], 2, "--add-session` re-times them"),  # at most 3, still improving
        ([0.65, 0.65], 1, "how the operators sum to whole subnets"),  # a session that did not help
    ],
)
def test_auto_sessions_add_one_while_the_fit_misses_and_improves(
    monkeypatch, tmp_path, capsys, fits, children, said
):
    """By default a build re-times its validation subnets in a new process while fewer than
    90% fit within 5% in sample, at most 3 sessions in all, and stops where a session did
    not raise that share (then the error is not drift, and it says so)."""
    import ufo_nas.cli.latency as cli

    monkeypatch.setattr(cli, "_measure", lambda *args: fit(fits[0]))
    commands = stub_sessions(monkeypatch, [0, 0], [fit(f) for f in fits[1:]])
    out = tmp_path / "t.yaml"
    argv = ["profile", "--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert len(commands) == children
    for k in range(2, children + 2):
        assert f"session {k} of at most 3 ({100 * fits[k - 2]:.0f}% within 5% in sample)" in text
    assert ("note: only" in text) is bool(said)
    assert said is None or said in text


def test_each_further_session_says_how_long_the_last_took(monkeypatch, tmp_path, capsys):
    """A further session can take half an hour (ViT-Base int8 on 2 cores): before each, the
    time the session before it took, the build's own first."""
    from types import SimpleNamespace

    import ufo_nas.cli.latency as cli

    ticks = iter([0.0, 1740.0, 1740.0, 1785.0, 1785.0, 1800.0])  # build 29 min, session 2 45 s
    monkeypatch.setattr(cli, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    monkeypatch.setattr(cli, "_measure", lambda *args: fit(0.6))
    stub_sessions(monkeypatch, [0, 0], [fit(0.7), fit(0.8)])
    argv = ["profile", "--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny"]
    assert main([*argv, "--out", str(tmp_path / "t.yaml")]) == 0
    text = capsys.readouterr().out
    assert "session 2 of at most 3 (60% within 5% in sample)" in text
    assert "new process (the last session took 29 min)\nsession 3" in text
    assert "session 3 of at most 3 (70% within 5% in sample): " in text
    assert text.count("(the last session took 45 s)") == 1


@pytest.mark.parametrize(
    ("seconds", "said"), [(45.4, "45 s"), (89, "89 s"), (1717, "29 min"), (5400, "1.5 h")]
)
def test_durations_read_as_people_read_them(seconds, said):
    from ufo_nas.cli.latency import _duration

    assert _duration(seconds) == said


def test_recalibrate_adds_sessions_and_names_a_full_build_where_they_do_not_help(
    monkeypatch, tmp_path, capsys
):
    """--recalibrate adds sessions like a build; where one does not improve the fit, the
    moved table's operators are the error, and it names a build on this host."""
    from types import SimpleNamespace

    import ufo_nas.latency.measure as measure
    from ufo_nas.paths import project_root

    out = tmp_path / "t.yaml"
    out.write_bytes(
        (project_root() / "latency_tables/cpu-onnxruntime/ufo_vit_tiny.yaml").read_bytes()
    )
    before = fit(0.1) | {"mean_abs_pct_error": 20.0}
    moved = SimpleNamespace(provenance={"sessions": [{"before_here": before}]}, metrics=fit(0.7))
    monkeypatch.setattr(measure, "recalibrate", lambda *args, **kwargs: moved)
    commands = stub_sessions(monkeypatch, [0, 0], [fit(0.7), fit(0.7)])
    argv = ["profile", "--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny", "--out", str(out)]
    assert main([*argv, "--recalibrate"]) == 0
    text = capsys.readouterr().out
    assert len(commands) == 1
    child = build_parser().parse_args(commands[0][3:])
    assert child.add_session and child.out == str(out) and child.no_fit_advice
    assert "within 5% 10% -> 70%" in text
    assert "did not improve it: the error is not drift but the operators" in text
    assert "ufo profile --device cpu-onnxruntime --space ufo_vit_tiny --out NEW.yaml" in text

    commands.clear()  # a number of sessions is that many, however the fit stands
    moved.metrics = fit(0.95)
    assert main([*argv, "--recalibrate", "--sessions", "2"]) == 0
    assert len(commands) == 1 and "note: only" in capsys.readouterr().out


def test_a_chunk_s_models_are_freed_before_the_next_chunk_s_are_built(tiny, tmp_path, monkeypatch):
    """Peak memory holds one chunk of models (and the anchor), not two: a ViT-Base
    OpenVINO recalibration held the last chunk's models while building the next (21 GB)."""
    live: weakref.WeakSet = weakref.WeakSet()
    most = []

    class Tracked:
        def __init__(self, run):
            self.run = run
            live.add(self)
            most.append(len(live))

        def __call__(self, images):
            return self.run(images)

    for method in ("compile", "load_artefact"):
        built = getattr(Profiler, method)
        monkeypatch.setattr(
            Profiler, method, lambda self, *a, _built=built: Tracked(_built(self, *a))
        )
    run_profile(tiny, load_profile("cpu-torch"), tmp_path / "t.yaml", tmp_path / "w", SETTINGS)
    assert len(most) > 3 * SETTINGS.chunk  # operators and subnets in several chunks
    assert max(most) == SETTINGS.chunk + 1  # one chunk and the anchor


CHILD = """
import signal, sys, time
from pathlib import Path
out, heard = Path(sys.argv[1]), []
signal.signal(signal.SIGINT, lambda *args: heard.append(1))
out.write_text("started")
deadline = time.monotonic() + 20
while not heard and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.5)  # cleaning up: a second SIGINT would be heard here
out.write_text(f"heard {len(heard)}")
sys.exit(int(sys.argv[2]))
"""


@pytest.fixture
def sigint_raises():
    """SIGINT raising KeyboardInterrupt, as at a terminal: a job a shell starts in the
    background (as CI may run the tests) ignores it, and Python then leaves it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(
    "both_hear_it, status",
    [(True, 130), (False, 130), (True, 0)],
    ids=["from-a-terminal", "to-the-parent", "the-child-ends-well"],
)
def test_ctrl_c_during_a_session_s_child_lets_it_stop_and_report_once(
    tmp_path, monkeypatch, sigint_raises, both_hear_it, status
):
    """A Ctrl-C at a terminal reaches the child too: the parent waits for it to stop on its
    own (no second signal); a SIGINT to the parent alone is passed on after the grace
    time. The parent raises `InterruptReported` where the child ended as interrupted (it
    said so), else the KeyboardInterrupt itself (the parent says it)."""
    import threading

    import ufo_nas.cli.latency as cli
    from ufo_nas.errors import InterruptReported

    out, children, popen = tmp_path / "child.txt", [], subprocess.Popen
    monkeypatch.setattr(
        cli.subprocess, "Popen", lambda cmd: children.append(popen(cmd)) or children[-1]
    )
    monkeypatch.setattr(cli, "INTERRUPT_GRACE_S", 30.0 if both_hear_it else 0.5)

    def ctrl_c() -> None:
        while not out.is_file():
            time.sleep(0.01)
        if both_hear_it:
            os.kill(children[0].pid, signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c, daemon=True).start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt) as stopped:
        cli.run_child([sys.executable, "-c", CHILD, str(out), str(status)])
    assert isinstance(stopped.value, InterruptReported) == (status == 130)
    assert out.read_text() == "heard 1" and children[0].returncode == status
    assert time.monotonic() - began < 15  # not the 30 s grace: the child stopped itself


def test_a_child_s_reported_interrupt_ends_the_parent_without_a_second_line(
    monkeypatch, tmp_path, capsys
):
    import ufo_nas.cli.latency as cli
    from ufo_nas.errors import InterruptReported

    def interrupted(command):
        raise InterruptReported

    monkeypatch.setattr(cli, "_measure", lambda *args: None)
    monkeypatch.setattr(cli, "run_child", interrupted)
    argv = ["profile", "--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny", "--sessions", "2"]
    assert main([*argv, "--out", str(tmp_path / "t.yaml")]) == 130
    assert "interrupted" not in capsys.readouterr().err


def test_progress_says_what_each_long_step_does(tiny, tmp_path, monkeypatch):
    """A ViT-Base chunk builds for minutes before it is timed: the bar names each step,
    counting the subnets' chunks only (the operators' come first in a build)."""
    said: list[tuple[str, int]] = []
    last = lambda self, limit: [len(self.anchor_alone_ms) - 1]  # noqa: E731
    monkeypatch.setattr(Profiler, "off_chunks", last)  # the last chunk is timed again
    run_profile(tiny, load_profile("cpu-torch"), tmp_path / "t.yaml", tmp_path / "w", SETTINGS,
                progress=lambda what, n: said.append((what, n)))  # fmt: skip
    subnets = said[[what for what, _ in said].index("building subnet 1 of 4") :]
    building = [(f"building subnet {k} of 4", 0) for k in range(1, 5)]
    assert subnets == [
        *building, ("building the anchor and references", 0), ("timing chunk 1 of 2", 0),
        ("subnets", 4),
        *building, ("timing chunk 2 of 2", 0), ("subnets", 2),
        *building, ("timing chunk 2 again", 0),
    ]  # fmt: skip


def test_fill_seconds_0_keeps_every_chunk_to_its_rounds(monkeypatch, tmp_path):
    import ufo_nas.cli.latency as cli

    settings = []
    monkeypatch.setattr(cli, "_measure", lambda *args: settings.append(args[4]))
    stub_sessions(monkeypatch, [])
    argv = ["profile", "--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny"]
    argv += ["--fill-seconds", "0", "--sessions", "1", "--out", str(tmp_path / "t.yaml")]
    assert main(argv) == 0
    assert [(s.rounds, s.fill_seconds) for s in settings] == [(15, None)]
