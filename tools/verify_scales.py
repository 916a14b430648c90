"""A `ufo search --verify` front scored two ways on the same times: each row by the anchor
and references of its size (as verified since 2026-12-06) and by its chunk's anchor alone
(outvoted by the references where far out of step, as before).

    python tools/verify_scales.py PARETO.json [...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ufo_nas.latency.measure import matched_anchor_ms
from ufo_nas.latency.table import ReferenceSubnet


def scores(path: Path) -> list[str]:
    """One line per scale: rows, mean |error|, within 5%, max, median signed error."""
    front = json.loads(path.read_text())["fronts"][0]
    timed, rows = front["verification"], front["rows"]
    chunk, unit = timed["chunk"], timed["reference_anchor_ms"]
    refs = [ReferenceSubnet(arch, tuple(tasks), x) for arch, tasks, x in timed["references"]]
    predicted = np.array([row["latency_ms"] for row in rows])
    measured = np.array([row["measured_ms"] for row in rows])
    chunk_anchor = np.array([timed["anchor_ms"][k // chunk] for k in range(len(rows))])
    size_anchor = np.array(
        [
            matched_anchor_ms(a, refs, timed["reference_ms"][k // chunk], p / unit)
            for k, (a, p) in enumerate(zip(chunk_anchor, predicted))
        ]
    )
    lines = []
    for name, truth in (
        ("size", measured),
        ("chunk anchor", measured * size_anchor / chunk_anchor),
    ):
        error = (predicted - truth) / truth
        off = np.abs(error)
        lines.append(
            f"{path.name}, by {name}: {len(error)} rows, mean |error| {100 * off.mean():.2f}%, "
            f"within 5% {100 * (off <= 0.05).mean():.0f}%, max {100 * off.max():.1f}%, "
            f"bias {100 * np.median(error):+.2f}%"
        )
    return lines


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print("\n".join(scores(Path(name))))
