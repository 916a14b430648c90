"""A search's result: per device, the Pareto set with each subnet's figures, plus what was
searched and how. Saved as `pareto.json` (everything) and `pareto.csv` (one row per subnet
and device); read back by `ufo plot` and `ufo export`."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ufo_nas.errors import UfoError
from ufo_nas.fileio import write_atomic
from ufo_nas.formats import VersionedFormat

FORMAT, SCHEMA = "ufo-nas-search", 1
JSON_NAME, CSV_NAME = "pareto.json", "pareto.csv"
REPORT_FORMAT = VersionedFormat(
    "search result", SCHEMA, UfoError, format=FORMAT, remedy="run ufo-search to write one"
)


@dataclass(frozen=True)
class ParetoRow:
    """One Pareto-optimal subnet: its arch string and predicted figures."""

    arch: str
    score: dict[str, float]
    score_std: dict[str, float]
    latency_ms: float
    params: int
    macs: int


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

    @property
    def latency_label(self) -> str:
        return "latency (ms)" if self.latency_measured else "latency (ms, ESTIMATE)"


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

    def front(self, device: str) -> DeviceFront:
        for front in self.fronts:
            if front.device == device:
                return front
        devices = ", ".join(f.device for f in self.fronts)
        raise UfoError(f"the search has no device '{device}'; its devices: {devices}")

    # --- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "schema": SCHEMA, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> SearchReport:
        data = REPORT_FORMAT.check(data, source)
        try:
            fronts = [
                DeviceFront(**{**f, "rows": [ParetoRow(**r) for r in f["rows"]]})
                for f in data["fronts"]
            ]
            fields = {k: v for k, v in data.items() if k not in ("format", "schema", "fronts")}
            return cls(**fields, fronts=fronts)
        except (KeyError, TypeError) as exc:
            raise UfoError(f"{source} is a corrupt search result: {exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> SearchReport:
        """From `pareto.json` or the folder holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / JSON_NAME
        return cls.from_dict(REPORT_FORMAT.load(path), str(path))

    def csv_rows(self) -> list[dict[str, Any]]:
        rows = []
        for front in self.fronts:
            for index, row in enumerate(front.rows):
                out: dict[str, Any] = {"device": front.device, "index": index}
                for task in self.tasks:
                    out[f"score_{task}"] = f"{row.score[task]:.6g}"
                    out[f"score_std_{task}"] = f"{row.score_std[task]:.6g}"
                out["latency_ms"] = f"{row.latency_ms:.6g}"
                out["latency_measured"] = front.latency_measured
                out["params"] = row.params
                out["macs"] = row.macs
                out["arch"] = row.arch
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

        return [
            write_atomic(folder / JSON_NAME, lambda tmp: tmp.write_text(text), overwrite),
            write_atomic(folder / CSV_NAME, write_csv, overwrite),
        ]

    # --- text -----------------------------------------------------------------------------------
    def format_front(self, front: DeviceFront, limit: int | None = None) -> str:
        """A readable table of one device's Pareto set."""
        head = [f"{t} score" for t in self.tasks]
        lines = [
            "  ".join(
                [
                    f"{'#':>3}",
                    *(f"{h:>18}" for h in head),
                    f"{'latency ms':>12}",
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
                        f"{row.params / 1e6:>7.2f}M",
                        f"{row.macs / 1e9:>6.2f}G",
                        row.arch,
                    ]
                )
            )
        if limit is not None and len(front.rows) > limit:
            lines.append(f"  ... {len(front.rows) - limit} more in {CSV_NAME}")
        if mark:
            lines.append("  * latency is a roofline ESTIMATE (no measured table for this device)")
        return "\n".join(lines)


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
