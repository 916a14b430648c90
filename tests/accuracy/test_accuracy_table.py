import numpy as np
import pytest

from ufo_nas import ArchError, UfoError
from ufo_nas.accuracy import AccuracyRecord, AccuracyTable


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
