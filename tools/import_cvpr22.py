"""Import the CVPR'22 UFO ViT-Base ranks into ufo_vit_base's accuracy table.

    python tools/import_cvpr22.py [--data ../shared/datasets/cvpr22_ufo_vit_base/train_400.json]

Appends only rows the table does not hold yet, so rerunning it changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ufo_nas import load_space
from ufo_nas.accuracy import AccuracyTable, accuracy_table_path
from ufo_nas.cvpr22 import cvpr22_records

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "datasets" / "cvpr22_ufo_vit_base" / "train_400.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT), help="the competition's JSON records")
    args = parser.parse_args()
    space = load_space("ufo_vit_base")
    table = AccuracyTable(accuracy_table_path(space), space)
    held = {(r.arch, r.task, r.benchmark) for r in table.records}
    new = [r for r in cvpr22_records(space, args.data) if (r.arch, r.task, r.benchmark) not in held]
    table.append(new)
    print(f"{table.path}: {len(new)} rows added, {len(table.records)} in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
