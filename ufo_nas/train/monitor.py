"""What a user watches: the metrics CSV, TensorBoard events (when installed) and curves.

metrics.csv has one row per value: stage, step, kind (train / val), task, subnet (largest,
smallest, students, ...), metric, value, written as it is measured.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ufo_nas.train.checkpointing import STAGE_ORDER

COLUMNS = ("stage", "step", "kind", "task", "subnet", "metric", "value")


@dataclass(frozen=True)
class MetricRow:
    stage: str
    step: int
    kind: str
    task: str
    subnet: str
    metric: str
    value: float


def read_metrics(path: Path) -> list[MetricRow]:
    with path.open(newline="") as f:
        return [
            MetricRow(
                r["stage"],
                int(r["step"]),
                r["kind"],
                r["task"],
                r["subnet"],
                r["metric"],
                float(r["value"]),
            )  # fmt: skip
            for r in csv.DictReader(f)
        ]


class MetricsLog:
    """Appends rows to <out>/metrics.csv and, if tensorboard is installed, to event files
    under <out>/tensorboard (tags kind/task/subnet/metric, global step over both stages)."""

    def __init__(self, out: Path, keep_until: tuple[str, int] | None = None):
        self.path = out / "metrics.csv"
        if keep_until is not None and self.path.exists():  # resuming: drop rows past it
            stage, step = keep_until
            rank = STAGE_ORDER.index(stage)
            kept = [
                r
                for r in read_metrics(self.path)
                if (STAGE_ORDER.index(r.stage), r.step) <= (rank, step)
            ]
            self._write(kept, "w")
        elif not self.path.exists():
            self._write([], "w")
        self._board = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self._board = SummaryWriter(str(out / "tensorboard"))

    def _write(self, rows: Iterable[MetricRow], mode: str) -> None:
        with self.path.open(mode, newline="") as f:
            writer = csv.writer(f)
            if mode == "w":
                writer.writerow(COLUMNS)
            writer.writerows(
                (r.stage, r.step, r.kind, r.task, r.subnet, r.metric, f"{r.value:.6g}")
                for r in rows
            )

    def add(self, rows: list[MetricRow], global_step: int) -> None:
        self._write(rows, "a")
        if self._board is not None:
            for r in rows:
                if math.isfinite(r.value):
                    tag = f"{r.kind}/{r.task}/{r.subnet}/{r.metric}"
                    self._board.add_scalar(tag, r.value, global_step)

    def close(self) -> None:
        if self._board is not None:
            self._board.close()
