"""Training checkpoints: one folder per (stage, step), written whole or not at all.

    <out>/checkpoints/task-0000200/
        supernet.safetensors   a ufo-nas supernet checkpoint (`ufo eval` reads it)
        train.safetensors      the task heads and the optimiser's tensors
        state.json             stage, step, recipe and space fingerprints, the optimiser's
                               other state, the LR scheduler, the loss scaler, the batch
                               positions and how random numbers are drawn

The folder is written under a temporary name and renamed into place, so a kill leaves the
previous checkpoint intact; the last `KEEP` are kept.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ufo_nas.checkpoint import load_supernet, save_supernet
from ufo_nas.errors import CheckpointError
from ufo_nas.fileio import remove_stale_temporaries, temporary_name
from ufo_nas.supernet import SuperViT

SCHEMA = 1
KEEP = 2
STAGE_ORDER = ("task", "chip")


@dataclass(frozen=True)
class TrainState:
    stage: str
    step: int  # steps of `stage` done
    recipe_fingerprint: str
    space_fingerprint: str
    optimizer: dict[str, Any]  # the optimiser state without its tensors
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    batches: dict[str, dict[str, int]]  # task -> {epoch, batch} of the next batch
    random: str  # how the step's random numbers are drawn (nothing else to save)


def checkpoint_name(stage: str, step: int) -> str:
    return f"{stage}-{step:07d}"


def _order(path: Path) -> tuple[int, int]:
    stage, _, step = path.name.partition("-")
    return STAGE_ORDER.index(stage), int(step)


def _is_checkpoint(path: Path) -> bool:
    stage, _, step = path.name.partition("-")
    return path.is_dir() and stage in STAGE_ORDER and step.isdigit()


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint under `folder`/checkpoints, if any."""
    root = folder / "checkpoints"
    found = sorted((p for p in root.glob("*-*") if _is_checkpoint(p)), key=_order)
    return found[-1] if found else None


def split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser state dict -> (its tensors by flat key, the rest as JSON-able data)."""
    tensors, rest = {}, {"param_groups": state["param_groups"], "state": {}}
    for index, entries in state["state"].items():
        rest["state"][str(index)] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                rest["state"][str(index)][key] = value
    return tensors, rest


def join_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in rest["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(
    out: Path,
    supernet: SuperViT,
    heads: torch.nn.Module,
    optimizer_state: dict[str, Any],
    state: TrainState,
) -> Path:
    """Write the checkpoint of `state` atomically; drop all but the newest KEEP."""
    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root)
    final = root / checkpoint_name(state.stage, state.step)
    tmp = root / temporary_name(f".{final.name}")
    tmp.mkdir()
    try:
        save_supernet(supernet, tmp / "supernet.safetensors")
        tensors, rest = split_optimizer(optimizer_state)
        tensors.update(
            {f"heads.{k}": v.detach().contiguous().cpu() for k, v in heads.state_dict().items()}
        )
        save_file(tensors, str(tmp / "train.safetensors"))
        record = {"schema": SCHEMA, **state.__dict__, "optimizer": rest}
        (tmp / "state.json").write_text(json.dumps(record, indent=1) + "\n")
        if final.exists():  # a rerun of the same step after a resume
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in sorted((p for p in root.iterdir() if _is_checkpoint(p)), key=_order)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(
    path: Path, supernet: SuperViT, heads: torch.nn.Module
) -> tuple[TrainState, dict[str, Any]]:
    """Load weights into `supernet` and `heads`; returns the state and the optimiser's
    state dict. Raises CheckpointError naming the file."""
    try:
        record = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path / 'state.json'}: not a readable training state ({exc})"
        ) from None
    fields = set(TrainState.__dataclass_fields__)
    if not isinstance(record, dict) or record.get("schema") != SCHEMA or not fields <= set(record):
        raise CheckpointError(
            f"{path / 'state.json'}: not a ufo-nas training state of schema {SCHEMA}"
        )
    loaded = load_supernet(path / "supernet.safetensors", supernet.spec)
    supernet.load_state_dict(loaded.state_dict())
    try:
        tensors = load_file(str(path / "train.safetensors"))
        heads.load_state_dict(
            {k.removeprefix("heads."): v for k, v in tensors.items() if k.startswith("heads.")}
        )
    except (SafetensorError, OSError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path / 'train.safetensors'}: {first}") from None
    state = TrainState(**{k: record[k] for k in fields})
    return state, join_optimizer(tensors, record["optimizer"])
