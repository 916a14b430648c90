"""A search's result: per device, the Pareto set with each subnet's figures, plus what was
searched and how. Saved as `pareto.json` (everything) and `pareto.csv` (one row per subnet
and device); read back by `ufo plot` and `ufo export`."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ufo_nas.errors import ArchError, UfoError
from ufo_nas.fileio import write_atomic
from ufo_nas.formats import VersionedFormat
from ufo_nas.space import Arch

FORMAT, SCHEMA = "ufo-nas-search", 1
JSON_NAME, CSV_NAME = "pareto.json", "pareto.csv"
REPORT_FORMAT = VersionedFormat(
    "search result", SCHEMA, UfoError, format=FORMAT, remedy="run ufo-search to write one"
)


@dataclass(frozen=True)
class ParetoRow:
    """One Pareto-optimal subnet: its arch string and predicted figures; after `ufo search
    --verify`, also its measured latency (on the table's scale), the error of the prediction
    (measured - predicted) / predicted in %, and whether it stays on the front measured."""

    arch: str
    score: dict[str, float]
    score_std: dict[str, float]
    latency_ms: float
    params: int
    macs: int
    measured_ms: float | None = None
    prediction_error_pct: float | None = None
    on_front_measured: bool | None = None


VERIFIED_KEYS = ("measured_ms", "prediction_error_pct", "on_front_measured")


@dataclass
class DeviceFront:
    """The Pareto set found for one device, fastest first."""

    device: str
    latency_measured: bool
    latency_source: str
    rows: list[ParetoRow]
    evaluations: int
    generations: int
    seconds: float
    hypervolume: list[float]  # per generation, normalised by this front's ideal and nadir
    verification: dict[str, Any] | None = None  # how `--verify` measured the rows, if it did

    @property
    def verified(self) -> bool:
        return self.verification is not None

    @property
    def latency_label(self) -> str:
        return "latency (ms)" if self.latency_measured else "latency (ms, ESTIMATE)"

    @property
    def latency_kind(self) -> str:
        """`measured`, or `roofline lower bound` (peaks only: real runs are slower)."""
        return "measured" if self.latency_measured else "roofline lower bound"


@dataclass
class SearchReport:
    space: str
    space_fingerprint: str
    tasks: list[str]
    objectives: list[str]
    score_targets: dict[str, str]
    risk: float
    budgets: dict[str, float | None]
    settings: dict[str, Any]
    fronts: list[DeviceFront]
    provenance: dict[str, Any] = field(default_factory=dict)
    # genes with choices the predictors never saw: UnseenChoices as dicts; held out of the
    # search unless settings["search_unseen"]
    unseen: list[dict[str, Any]] = field(default_factory=list)

    @property
    def searched_unseen(self) -> bool:
        return bool(self.settings.get("search_unseen", False))

    def unseen_notes(self) -> list[str]:
        """One line per group of genes whose choices the predictors never saw: held at
        what they saw, or (--search-unseen) searched with a larger std."""
        lines = []
        for gene, tasks, observed, unseen in _groups(self.unseen):
            whose = f"the {'/'.join(tasks)} predictor{'s' if len(tasks) > 1 else ''}"
            if self.searched_unseen:
                lines.append(
                    f"{gene}: {', '.join(map(str, unseen))} searched although {whose} never saw "
                    "them: its score there is a guess with a larger std"
                )
            elif not observed:
                lines.append(f"{gene}: not searched: layers {whose} never saw")
            else:
                at = ", ".join(map(str, observed))
                lines.append(
                    f"{gene}: held at {at}: {whose} never saw {', '.join(map(str, unseen))} "
                    "there (--search-unseen searches them anyway)"
                )
        return lines

    def legend(self) -> dict[str, str]:
        """What each figure means, for pareto.json and the printed front."""
        out = {}
        for task, target in self.score_targets.items():
            out[f"score_{task}"] = f"predicted {target}; +- score_std_{task}, the GP-NAS std"
        kinds = sorted({f.latency_kind for f in self.fronts})
        out["latency_ms"] = (
            "predicted ms per image; latency_kind says measured (from a measured table) or "
            "roofline lower bound (no table: published peaks only, real runs are slower)"
            if len(kinds) > 1 or kinds != ["measured"]
            else "predicted ms per image, from a measured table"
        )
        out["arch"] = (
            "the searched tasks' paths only; other tasks' paths are their first choice "
            "(shared), which is what the space reads for an omitted task"
        )
        if self.unseen:
            out["held" if not self.searched_unseen else "unseen"] = " | ".join(self.unseen_notes())
        if any(f.verified for f in self.fronts):
            out["measured_ms"] = (
                "ufo search --verify: ms per image measured end to end here, interleaved with "
                "the table's anchor and scaled by it to the table's scale (see verification)"
            )
            out["prediction_error_pct"] = (
                "100 x (latency_ms - measured_ms) / measured_ms, as in ufo export's manifest"
            )
            out["on_front_measured"] = (
                "whether the row is still non-dominated among its front with measured_ms as "
                "its latency"
            )
        return out

    def front(self, device: str) -> DeviceFront:
        for front in self.fronts:
            if front.device == device:
                return front
        devices = ", ".join(f.device for f in self.fronts)
        raise UfoError(f"the search has no device '{device}'; its devices: {devices}")

    # --- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The report as pareto.json holds it; an unverified front has no verification keys."""
        data = asdict(self)
        for front in data["fronts"]:
            if front["verification"] is None:
                del front["verification"]
                for row in front["rows"]:
                    for key in VERIFIED_KEYS:
                        del row[key]
        return {"format": FORMAT, "schema": SCHEMA, **data, "legend": self.legend()}

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> SearchReport:
        """Check every field (types, finite figures, each row's tasks those of the search)."""
        return _Reader(source).report(REPORT_FORMAT.check(data, source))

    @classmethod
    def load(cls, path: str | os.PathLike) -> SearchReport:
        """From `pareto.json` or the folder holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / JSON_NAME
        return cls.from_dict(REPORT_FORMAT.load(path), str(path))

    def csv_rows(self) -> list[dict[str, Any]]:
        held = "" if self.searched_unseen else _held_text(self.unseen)
        verified = any(f.verified for f in self.fronts)
        rows = []
        for front in self.fronts:
            for index, row in enumerate(front.rows):
                out: dict[str, Any] = {"device": front.device, "index": index}
                for task in self.tasks:
                    out[f"score_{task}"] = f"{row.score[task]:.6g}"
                    out[f"score_std_{task}"] = f"{row.score_std[task]:.6g}"
                out["latency_ms"] = f"{row.latency_ms:.6g}"
                out["latency_measured"] = front.latency_measured
                out["latency_kind"] = front.latency_kind
                if verified:
                    out.update(_verified_cells(row))
                out["params"] = row.params
                out["macs"] = row.macs
                out["arch"] = row.arch
                out["held"] = held
                rows.append(out)
        return rows

    def write(self, folder: str | os.PathLike, overwrite: bool = False) -> list[Path]:
        """pareto.json and pareto.csv into `folder`; refuses existing files unless allowed."""
        folder = Path(folder)
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        rows = self.csv_rows()

        def write_csv(tmp: Path) -> None:
            with tmp.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)

        written = []
        for path, write in (
            (folder / JSON_NAME, lambda tmp: tmp.write_text(text)),
            (folder / CSV_NAME, write_csv),
        ):
            try:
                written.append(write_atomic(path, write, overwrite))
            except OSError as exc:
                raise UfoError(f"cannot write {path}: {exc.strerror or exc}") from None
        return written

    # --- text -----------------------------------------------------------------------------------
    def format_front(self, front: DeviceFront, limit: int | None = None) -> str:
        """A readable table of one device's Pareto set."""
        head = [f"{t} score +- std" for t in self.tasks]
        measured = [f"{'measured ms':>11}", f"{'error':>7}", "   "] if front.verified else []
        lines = [
            "  ".join(
                [
                    f"{'#':>3}",
                    *(f"{h:>18}" for h in head),
                    f"{'latency ms':>12}",
                    *measured,
                    f"{'params':>8}",
                    f"{'MACs':>7}",
                    "arch",
                ]
            )
        ]
        mark = "" if front.latency_measured else "*"
        shown = front.rows if limit is None else front.rows[:limit]
        for i, row in enumerate(shown):
            scores = [f"{row.score[t]:>9.4f} +- {row.score_std[t]:.4f}" for t in self.tasks]
            lines.append(
                "  ".join(
                    [
                        f"{i:>3}",
                        *scores,
                        f"{row.latency_ms:>11.3f}{mark or ' '}",
                        *_measured_cells(row, front.verified),
                        f"{row.params / 1e6:>7.2f}M",
                        f"{row.macs / 1e9:>6.2f}G",
                        row.arch,
                    ]
                )
            )
        if limit is not None and len(front.rows) > limit:
            lines.append(f"  ... {len(front.rows) - limit} more in {CSV_NAME}")
        lines += [
            f"  {t} score: {target}; GP-NAS mean +- std" for t, target in self.score_targets.items()
        ]
        lines.append(
            "  arch: the searched tasks' paths only (an omitted task: its first choice, shared)"
        )
        if front.verified:
            lines.append(
                "  measured ms: re-timed here by --verify on the table's scale; error: vs the "
                "prediction; off: dominated once measured"
            )
        if mark:
            lines.append(
                "  * latency is a roofline ESTIMATE, a lower bound (no measured table for this "
                "device)"
            )
        return "\n".join(lines)


def _measured_cells(row: ParetoRow, verified: bool) -> list[str]:
    """The text table's cells of --verify's figures (none for a front not verified)."""
    if not verified or row.measured_ms is None or row.prediction_error_pct is None:
        return []
    off = "   " if row.on_front_measured else "off"
    return [f"{row.measured_ms:>11.3f}", f"{row.prediction_error_pct:>+6.1f}%", off]


def _verified_cells(row: ParetoRow) -> dict[str, Any]:
    """The CSV cells of --verify's figures; blank for a row not verified."""
    if row.measured_ms is None or row.prediction_error_pct is None:
        return dict.fromkeys(VERIFIED_KEYS, "")
    return {
        "measured_ms": f"{row.measured_ms:.6g}",
        "prediction_error_pct": f"{row.prediction_error_pct:.4g}",
        "on_front_measured": row.on_front_measured,
    }


# --- the result folder ----------------------------------------------------------------------
FRONTS_PNG, CONVERGENCE_PNG = "pareto.png", "convergence.png"
RESULT_NAMES = (JSON_NAME, CSV_NAME, FRONTS_PNG, CONVERGENCE_PNG)


def search_out_folder(
    space: str,
    devices: list[str],
    tasks: list[str],
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Where a search writes its results: `out` as given (refused if it holds results,
    unless `overwrite`), else the first free `runs/search/<space>-<devices>-<tasks>[-N]`
    (relative to the working directory; `space` is a name or a YAML path)."""
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise UfoError(f"--out {out} is a file, not a folder; choose another --out")
        held = [out / n for n in RESULT_NAMES if (out / n).exists()]
        if held and not overwrite:
            raise UfoError(
                f"{out} already holds search results ({held[0].name}); choose another --out "
                "or pass --overwrite"
            )
        return out
    stem = f"{Path(space).stem}-{'+'.join(devices)}-{'+'.join(tasks)}"
    base = Path("runs") / "search" / stem
    folder, n = base, 1
    while any((folder / name).exists() for name in RESULT_NAMES):
        n += 1
        folder = base.with_name(f"{stem}-{n}")
    return folder


def _groups(unseen: list[dict[str, Any]]) -> list[tuple[str, list[str], list, list]]:
    """Consecutive unseen genes of one kind with the same choices, as one entry each:
    ('path.face.0-11', tasks, observed, unseen)."""
    groups: list[tuple[str, list[int], list[str], list, list]] = []
    for u in unseen:
        kind, _, layer = u["gene"].rpartition(".")
        if not kind:  # depth: no layer
            groups.append((u["gene"], [], list(u["tasks"]), list(u["observed"]), list(u["unseen"])))
            continue
        key = (kind, list(u["tasks"]), list(u["observed"]), list(u["unseen"]))
        last = groups[-1] if groups else None
        if last and last[1] and (last[0], *last[2:]) == key and last[1][-1] == int(layer) - 1:
            last[1].append(int(layer))
        else:
            groups.append((kind, [int(layer)], *key[1:]))
    out = []
    for kind, layers, tasks, observed, choices in groups:
        if len(layers) > 1:
            kind = f"{kind}.{layers[0]}-{layers[-1]}"
        elif layers:
            kind = f"{kind}.{layers[0]}"
        out.append((kind, tasks, observed, choices))
    return out


def _held_text(unseen: list[dict[str, Any]]) -> str:
    """The held genes in one CSV cell: 'path.face.0-11=shared; ...'."""
    return "; ".join(
        f"{gene}={'/'.join(map(str, observed)) or 'absent'}"
        for gene, _, observed, _ in _groups(unseen)
    )


# --- reading pareto.json back ------------------------------------------------------------------
_GENE = re.compile(r"^(depth|(heads|mlp|path\.[a-z][a-z0-9_]*)\.[0-9]+)$")
_MAX_COUNT = 2**63 - 1  # params and MACs are int64 where computed
_UNSEEN_KEYS = ("gene", "tasks", "observed", "unseen")


class _Reader:
    """Typed reads of a search result's data: each failure is one UfoError naming the file
    and the key (`fronts[0].rows[3].latency_ms`)."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, problem: str) -> UfoError:
        return UfoError(f"{self.source} is a corrupt search result: {where} {problem}")

    def expect(self, where: str, value: Any, expected: str) -> UfoError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else f"{shown[:57]}..."
        return self.fail(where, f"is {shown}; expected {expected}")

    def mapping(
        self,
        value: Any,
        where: str,
        required: tuple[str, ...] | None = None,
        optional: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """A mapping; given `required`, with those keys and no others but `optional` ones."""
        if not isinstance(value, dict):
            raise self.expect(where, value, "a mapping")
        if required is None:
            return value
        missing = [k for k in required if k not in value]
        if missing:
            raise self.fail(f"{where}.{missing[0]}".lstrip("."), "is missing")
        unknown = [k for k in value if k not in required + optional]
        if unknown:
            raise self.fail(where or "the file", f"has an unknown key {unknown[0]!r}")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.expect(where, value, "a non-empty string")
        return value

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.expect(where, value, "true or false")
        return value

    def number(self, value: Any, where: str, minimum: float = -math.inf) -> float:
        """A finite number >= `minimum`, as a float."""
        try:
            number = float(value) if isinstance(value, (int, float)) else math.nan
        except OverflowError:  # an int past the float range
            number = math.inf
        if isinstance(value, bool) or not math.isfinite(number) or number < minimum:
            at_least = "" if minimum == -math.inf else f" >= {minimum:g}"
            raise self.expect(where, value, f"a finite number{at_least}")
        return number

    def count(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
            raise self.expect(where, value, "a whole number >= 0")
        return value

    def items(self, value: Any, where: str, non_empty: bool = True) -> list[Any]:
        if not isinstance(value, list) or (non_empty and not value):
            raise self.expect(where, value, "a non-empty list" if non_empty else "a list")
        return value

    def strings(self, value: Any, where: str, non_empty: bool = True) -> list[str]:
        """A list of distinct strings."""
        names = [
            self.string(v, f"{where}[{i}]")
            for i, v in enumerate(self.items(value, where, non_empty))
        ]
        if len(set(names)) != len(names):
            raise self.expect(where, value, "distinct names")
        return names

    def per_task(self, value: Any, where: str, tasks: list[str], minimum: float) -> dict:
        """A finite number >= `minimum` for each task of the search, and for no other."""
        if not isinstance(value, dict) or set(value) != set(tasks):
            raise self.expect(where, value, f"a mapping of {', '.join(tasks)}")
        return {t: self.number(value[t], f"{where}.{t}", minimum) for t in tasks}

    def plain(self, value: Any, where: str) -> Any:
        """JSON data without NaN or inf anywhere in it."""
        if isinstance(value, float) and not math.isfinite(value):
            raise self.expect(where, value, "a finite number")
        if isinstance(value, dict):
            for key, item in value.items():
                self.plain(item, f"{where}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.plain(item, f"{where}[{i}]")
        return value

    def choices(self, value: Any, where: str) -> list[str | int | float]:
        """A list of gene choices: path names, head counts or finite MLP ratios."""
        out: list[str | int | float] = []
        for i, choice in enumerate(self.items(value, where, non_empty=False)):
            kept = isinstance(choice, (str, int)) and not isinstance(choice, bool)
            out.append(choice if kept else self.number(choice, f"{where}[{i}]"))
        return out

    # --- the parts of a search result ----------------------------------------------------
    def report(self, data: dict[str, Any]) -> SearchReport:
        optional = ("provenance", "unseen", "format", "schema", "legend")
        required = tuple(f.name for f in fields(SearchReport) if f.name not in optional)
        data = self.mapping(data, "", required, optional)
        tasks = self.strings(data["tasks"], "tasks")
        targets = data["score_targets"]
        if not isinstance(targets, dict) or not set(targets) <= set(tasks):
            raise self.expect("score_targets", targets, f"a mapping of {', '.join(tasks)}")
        budgets = self.mapping(data["budgets"], "budgets")
        settings = self.plain(self.mapping(data["settings"], "settings"), "settings")
        self.boolean(settings.get("search_unseen", False), "settings.search_unseen")
        fronts = [
            self.front(f, f"fronts[{i}]", tasks)
            for i, f in enumerate(self.items(data["fronts"], "fronts"))
        ]
        devices = [f.device for f in fronts]
        if len(set(devices)) != len(devices):
            raise self.expect("fronts", devices, "one front per device")
        return SearchReport(
            space=self.string(data["space"], "space"),
            space_fingerprint=self.string(data["space_fingerprint"], "space_fingerprint"),
            tasks=tasks,
            objectives=self.strings(data["objectives"], "objectives", non_empty=False),
            score_targets={t: self.string(v, f"score_targets.{t}") for t, v in targets.items()},
            risk=self.number(data["risk"], "risk", 0.0),
            budgets={
                k: None if v is None else self.number(v, f"budgets.{k}", 0.0)
                for k, v in budgets.items()
            },
            settings=settings,
            fronts=fronts,
            provenance=self.plain(
                self.mapping(data.get("provenance", {}), "provenance"), "provenance"
            ),
            unseen=[
                self.unseen(u, f"unseen[{i}]", tasks)
                for i, u in enumerate(self.items(data.get("unseen", []), "unseen", False))
            ],
        )

    def front(self, data: Any, where: str, tasks: list[str]) -> DeviceFront:
        keys = tuple(f.name for f in fields(DeviceFront) if f.name != "verification")
        data = self.mapping(data, where, keys, ("verification",))
        verification = data.get("verification")
        return DeviceFront(
            device=self.string(data["device"], f"{where}.device"),
            latency_measured=self.boolean(data["latency_measured"], f"{where}.latency_measured"),
            latency_source=self.string(data["latency_source"], f"{where}.latency_source"),
            rows=[
                self.row(r, f"{where}.rows[{i}]", tasks, verification is not None)
                for i, r in enumerate(self.items(data["rows"], f"{where}.rows"))
            ],
            evaluations=self.count(data["evaluations"], f"{where}.evaluations"),
            generations=self.count(data["generations"], f"{where}.generations"),
            seconds=self.number(data["seconds"], f"{where}.seconds", 0.0),
            hypervolume=[
                self.number(h, f"{where}.hypervolume[{i}]")
                for i, h in enumerate(
                    self.items(data["hypervolume"], f"{where}.hypervolume", False)
                )
            ],
            verification=None
            if verification is None
            else self.plain(
                self.mapping(verification, f"{where}.verification"), f"{where}.verification"
            ),
        )

    def row(self, data: Any, where: str, tasks: list[str], verified: bool) -> ParetoRow:
        """A row; of a verified front (one with `verification`), with its measured figures."""
        keys = tuple(f.name for f in fields(ParetoRow) if f.name not in VERIFIED_KEYS)
        data = self.mapping(data, where, keys + VERIFIED_KEYS if verified else keys)
        arch = self.string(data["arch"], f"{where}.arch")
        try:
            paths = Arch.parse(arch).tasks
        except ArchError as exc:
            raise self.fail(f"{where}.arch", f"is no arch: {exc}") from None
        missing = [t for t in tasks if t not in paths]  # it may hold other tasks' paths too
        if missing:
            raise self.fail(f"{where}.arch", f"holds no paths of {', '.join(missing)}")
        return ParetoRow(
            arch=arch,
            score=self.per_task(data["score"], f"{where}.score", tasks, -math.inf),
            score_std=self.per_task(data["score_std"], f"{where}.score_std", tasks, 0.0),
            latency_ms=self.number(data["latency_ms"], f"{where}.latency_ms", 0.0),
            params=self.count(data["params"], f"{where}.params"),
            macs=self.count(data["macs"], f"{where}.macs"),
            **(self.measured(data, where) if verified else {}),
        )

    def measured(self, data: dict[str, Any], where: str) -> dict[str, Any]:
        """A verified row's measured ms (> 0), its error in % and its on-front flag."""
        ms = self.number(data["measured_ms"], f"{where}.measured_ms", 0.0)
        if ms == 0:
            raise self.expect(f"{where}.measured_ms", ms, "a time in ms > 0")
        return {
            "measured_ms": ms,
            "prediction_error_pct": self.number(
                data["prediction_error_pct"], f"{where}.prediction_error_pct", -100.0
            ),
            "on_front_measured": self.boolean(
                data["on_front_measured"], f"{where}.on_front_measured"
            ),
        }

    def unseen(self, data: Any, where: str, tasks: list[str]) -> dict[str, Any]:
        data = self.mapping(data, where, _UNSEEN_KEYS)
        gene = data["gene"]
        if not isinstance(gene, str) or not _GENE.match(gene):
            raise self.expect(f"{where}.gene", gene, "a gene name (depth, heads.3, path.face.3)")
        whose = self.strings(data["tasks"], f"{where}.tasks")
        if not set(whose) <= set(tasks):
            raise self.expect(f"{where}.tasks", whose, f"some of {', '.join(tasks)}")
        return {
            "gene": gene,
            "tasks": whose,
            "observed": self.choices(data["observed"], f"{where}.observed"),
            "unseen": self.choices(data["unseen"], f"{where}.unseen"),
        }
