"""Latency lookup tables: `latency_tables/<device>/<space>.yaml`, one line per row; a
device whose times depend on the host it runs on (a CPU) may also hold tables for other
hosts, in `latency_tables/<device>/hosts/<host id>/<space>.yaml`.

A table holds each operator's time, the end-to-end times of whole validation subnets, the
calibration fitted from them, and its provenance (device fingerprint, backend and library
versions, precision, threads, date, command, steal time, and whether it was measured or is
a roofline estimate). Machines drift +-30% between processes, and by +-20% within one over
tens of seconds, so every chunk of models is timed interleaved with an anchor (a fixed
reference subnet), and each row records the anchor's time in its chunk and its process
("session"). Times are scaled by the anchor to the first session's median anchor time, so
chunks, resumed runs and benchmarks in other processes compare on one scale. A later
measurement against a complete table (`--verify`, an export's re-timing, P1) also times two
of its validation subnets beside the anchor (`reference_pairs`), so that one tiny model
running far out of step cannot rescale a whole chunk.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ufo_nas.errors import UfoError
from ufo_nas.fileio import write_atomic
from ufo_nas.formats import VersionedFormat, non_finite_path
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


@dataclass(frozen=True)
class ReferenceSubnet:
    """A validation subnet timed beside the anchor in a later measurement's every chunk."""

    arch: str
    tasks: tuple[str, ...]
    anchors: float  # its time in the table, in units of the anchor's time


REFERENCES = 2  # validation subnets timed beside the anchor when measuring against a table


@dataclass
class LatencyTable:
    space: str
    space_fingerprint: str
    device: str
    measured: bool
    provenance: dict[str, Any] = field(default_factory=dict)
    operators: dict[str, OperatorRow] = field(default_factory=dict)
    validation: list[ValidationRow] = field(default_factory=list)
    calibration: dict[str, float] = field(
        default_factory=lambda: {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0}
    )
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def reference_anchor_ms(self) -> float:
        """The anchor time all scaled times refer to: the median over the rows of the
        reference session (the one a recalibration measured on the host the table now
        describes, `provenance.reference_session`), else of the first session."""
        rows = [*self.operators.values(), *self.validation]
        if not rows:
            raise LatencyTableError(f"the {self.device} table of '{self.space}' has no rows")
        session = self.provenance.get("reference_session", min(row.session for row in rows))
        anchors = [row.anchor_ms for row in rows if row.session == session]
        if not anchors:
            raise LatencyTableError(
                f"the {self.device} table of '{self.space}': no row of its reference session "
                f"{session}; re-run `ufo profile --recalibrate`"
            )
        return float(np.median(anchors))

    def scaled_ms(self, ms: float, anchor_ms: float) -> float:
        """A time measured in a chunk whose anchor took `anchor_ms`, on the reference scale."""
        return ms * self.reference_anchor_ms / anchor_ms

    def validation_times(self) -> list[tuple[str, tuple[str, ...], float]]:
        """(arch, tasks, ms on the reference scale) of each distinct validation subnet, in
        first-timed order: the median over its rows where sessions timed it again
        (`ufo profile --add-session`; a time moves 3-9% between processes here)."""
        scaled: dict[tuple[str, tuple[str, ...]], list[float]] = {}
        for row in self.validation:
            key = (row.arch, tuple(row.tasks))
            scaled.setdefault(key, []).append(self.scaled_ms(row.measured_ms, row.anchor_ms))
        return [(arch, tasks, float(np.median(ms))) for (arch, tasks), ms in scaled.items()]

    def reference_pairs(self, count: int = REFERENCES) -> list[tuple[str, tuple[str, ...]]]:
        """`count` validation subnets (arch, tasks) spread over the range of the table's
        times: each the one nearest (on a log scale) to min * (max / min) ** (k / (count +
        1)), k = 1..count. Timed beside the anchor in a later chunk, they outvote an anchor
        far out of step (`implied_anchor_ms`) and scale the models of their size
        (`matched_anchor_ms`); their times come from `LatencyPredictor.references_of`.
        Spread over the range, not its quantiles, so that one is large where a quarter of
        the subnets (those serving every task) are 2-3x the rest. None where it has no rows."""
        times = sorted(self.validation_times(), key=lambda row: row[2])
        if not times:
            return []
        logs = np.log([ms for _, _, ms in times])
        targets = logs[0] + (logs[-1] - logs[0]) * np.arange(1, count + 1) / (count + 1)
        picks = sorted({int(np.abs(logs - target).argmin()) for target in targets})
        return [times[i][:2] for i in picks]

    def cold_timed(self) -> list[str]:
        """What of the table was timed cold ("operators", "validation subnets"): by a
        session that made no untimed calls before each timed visit (all before 2026-12-05;
        `ufo_nas.latency.timing`)."""
        return self._timed_by(lambda session: not session.get("warm_calls"))

    def timed_on_init_weights(self) -> list[str]:
        """What of the table was timed on a freshly initialised model's weights ("operators",
        "validation subnets"): by a session that records no `weights` (all before
        2026-12-06), which OpenVINO runs faster than trained ones (`ufo_nas.latency.weights`)."""
        return self._timed_by(lambda session: not session.get("weights"))

    def _timed_by(self, matches: Callable[[dict], bool]) -> list[str]:
        """What of the table ("operators", "validation subnets") a session `matches` timed."""
        sessions = self.provenance.get("sessions") or []
        chosen = {i for i, s in enumerate(sessions) if matches(s)}
        rows = (("operators", self.operators.values()), ("validation subnets", self.validation))
        return [what for what, kind in rows if any(r.session in chosen for r in kind)]

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
        """Read a table, every value checked; with `space`, refuse one built for any other
        space."""
        path = Path(path)
        table = _table_from(TABLE_FORMAT.read(path), str(path))
        if space is not None and table.space_fingerprint != space.spec.fingerprint():
            raise LatencyTableError(
                f"{path} was built for space '{table.space}' (fingerprint "
                f"{table.space_fingerprint}), not '{space.name}' ({space.spec.fingerprint()})"
            )
        return table


