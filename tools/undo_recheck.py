"""The table a profile would have written without its end-of-run re-check: each chunk of
validation subnets that was timed again and kept its new attempt (a session's
`timed_again`) gets its first attempt's times back, and the calibration is refitted.
Scored beside the table on the same held-out times (`tools/bench_latency.py --table
DEV=OUT`), the pair shows what the re-check bought.

    python tools/undo_recheck.py TABLE.yaml --space ufo_vit_tiny --out FIRST.yaml
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ufo_nas.errors import UfoError
from ufo_nas.latency.measure import ProfileSettings, calibrate
from ufo_nas.latency.table import LatencyTable, ValidationRow
from ufo_nas.space import load_space


def undo_recheck(table: LatencyTable, chunk: int = ProfileSettings().chunk) -> int:
    """Put back the first attempt of every chunk a session timed again and replaced, in
    place (`chunk`: the subnets per chunk the table was profiled with); how many chunks."""
    undone = 0
    for session, record in enumerate(table.provenance.get("sessions") or []):
        rows = [row for row in table.validation if row.session == session]
        # a session's chunks: its operators' first, then its subnets' in timed order
        operator_chunks = len(record["steal_percent"]) - math.ceil(len(rows) / chunk)
        for again in record.get("timed_again") or []:
            if again["kept"] != "again":
                continue
            start = (again["chunk"] - operator_chunks) * chunk
            part: list[ValidationRow] = rows[start : start + chunk]
            if start < 0 or len(part) != len(again["first_ms"]):
                raise UfoError(
                    f"session {session}'s chunk {again['chunk']} does not match its rows "
                    f"(chunks of {chunk}?)"
                )
            for row, ms in zip(part, again["first_ms"], strict=True):
                row.measured_ms, row.anchor_ms = ms, again["first_anchor_ms"]
            undone += 1
    return undone


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("--space", default="ufo_vit_tiny")
    parser.add_argument("--out", type=Path, required=True, help="where the undone table goes")
    args = parser.parse_args()
    if args.out.resolve() == args.table.resolve():
        parser.error("--out must be another file: the table stays as it is")
    try:
        space = load_space(args.space)
        table = LatencyTable.load(args.table, space)
        before = dict(table.metrics)
        undone = undo_recheck(table)
    except UfoError as error:  # a missing, foreign or corrupt table: one line, nothing written
        parser.exit(2, f"undo_recheck.py: {error}\n")
    calibrate(space, table)
    table.save(args.out)
    print(f"{undone} chunk(s) put back to their first attempt -> {args.out}")
    for name, metrics in (("with the re-check", before), ("first attempts", table.metrics)):
        print(
            f"{name}: in sample {metrics['mean_abs_pct_error']:.2f}% mean, "
            f"{100 * metrics['within_5pct']:.0f}% within 5%, "
            f"{100 * metrics['within_10pct']:.0f}% within 10%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
