import numpy as np
import pytest

from ufo_nas import ArchError, UfoError
from ufo_nas.accuracy import AccuracyRecord, AccuracyTable
from ufo_nas.errors import UfoWarning


def record(arch, benchmark, value, metric="accuracy", better=True, task="face"):
    return AccuracyRecord(
        arch.to_string(), task, benchmark, metric, value, better, "test", "2026-11-22"
    )


def test_append_is_written_through_and_reloads(tiny, tmp_path):
    path = tmp_path / "t.csv"
    archs = [tiny.sample(np.random.default_rng(i)) for i in range(3)]
    table = AccuracyTable(path, tiny)
    table.append([record(archs[0], "orl", 0.75)])
    table.append([record(a, "orl", v) for a, v in zip(archs[1:], (0.5, 0.25))])
    reloaded = AccuracyTable(path, tiny)
    assert reloaded.records == table.records and len(reloaded.records) == 3
    assert reloaded.evaluated("face", "orl") == {a.to_string() for a in archs}
    assert path.read_text().count("\n") == 4  # header + 3 rows


def test_targets_average_a_measured_metric(tiny, tmp_path):
    a, b = tiny.smallest(), tiny.largest()
    table = AccuracyTable(tmp_path / "t.csv", tiny)
    table.append(
        [record(a, "x", 0.5), record(a, "y", 0.7), record(b, "x", 0.9), record(b, "y", 0.9)]
    )
    targets = table.targets("face")
    assert targets.archs == [b, a] or targets.archs == [a, b]
    assert dict(zip(targets.archs, targets.y)) == pytest.approx({a: 0.6, b: 0.9})
    assert "accuracy (higher is better), mean over x, y" == targets.description


def test_targets_turn_ranks_into_normal_scores(tiny, tmp_path):
    archs = [tiny.sample(np.random.default_rng(i)) for i in range(5)]
    table = AccuracyTable(tmp_path / "t.csv", tiny)
    table.append([record(a, "x", float(r), "rank", False) for r, a in enumerate(archs)])
    targets = table.targets("face")
    score = dict(zip(targets.archs, targets.y))
    assert [score[a] for a in archs] == sorted(score.values(), reverse=True)  # rank 0 best
    assert abs(sum(score.values())) < 1e-9


def test_archs_missing_a_benchmark_are_left_out(tiny, tmp_path):
    a, b = tiny.smallest(), tiny.largest()
    table = AccuracyTable(tmp_path / "t.csv", tiny)
    table.append([record(a, "x", 0.5), record(a, "y", 0.7), record(b, "x", 0.9)])
    assert table.targets("face").archs == [a]


def test_bad_tables(tiny, base, tmp_path):
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(UfoError, match="foreign.csv is not an accuracy table"):
        AccuracyTable(foreign, tiny)
    table = AccuracyTable(tmp_path / "t.csv", tiny)
    with pytest.raises(ArchError):
        table.append([record(base.smallest(), "x", 0.5)])
    assert not (tmp_path / "t.csv").exists()
    with pytest.raises(UfoError, match="no rows for task 'object'"):
        table.targets("object")
    broken = tmp_path / "broken.csv"
    broken.write_text(
        "arch,task,benchmark,metric,value,higher_is_better,source,date\nx,face,b,m,NaNa,true,s,d\n"
    )
    with pytest.raises(UfoError, match="broken.csv:2: malformed row"):
        AccuracyTable(broken, tiny)


HEADER = "arch,task,benchmark,metric,value,higher_is_better,source,date\n"


@pytest.mark.parametrize(
    "row, message",
    [
        ('"{arch}",face,orl,accuracy,nan,true,s,d', "t.csv:2: value 'nan' is not a finite"),
        ('"{arch}",face,orl,accuracy,-inf,true,s,d', "t.csv:2: value '-inf' is not a finite"),
        ('"{arch}",car,orl,accuracy,0.5,true,s,d', "t.csv:2: task 'car' is not in space"),
        ("d9-h1-m1,face,orl,accuracy,0.5,true,s,d", "t.csv:2: .*num_heads"),
    ],
)
def test_rows_that_are_not_results_are_refused_naming_the_line(tiny, tmp_path, row, message):
    path = tmp_path / "t.csv"
    path.write_text(HEADER + row.format(arch=tiny.smallest().to_string()) + "\n")
    with pytest.raises(UfoError, match=message):
        AccuracyTable(path, tiny)


def test_non_finite_values_are_not_appended(tiny, tmp_path):
    table = AccuracyTable(tmp_path / "t.csv", tiny)
    with pytest.raises(UfoError, match="not finite"):
        table.append([record(tiny.smallest(), "orl", float("nan"))])
    assert not (tmp_path / "t.csv").exists()


def test_a_cut_last_line_is_dropped_with_a_warning_not_counted_or_glued(tiny, tmp_path):
    path = tmp_path / "t.csv"
    a, b = tiny.smallest(), tiny.largest()
    AccuracyTable(path, tiny).append([record(a, "orl", 0.75)])
    whole = path.read_text()
    path.write_text(whole + f"{b.to_string()},face,orl,accuracy,0.7")  # 0.75 cut mid-write
    with pytest.warns(UfoWarning, match="t.csv: the last line is cut"):
        table = AccuracyTable(path, tiny)
    assert table.evaluated("face", "orl") == {a.to_string()}
    table.append([record(b, "orl", 0.5)])
    reloaded = AccuracyTable(path, tiny)
    assert [(r.arch, r.value) for r in reloaded.records] == [
        (a.to_string(), 0.75),
        (b.to_string(), 0.5),
    ]
    assert path.read_text().endswith("\n")


WRITER = """
import sys, numpy as np
from ufo_nas import load_space
from ufo_nas.accuracy import AccuracyRecord, AccuracyTable
space = load_space("ufo_vit_tiny")
table = AccuracyTable(sys.argv[1], space)
rng = np.random.default_rng(int(sys.argv[2]))
print("ready", flush=True)
while True:
    rows = [AccuracyRecord(space.sample(rng).to_string(), "face", "orl", "accuracy",
            float(rng.random()), True, "x" * 2000, "d") for _ in range(20)]
    table.append(rows)
"""


def test_killing_a_writer_mid_append_leaves_whole_lines(tiny, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "t.csv"
    for seed, delay in enumerate((0.05, 0.12, 0.2)):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(seed)], stdout=subprocess.PIPE
        )
        assert child.stdout.readline() == b"ready\n"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        before = len(AccuracyTable(path, tiny).records)  # reads without a warning
        assert path.read_bytes().endswith(b"\n")
        AccuracyTable(path, tiny).append([record(tiny.smallest(), f"after{seed}", 0.5)])
        assert len(AccuracyTable(path, tiny).records) == before + 1


def test_a_carriage_return_in_an_unquoted_field_names_the_line(tiny, tmp_path):
    """Found by tools/fuzz_loaders.py: csv.Error escaped."""
    path = tmp_path / "t.csv"
    row = f'"{tiny.smallest().to_string()}",face,orl,accuracy,0.5,true,s\rx,d\n'
    path.write_bytes((HEADER + row + row).encode())
    with pytest.raises(UfoError, match=r"t.csv:2: malformed CSV: new-line character seen") as info:
        AccuracyTable(path, tiny)
    assert "\n" not in str(info.value)