# a time outside this range (ms) is corrupt, and scaling it by the anchor could overflow
TIME_RANGE_MS = (1e-9, 1e7)
CALIBRATION_LIMIT = 1e7  # the largest |a|, |b|, |c| and |d|
FLOAT_MAX = sys.float_info.max
_TIMES = ("ms", "median_ms", "anchor_ms", "measured_ms")


def _number(value: Any, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def _table_from(data: dict[str, Any], source: str) -> LatencyTable:
    """The table in the checked mapping of file `source`; a one-line LatencyTableError names
    the file and the key or row of a value missing, of the wrong type, NaN, infinite or out
    of range."""

    def fail(why: str) -> LatencyTableError:
        return LatencyTableError(f"{source}: {why}")

    for key in ("space", "space_fingerprint", "device", "measured", "calibration"):
        if key not in data:
            raise fail(f"no '{key}'")
    for key in ("space", "space_fingerprint", "device"):
        if not _name(data[key]):
            raise fail(f"{key} is {data[key]!r}; expected a name")
    if not isinstance(data["measured"], bool):
        raise fail(f"measured is {data['measured']!r}; expected true or false")
    command = f"`ufo-profile --device {data['device']} --space {data['space']}`"
    remeasure = f"delete the row and run {command} to re-measure it"

    def mapping(key: str) -> dict[str, Any]:
        value = {} if data.get(key) is None else data[key]
        if not isinstance(value, dict):
            raise fail(f"{key} is {value!r}; expected a mapping")
        return value

    def rows(key: str) -> list[Any]:
        value = [] if data.get(key) is None else data[key]
        if not isinstance(value, list):
            raise fail(f"{key} is {value!r}; expected a list of rows")
        return value

    provenance, metrics = mapping("provenance"), mapping("metrics")
    calibration = mapping("calibration")
    bad = non_finite_path(provenance, "provenance")
    if bad:
        raise fail(f"{bad} is NaN or infinite")
    host = provenance.get("host")
    if host is not None and not (
        isinstance(host, dict)
        and all(_strings(host.get(key, [])) for key in ("isa", "isa_checked"))
    ):
        raise fail(
            "provenance.host: expected a mapping whose isa and isa_checked are lists of flags"
        )
    reference = provenance.get("reference_session")
    sessions = provenance.get("sessions", [])
    if reference is not None and not (
        isinstance(reference, int) and isinstance(sessions, list) and 0 <= reference < len(sessions)
    ):
        raise fail(
            f"provenance.reference_session is {reference!r}; expected the index of one of its "
            f"{len(sessions) if isinstance(sessions, list) else 0} sessions"
        )
    for key, value in metrics.items():
        if not _number(value, -FLOAT_MAX, FLOAT_MAX):
            raise fail(f"metrics {key} is {value!r}; expected a finite number")
    unknown = set(calibration) - {"model", *TERMS.values()}
    if unknown:
        raise fail(f"calibration: unknown key {sorted(map(str, unknown))[0]!r}")
    model = calibration.get("model", "sum")
    if not isinstance(model, str):
        raise fail(f"calibration model is {model!r}; expected a name")
    known = ("sum", *dict.fromkeys(form for forms in FORM_FAMILIES for form in forms))
    if model not in known:
        raise fail(f"calibration model is {model!r}; expected one of {', '.join(known)}")
    optional = ("d",) if "d" in calibration else ()  # the parameter term, since 2026-12-05
    for key in ("a", "b", "c", *optional):
        if not _number(calibration.get(key), -CALIBRATION_LIMIT, CALIBRATION_LIMIT):
            raise fail(
                f"calibration {key} is {calibration.get(key)!r}; expected a number of magnitude "
                f"at most {CALIBRATION_LIMIT:g}; run {command} to refit it"
            )

    def row(kind: type, raw: Any, what: str) -> Any:
        if not isinstance(raw, dict):
            raise fail(f"{what} is {raw!r}; expected a mapping; {remeasure}")
        unknown = set(raw) - {f.name for f in fields(kind)}
        if unknown:
            raise fail(f"{what}: unknown key {sorted(map(str, unknown))[0]!r}; {remeasure}")
        missing = [f.name for f in fields(kind) if f.name not in raw and f.default is MISSING]
        if missing:
            raise fail(f"{what}: no '{missing[0]}'; {remeasure}")
        for key, value in raw.items():
            if key in _TIMES:
                low, high = TIME_RANGE_MS
                ok, expected = _number(value, low, high), f"a time in ms from {low:g} to {high:g}"
            elif key == "spread":
                ok, expected = _number(value, 0, TIME_RANGE_MS[1]), "a non-negative number"
            elif key in ("session", "copies"):
                ok = isinstance(value, int) and _number(value, key == "copies", FLOAT_MAX)
                expected = "a positive integer" if key == "copies" else "a non-negative integer"
            elif key == "tasks":
                ok, expected = _strings(value), "a list of task names"
            else:  # op, arch
                ok, expected = _name(value), "a name"
            if not ok:
                raise fail(f"{what}: {key} is {value!r}; expected {expected}; {remeasure}")
        return kind(**raw)

    operators: dict[str, OperatorRow] = {}
    for k, raw in enumerate(rows("operators")):
        name = raw.get("op") if isinstance(raw, dict) else None
        what = f"operator row '{name}'" if _name(name) else f"operator row {k}"
        operator = row(OperatorRow, raw, what)
        if operator.op in operators:
            raise fail(f"{what}: a second row for the same operator; {remeasure}")
        operators[operator.op] = operator
    validation = []
    for k, raw in enumerate(rows("validation")):
        arch = raw.get("arch") if isinstance(raw, dict) else None
        what = f"validation row {k}" + (f" ({arch})" if _name(arch) else "")
        validation.append(row(ValidationRow, raw, what))
    return LatencyTable(
        space=data["space"],
        space_fingerprint=data["space_fingerprint"],
        device=data["device"],
        measured=data["measured"],
        provenance=provenance,
        operators=operators,
        validation=validation,
        calibration=calibration,
        metrics=metrics,
    )


def _name(value: Any) -> bool:
    """A non-empty one-line string (it goes into messages)."""
    return isinstance(value, str) and bool(value) and value.isprintable()


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def table_path(device: str, space: SearchSpace) -> Path:
    """The device's reference table of the space."""
    return project_root() / "latency_tables" / device / f"{space.name}.yaml"


def host_table_path(device: str, space: SearchSpace, host_id: str) -> Path:
    """The device's table of the space for another host than the reference table's
    (`ufo_nas.hardware.host_id` names the folder)."""
    return project_root() / "latency_tables" / device / "hosts" / host_id / f"{space.name}.yaml"


def host_table_paths(device: str, space: SearchSpace) -> list[Path]:
    """Every table of the device for the space: the reference one first (where it exists),
    then those for other hosts, by folder name."""
    folder = project_root() / "latency_tables" / device
    hosts = sorted(folder.glob(f"hosts/*/{space.name}.yaml"))
    return [p for p in [table_path(device, space)] if p.is_file()] + hosts


# Calibration forms: measured ~ a * sum + b (+ c * blocks) (+ d * mparams), fitted by least
# squares on relative errors (what a table reports and P1 scores: in ms, the largest subnets
# outweigh the small ones). The parameter term prices the weights a whole subnet streams
# through the cache, which its operators, each timed alone with its weights cache-hot, never
# pay: without it the smallest subnets were predicted 8-32% too slow, and it is always in the
# fit (leave-one-out choosing whether to add it did no better held out: bench_calibration).
# Tables fitted in ms (ABSOLUTE_FORMS, before 2026-12-04) or relative without the parameter
# term (RELATIVE_FORMS, before 2026-12-05; leave-one-out chose the block term) keep their
# family when checked; `ufo profile --refit` refits them.
FORM_TERMS = {  # a form (less " relative") and its terms, each of TERMS
    "a*sum+b": ("sum", "one"),
    "a*sum+b+c*blocks": ("sum", "one", "blocks"),
    "a*sum+b+d*mparams": ("sum", "one", "mparams"),
}
TERMS = {"sum": "a", "one": "b", "blocks": "c", "mparams": "d"}  # term: its coefficient
ABSOLUTE_FORMS = ("a*sum+b", "a*sum+b+c*blocks")
RELATIVE_FORMS = ("a*sum+b relative", "a*sum+b+c*blocks relative")
CALIBRATION_FORMS = ("a*sum+b+d*mparams relative",)
FORM_FAMILIES = (CALIBRATION_FORMS, RELATIVE_FORMS, ABSOLUTE_FORMS)  # newest first


@dataclass(frozen=True)
class Regressors:
    """What a calibration predicts each subnet's time from: its uncalibrated operator sum
    (ms), its active blocks, and its parameters (millions, `CostModel.params`)."""

    sum_ms: np.ndarray
    blocks: np.ndarray
    mparams: np.ndarray

    def design(self, form: str) -> np.ndarray:
        """The (n, terms) matrix of a form's terms."""
        named = {
            "sum": self.sum_ms,
            "one": np.ones_like(self.sum_ms),
            "blocks": self.blocks,
            "mparams": self.mparams,
        }
        return np.column_stack([named[term] for term in FORM_TERMS[form.removesuffix(" relative")]])

    def rows(self, keep: np.ndarray | slice) -> Regressors:
        """The rows `keep` selects (a mask, indices or a slice)."""
        return Regressors(self.sum_ms[keep], self.blocks[keep], self.mparams[keep])

    @classmethod
    def stack(cls, parts: list[Regressors]) -> Regressors:
        """The rows of `parts`, in order, as one."""
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))


