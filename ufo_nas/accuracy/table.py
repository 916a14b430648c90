"""The accuracy table of a space: every evaluated (arch, task, benchmark) as one CSV row.

It lives beside the space file (`search_spaces/<space>.accuracy.csv`), is appended to row
by row, each append replacing the file whole (so an interrupted `ufo eval` loses nothing; a
line cut by a crash elsewhere is dropped with a warning before the next append), and turns
into one regression target per task:

- if every benchmark of the task reports the same higher-is-better metric, the target is
  that metric averaged over the benchmarks (e.g. verification accuracy);
- otherwise (ranks, or mixed metrics), each benchmark is mapped to normal scores of its
  ranks among the table's archs (rankit: best arch highest), and the target is their mean.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

from ufo_nas.errors import UfoError, UfoWarning
from ufo_nas.fileio import write_atomic
from ufo_nas.space import Arch, SearchSpace


@dataclass(frozen=True)
class AccuracyRecord:
    arch: str
    task: str
    benchmark: str  # data set the metric was measured on
    metric: str  # accuracy, mAP, recall@1, top1, rank, ...
    value: float
    higher_is_better: bool
    source: str  # who measured it: ufo-eval + checkpoint, or an imported data set
    date: str


COLUMNS = [f.name for f in fields(AccuracyRecord)]


def accuracy_table_path(space: SearchSpace) -> Path:
    """`<folder of the space file>/<space>.accuracy.csv`."""
    source = Path(space.spec.source)
    folder = source.parent if source.suffix in (".yaml", ".yml") else Path.cwd()
    return folder / f"{space.name}.accuracy.csv"


@dataclass(frozen=True)
class TaskTargets:
    archs: list[Arch]
    y: np.ndarray
    description: str


class AccuracyTable:
    """Rows of one space's accuracy table; `append` writes through to the file."""

    def __init__(self, path: str | os.PathLike, space: SearchSpace):
        self.path, self.space = Path(path), space
        self.records: list[AccuracyRecord] = []
        self._torn = b""  # a last line without its newline: what an interrupted write leaves
        if self.path.exists():
            self.records = self._read()

    def _read(self) -> list[AccuracyRecord]:
        try:
            data = self.path.read_bytes()
            whole, _, self._torn = data.rpartition(b"\n") if b"\n" in data else (b"", b"", data)
            text = whole.decode("utf-8") + "\n" if whole else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise UfoError(f"{self.path} is not a readable accuracy table: {exc}") from None
        if self._torn:
            warnings.warn(
                f"{self.path}: the last line is cut (an interrupted write); ignoring "
                f"{_shorten(self._torn)!r}, it is dropped before the next append",
                UfoWarning,
                stacklevel=3,
            )
        reader = csv.DictReader(io.StringIO(text))
        try:
            if reader.fieldnames != COLUMNS:
                raise UfoError(
                    f"{self.path} is not an accuracy table: header {reader.fieldnames}, "
                    f"expected {COLUMNS}"
                )
            return [self._record(line, row) for line, row in enumerate(reader, start=2)]
        except csv.Error as exc:  # e.g. a carriage return inside an unquoted field
            line = reader.line_num + 1  # the line it fails on is not counted yet
            raise UfoError(f"{self.path}:{line}: malformed CSV: {exc}") from None

    def _record(self, line: int, row: dict) -> AccuracyRecord:
        where = f"{self.path}:{line}"
        try:
            record = AccuracyRecord(
                **{
                    **row,
                    "value": float(row["value"]),
                    "higher_is_better": row["higher_is_better"] == "true",
                }
            )
        except (TypeError, ValueError):
            raise UfoError(f"{where}: malformed row {_shorten(str(row))}") from None
        if not math.isfinite(record.value):
            raise UfoError(f"{where}: value {row['value']!r} is not a finite number")
        if record.task not in self.space.spec.task_names:
            raise UfoError(
                f"{where}: task {record.task!r} is not in space '{self.space.name}' "
                f"(tasks: {', '.join(self.space.spec.task_names)})"
            )
        try:
            self.space.parse(record.arch)
        except UfoError as exc:
            raise UfoError(f"{where}: {exc}") from None
        return record

    def append(self, records: Iterable[AccuracyRecord]) -> None:
        """Append rows (checked against the space): the file is replaced whole, so a kill
        leaves either the old table or the new one."""
        records = list(records)
        for record in records:
            self.space.parse(record.arch)
            self.space.spec.task(record.task)
            if not math.isfinite(record.value):
                raise UfoError(f"{record.arch}: {record.task} value {record.value} is not finite")
        kept = self.path.read_bytes() if self.path.exists() else b""
        kept = kept[: kept.rfind(b"\n") + 1]  # drops a cut last line
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        if not kept:
            writer.writeheader()
        for record in records:
            row = asdict(record)
            row["higher_is_better"] = "true" if record.higher_is_better else "false"
            row["value"] = repr(record.value)
            writer.writerow(row)
        data = kept + buffer.getvalue().encode("utf-8")
        write_atomic(self.path, lambda tmp: tmp.write_bytes(data), overwrite=True)
        self._torn = b""
        self.records.extend(records)

    def evaluated(self, task: str, benchmark: str) -> set[str]:
        return {r.arch for r in self.records if r.task == task and r.benchmark == benchmark}

    def targets(self, task: str) -> TaskTargets:
        """One target per arch evaluated on every benchmark of `task` in the table."""
        rows = [r for r in self.records if r.task == task]
        if not rows:
            raise UfoError(f"{self.path} has no rows for task '{task}'")
        benchmarks = sorted({r.benchmark for r in rows})
        values: dict[str, dict[str, float]] = {b: {} for b in benchmarks}
        for r in rows:
            values[r.benchmark][r.arch] = r.value
        archs = sorted(set.intersection(*(set(v) for v in values.values())))
        metrics = {(r.metric, r.higher_is_better) for r in rows}
        if len(metrics) == 1 and next(iter(metrics))[1] and next(iter(metrics))[0] != "rank":
            metric = next(iter(metrics))[0]
            y = np.mean([[values[b][a] for a in archs] for b in benchmarks], axis=0)
            description = f"{metric} (higher is better), mean over {', '.join(benchmarks)}"
        else:
            better = {r.benchmark: r.higher_is_better for r in rows}
            scores = []
            for b in benchmarks:
                v = np.array([values[b][a] for a in archs])
                scores.append(ndtri((rankdata(v if better[b] else -v) - 0.5) / len(v)))
            y = np.mean(scores, axis=0)
            description = (
                "normal score of the rank among evaluated subnets (higher is better), "
                f"mean over {', '.join(benchmarks)}"
            )
        return TaskTargets([self.space.parse(a) for a in archs], y, description)


def _shorten(text: str | bytes, limit: int = 80) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
