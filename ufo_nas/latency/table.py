"""Latency lookup tables: `latency_tables/<device>/<space>.yaml`, one line per row.

A table holds each operator's time, the end-to-end times of whole validation subnets, the
calibration fitted from them, and its provenance (device fingerprint, backend and library
versions, precision, threads, date, command, steal time, and whether it was measured or is
a roofline estimate). Machines drift +-30% between processes, and by +-20% within one over
tens of seconds, so every chunk of models is timed interleaved with an anchor (a fixed
reference subnet), and each row records the anchor's time in its chunk and its process
("session"). Times are scaled by the anchor to the first session's median anchor time, so
chunks, resumed runs and benchmarks in other processes compare on one scale.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ufo_nas.errors import UfoError
from ufo_nas.fileio import write_atomic
from ufo_nas.formats import VersionedFormat
from ufo_nas.paths import project_root
from ufo_nas.space import SearchSpace

SCHEMA = 1


class LatencyTableError(UfoError):
    """A latency table is missing, corrupt, of an older schema, or for another space."""


TABLE_FORMAT = VersionedFormat(
    "latency table",
    SCHEMA,
    LatencyTableError,
    syntax="YAML",
    required=("schema", "space", "space_fingerprint", "operators"),
    remedy="run `ufo profile` to build it",
)


@dataclass
class OperatorRow:
    op: str
    ms: float  # low percentile per copy, as measured in its chunk
    median_ms: float
    spread: float  # (p90 - p10) / p10
    anchor_ms: float  # the anchor's time in the same chunk
    session: int = 0
    copies: int = 1  # chained copies timed together (amortising per-call overhead)


@dataclass
class ValidationRow:
    arch: str
    tasks: list[str]
    measured_ms: float
    anchor_ms: float
    session: int = 0


@dataclass
class LatencyTable:
    space: str
    space_fingerprint: str
    device: str
    measured: bool
    provenance: dict[str, Any] = field(default_factory=dict)
    operators: dict[str, OperatorRow] = field(default_factory=dict)
    validation: list[ValidationRow] = field(default_factory=list)
    calibration: dict[str, float] = field(default_factory=lambda: {"a": 1.0, "b": 0.0, "c": 0.0})
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def reference_anchor_ms(self) -> float:
        """The anchor time all scaled times refer to: the first session's median."""
        rows = [*self.operators.values(), *self.validation]
        if not rows:
            raise LatencyTableError(f"the {self.device} table of '{self.space}' has no rows")
        first = min(row.session for row in rows)
        return float(np.median([row.anchor_ms for row in rows if row.session == first]))

    def scaled_ms(self, ms: float, anchor_ms: float) -> float:
        """A time measured in a chunk whose anchor took `anchor_ms`, on the reference scale."""
        return ms * self.reference_anchor_ms / anchor_ms

    def op_ms(self, key: str) -> float:
        if key not in self.operators:
            raise LatencyTableError(
                f"the {self.device} table of '{self.space}' has no operator '{key}'; "
                "re-run `ufo profile` to complete it"
            )
        row = self.operators[key]
        return self.scaled_ms(row.ms, row.anchor_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "space": self.space,
            "space_fingerprint": self.space_fingerprint,
            "device": self.device,
            "measured": self.measured,
            "provenance": self.provenance,
            "calibration": self.calibration,
            "metrics": self.metrics,
            "operators": [asdict(row) for row in self.operators.values()],
            "validation": [asdict(row) for row in self.validation],
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table (replacing the same table's earlier, partial state)."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=200)
        return write_atomic(path, lambda tmp: tmp.write_text(text), overwrite=True)

    @classmethod
    def load(cls, path: str | os.PathLike, space: SearchSpace | None = None) -> LatencyTable:
        """Read a table; with `space`, refuse one built for any other space."""
        path = Path(path)
        data = TABLE_FORMAT.read(path)
        if space is not None and data["space_fingerprint"] != space.spec.fingerprint():
            raise LatencyTableError(
                f"{path} was built for space '{data['space']}' (fingerprint "
                f"{data['space_fingerprint']}), not '{space.name}' ({space.spec.fingerprint()})"
            )
        try:
            table = cls(
                space=data["space"],
                space_fingerprint=data["space_fingerprint"],
                device=data["device"],
                measured=bool(data["measured"]),
                provenance=data.get("provenance") or {},
                operators={row["op"]: OperatorRow(**row) for row in data["operators"] or []},
                validation=[ValidationRow(**row) for row in data.get("validation") or []],
                calibration=data["calibration"],
                metrics=data.get("metrics") or {},
            )
        except (KeyError, TypeError) as exc:
            raise LatencyTableError(f"{path} is a corrupt latency table: {exc}") from None
        table.check_finite(path)
        return table

    def check_finite(self, path: str | os.PathLike) -> None:
        """Refuse a NaN, infinite or non-numeric time or calibration, naming its row."""
        fix = (
            f"delete the row and run `ufo-profile --device {self.device} --space {self.space}` "
            "to re-measure it"
        )
        rows: list[tuple[str, dict[str, Any]]] = [
            (f"operator row '{r.op}'", asdict(r)) for r in self.operators.values()
        ]
        rows += [
            (f"validation row {k} ({r.arch})", asdict(r)) for k, r in enumerate(self.validation)
        ]
        for what, row in rows:
            for key in ("ms", "median_ms", "spread", "anchor_ms", "measured_ms"):
                if key in row and not _finite(row[key]):
                    raise LatencyTableError(f"{path}: {what}: {key} is {row[key]!r}; {fix}")
        for key in ("a", "b", "c"):
            if not _finite(self.calibration.get(key, 0.0)):
                raise LatencyTableError(
                    f"{path}: calibration {key} is {self.calibration[key]!r}; run "
                    f"`ufo-profile --device {self.device} --space {self.space}` to refit it"
                )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def table_path(device: str, space: SearchSpace) -> Path:
    return project_root() / "latency_tables" / device / f"{space.name}.yaml"


def fit_calibration(sum_ms: np.ndarray, blocks: np.ndarray, measured_ms: np.ndarray) -> dict:
    """measured ~ a * sum + b, or + c * blocks (per-block overhead) if that predicts better
    in leave-one-out cross-validation."""
    candidates = {
        "a*sum+b": np.column_stack([sum_ms, np.ones_like(sum_ms)]),
        "a*sum+b+c*blocks": np.column_stack([sum_ms, np.ones_like(sum_ms), blocks]),
    }
    best = None
    for name, x in candidates.items():
        if len(measured_ms) <= x.shape[1] + 1:
            continue
        errors = []
        for k in range(len(measured_ms)):
            keep = np.arange(len(measured_ms)) != k
            coef, *_ = np.linalg.lstsq(x[keep], measured_ms[keep], rcond=None)
            errors.append(abs(x[k] @ coef - measured_ms[k]) / measured_ms[k])
        score = float(np.mean(errors))
        if best is None or score < best[0]:
            coef, *_ = np.linalg.lstsq(x, measured_ms, rcond=None)
            best = (score, name, coef)
    if best is None:
        return {"model": "sum", "a": 1.0, "b": 0.0, "c": 0.0}
    _, name, coef = best
    return {
        "model": name,
        "a": float(coef[0]),
        "b": float(coef[1]),
        "c": float(coef[2]) if len(coef) > 2 else 0.0,
    }