def calibrated_ms(calibration: dict, x: Regressors) -> np.ndarray:
    """A calibration's prediction (ms) of each subnet; a coefficient a table lacks is 0."""
    return (
        calibration["a"] * x.sum_ms
        + calibration["b"]
        + calibration.get("c", 0.0) * x.blocks
        + calibration.get("d", 0.0) * x.mparams
    )


def coefficients(model: str) -> tuple[str, ...]:
    """The coefficients a calibration form fits ("a" alone for "sum")."""
    return tuple(TERMS[t] for t in FORM_TERMS.get(model.removesuffix(" relative"), ("sum",)))


def describe_calibration(calibration: dict) -> str:
    """The form and the coefficients of its terms, as "<form>: a=.. b=.."."""
    model = calibration.get("model", "sum")
    values = " ".join(f"{k}={calibration.get(k, 0.0):.4g}" for k in coefficients(model))
    return f"{model}: {values}"


def form_families(model: str) -> list[tuple[str, ...]]:
    """The families of forms (FORM_FAMILIES, newest first) a table whose calibration is
    `model` may have been fitted with: each holding it; every family for "sum" (too few
    rows for any form)."""
    return [forms for forms in FORM_FAMILIES if model == "sum" or model in forms]


def fit_calibration(
    x: Regressors, measured_ms: np.ndarray, forms: tuple[str, ...] = CALIBRATION_FORMS
) -> dict:
    """The form of `forms` that predicts best in leave-one-out cross-validation (mean
    relative error; the first of equals; a single form is not cross-validated), fitted on
    every row; "sum" when there are too few rows for any (two more than its terms). Holds
    every coefficient of TERMS, 0 for the terms it leaves out."""
    best = None
    everyone = np.arange(len(measured_ms))
    for name in forms:
        design = x.design(name)
        if len(measured_ms) <= design.shape[1] + 1:
            continue
        weight = 1 / measured_ms if name.endswith(" relative") else np.ones_like(measured_ms)

        def fit(rows: np.ndarray, design: np.ndarray = design, weight=weight) -> np.ndarray:
            w = weight[rows]
            coef, *_ = np.linalg.lstsq(design[rows] * w[:, None], measured_ms[rows] * w, rcond=None)
            return coef

        score = 0.0
        if len(forms) > 1:
            errors = [
                abs(design[k] @ fit(everyone != k) - measured_ms[k]) / measured_ms[k]
                for k in everyone
            ]
            score = float(np.mean(errors))
        if best is None or score < best[0] - 1e-9:  # a tie (an exact law) keeps the simpler
            best = (score, name, fit(np.full(len(measured_ms), True)))
    if best is None:
        return {"model": "sum", **dict.fromkeys(TERMS.values(), 0.0), "a": 1.0}
    _, name, coef = best
    fitted = dict(zip(FORM_TERMS[name.removesuffix(" relative")], map(float, coef)))
    return {"model": name, **{key: fitted.get(term, 0.0) for term, key in TERMS.items()}}
