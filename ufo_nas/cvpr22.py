"""The arch strings of the CVPR 2022 NAS competition (track 2, UFO ViT-Base).

Format (the organisers' decoding): char 0 is the depth (j/k/l = 10/11/12), then 12 groups
of 3 digits per layer: heads (1/2/3 = 12/11/10), mlp ratio (1/2/3 = 4.0/3.5/3.0), embed dim
(always 1 = 768); layers past the depth are ``000``. The competition's supernet has one
shared trunk, so every task takes the shared FFN path.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from ufo_nas.accuracy import AccuracyRecord
from ufo_nas.errors import ArchError, UfoError
from ufo_nas.space import Arch, SearchSpace

_DEPTHS = {"j": 10, "k": 11, "l": 12}
_HEADS = {"1": 12, "2": 11, "3": 10}
_RATIOS = {"1": 4.0, "2": 3.5, "3": 3.0}
_LAYERS = 12
CVPR22_LENGTH = 1 + 3 * _LAYERS


def decode_cvpr22(space: SearchSpace, text: str) -> Arch:
    """A competition arch string -> an Arch of `space` (all FFN paths shared)."""

    def bad(why: str) -> ArchError:
        return ArchError(f"competition arch string {text!r}: {why}")

    if not isinstance(text, str) or len(text) != CVPR22_LENGTH:
        raise bad(f"expected {CVPR22_LENGTH} characters")
    if text[0] not in _DEPTHS:
        raise bad(f"depth letter {text[0]!r} not one of j/k/l (10/11/12)")
    depth = _DEPTHS[text[0]]
    groups = [text[1 + 3 * i : 4 + 3 * i] for i in range(_LAYERS)]
    heads, ratios = [], []
    for i, group in enumerate(groups):
        if i >= depth:
            if group != "000":
                raise bad(f"layer {i} is past depth {depth} and must be '000', got {group!r}")
            continue
        h, r, e = group
        if h not in _HEADS or r not in _RATIOS or e != "1":
            raise bad(f"layer {i} group {group!r} must be [123][123]1")
        heads.append(_HEADS[h])
        ratios.append(_RATIOS[r])
    paths = tuple((task, ("shared",) * depth) for task in space.tasks)
    arch = Arch(depth, tuple(heads), tuple(ratios), paths)
    space.check(arch)
    return arch


def parse_arch(space: SearchSpace, text: str) -> Arch:
    """An arch of `space` as a user writes it: 'largest', 'smallest', a competition string
    (`decode_cvpr22`) or an arch string (`SearchSpace.parse`); checked against the space."""
    if text == "largest":
        return space.largest()
    if text == "smallest":
        return space.smallest()
    if len(text) == CVPR22_LENGTH and text[0] in _DEPTHS and text[1:].isdigit():
        return decode_cvpr22(space, text)
    return space.parse(text)


def encode_cvpr22(arch: Arch) -> str:
    """Inverse of `decode_cvpr22` for archs whose trunk the competition format can hold."""
    heads = {v: k for k, v in _HEADS.items()}
    ratios = {v: k for k, v in _RATIOS.items()}
    depths = {v: k for k, v in _DEPTHS.items()}
    try:
        groups = [heads[h] + ratios[float(r)] + "1" for h, r in zip(arch.num_heads, arch.mlp_ratio)]
        head = depths[arch.depth]
    except KeyError as exc:
        raise ArchError(f"arch {arch} has no competition encoding (value {exc})") from None
    return head + "".join(groups) + "000" * (_LAYERS - arch.depth)


def cvpr22_records(space: SearchSpace, path: str | os.PathLike) -> list[AccuracyRecord]:
    """The competition's ranks as accuracy-table rows (rank 0 = best, so lower is better).

    Each `<benchmark>_rank` goes to the task of `space` that lists the benchmark.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UfoError(f"cannot read competition records {path}: {exc}") from None
    task_of = {b: t.name for t in space.spec.tasks for b in t.benchmarks}
    date = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).date().isoformat()
    records = []
    for key, record in data.items():
        arch = decode_cvpr22(space, record["arch"]).to_string()
        for field, value in record.items():
            if field == "arch":
                continue
            benchmark = field.removesuffix("_rank")
            if benchmark not in task_of:
                raise UfoError(
                    f"{path}: record {key} has benchmark '{benchmark}', which no task of "
                    f"space '{space.name}' lists"
                )
            records.append(
                AccuracyRecord(
                    arch,
                    task_of[benchmark],
                    benchmark,
                    "rank",
                    float(value),
                    False,
                    f"cvpr22-track2:{path.name}",
                    date,
                )
            )
    return records
