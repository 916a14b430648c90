"""Supernet and subnet checkpoints (safetensors + the space and arch as metadata).

No pickle: weights are safetensors, the space, arch and tasks are JSON in its header,
so a checkpoint is rebuilt without running any code from the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ufo_nas.errors import CheckpointError, SpecError
from ufo_nas.fileio import write_atomic
from ufo_nas.formats import VersionedFormat
from ufo_nas.paths import project_root
from ufo_nas.space import Arch, SearchSpace
from ufo_nas.spec import SpaceSpec, space_spec_from_dict
from ufo_nas.supernet import SubnetViT, SuperViT

SCHEMA = 1
META_KEY = "ufo_nas"
CHECKPOINT_FORMAT = VersionedFormat(
    "checkpoint", SCHEMA, CheckpointError, required=("space", "fingerprint")
)


def shipped_supernet(space: SearchSpace | SpaceSpec) -> Path | None:
    """The trained supernet shipped for a space (supernets/<space>.safetensors), if any."""
    path = project_root() / "supernets" / f"{space.name}.safetensors"
    return path if path.is_file() else None


def _save(module: torch.nn.Module, path: str | os.PathLike, meta: dict, overwrite: bool) -> Path:
    tensors = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    header = {META_KEY: json.dumps({"schema": SCHEMA, **meta})}
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=header), overwrite)


def _space_meta(spec: SpaceSpec) -> dict[str, Any]:
    return {"space": spec.to_dict(), "fingerprint": spec.fingerprint()}


def save_supernet(supernet: SuperViT, path: str | os.PathLike, overwrite: bool = False) -> Path:
    return _save(supernet, path, {"kind": "supernet", **_space_meta(supernet.spec)}, overwrite)


def save_subnet(subnet: SubnetViT, path: str | os.PathLike, overwrite: bool = False) -> Path:
    meta = {
        "kind": "subnet",
        **_space_meta(subnet.spec),
        "arch": subnet.arch.to_string(),
        "tasks": list(subnet.tasks),
    }
    return _save(subnet, path, meta, overwrite)


def read_metadata(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """The ufo-nas header of a checkpoint (of `kind`, if given); raises CheckpointError."""
    path = CHECKPOINT_FORMAT.file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is not a safetensors checkpoint: {exc}") from None
    if META_KEY not in header:
        raise CheckpointError(f"{path} is a safetensors file but not a ufo-nas checkpoint")
    meta = CHECKPOINT_FORMAT.parse(header[META_KEY], f"the ufo-nas header of {path}")
    meta = CHECKPOINT_FORMAT.check(meta, str(path), kind)
    if not isinstance(meta["fingerprint"], str):
        raise CheckpointError(
            f"{path}: the ufo-nas header's fingerprint is {meta['fingerprint']!r:.40}, not a string"
        )
    return meta


def _checked_spec(path: Path, meta: dict, space: SearchSpace | SpaceSpec | None) -> SpaceSpec:
    try:
        spec = space_spec_from_dict(meta["space"], source=f"{path} (stored space)")
    except SpecError as exc:
        raise CheckpointError(str(exc)) from None
    if meta["fingerprint"] != spec.fingerprint():
        raise CheckpointError(
            f"{path}: the stored space has fingerprint {spec.fingerprint()}, not the "
            f"{meta['fingerprint'][:16]!r} of the header (a corrupt checkpoint)"
        )
    if space is not None:
        want = space.spec if isinstance(space, SearchSpace) else space
        if want.fingerprint() != spec.fingerprint():
            raise CheckpointError(
                f"{path} was saved for space '{spec.name}' (fingerprint {spec.fingerprint()}), "
                f"not for '{want.name}' (fingerprint {want.fingerprint()}) from {want.source}"
            )
    return spec


def _load_weights(module: torch.nn.Module, path: Path) -> None:
    try:
        module.load_state_dict(load_file(str(path)))
    except (SafetensorError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the stored space: {first}") from None


def load_supernet(
    path: str | os.PathLike, space: SearchSpace | SpaceSpec | None = None
) -> SuperViT:
    """Rebuild a supernet; with `space`, refuse a checkpoint of any other space."""
    path = Path(path)
    spec = _checked_spec(path, read_metadata(path, "supernet"), space)
    supernet = SuperViT(spec)
    _load_weights(supernet, path)
    return supernet.eval()


def load_subnet(path: str | os.PathLike, space: SearchSpace | SpaceSpec | None = None) -> SubnetViT:
    """Rebuild an extracted subnet; with `space`, refuse one of any other space."""
    path = Path(path)
    meta = read_metadata(path, "subnet")
    spec = _checked_spec(path, meta, space)
    arch, tasks = meta.get("arch"), meta.get("tasks")
    if not (
        isinstance(arch, str)
        and isinstance(tasks, list)
        and all(isinstance(task, str) for task in tasks)
    ):
        raise CheckpointError(
            f"{path}: the ufo-nas header of a subnet needs an arch string and a list of task names"
        )
    subnet = SubnetViT(spec, Arch.parse(arch), tasks)
    _load_weights(subnet, path)
    return subnet.eval()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A plain state dict from .safetensors or a torch file (loaded with weights_only)."""
    path = CHECKPOINT_FORMAT.file(path)
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for a bad file
        raise CheckpointError(f"{path} is not a readable checkpoint: {exc}") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_timm_checkpoint(supernet: SuperViT, path: str | os.PathLike) -> list[str]:
    """Initialise the supernet's trunk from a timm ViT checkpoint file on disk.

    Returns the checkpoint keys left unused (the classifier head, for instance).
    """
    try:
        return supernet.load_timm_state_dict(read_state_dict(path))
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
