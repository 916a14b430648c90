"""Exported ONNX graphs kept without their weights, so a model exported again costs a copy
of its weights instead of a `torch.onnx` export.

Profiling and re-timing export the same subnets in many processes: the anchor and reference
subnets in every profiling process, `ufo export` re-timing and `ufo-search --verify`; the
validation subnets in every added session; the held-out subnets in every bench process. A
graph depends on the model's structure, not its weights, so it is kept once per structure
(the caller's key, with the versions and source the graph comes from) as a template whose
initializers carry no data, and filled from the module's state on the next export.

Where: `$UFO_NAS_CACHE/onnx-graphs` (`$UFO_NAS_CACHE` set to `off`: no cache), else
`$XDG_CACHE_HOME/ufo-nas/onnx-graphs`, else `~/.cache/ufo-nas/onnx-graphs`; the least
recently used graphs go beyond `LIMIT_BYTES`. A graph is kept only where its initializers are
exactly the module's state (names, shapes, dtypes and values), and used only where they
still match the module's names, shapes and dtypes; an unreadable one is removed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from ufo_nas.errors import UfoWarning
from ufo_nas.fileio import write_atomic

CACHE_ENV = "UFO_NAS_CACHE"
LIMIT_BYTES = 512 << 20  # about 100 ViT-Base subnet graphs (4-5 MB each), 300 tiny ones
SUFFIX = ".onnx"
DATA_FIELDS = (  # where a TensorProto may hold its values
    "raw_data",
    "float_data",
    "int32_data",
    "int64_data",
    "double_data",
    "uint64_data",
    "string_data",
)


class GraphCache:
    """Weight-free ONNX graph templates in `folder`, keyed by model structure."""

    def __init__(self, folder: str | os.PathLike, limit_bytes: int = LIMIT_BYTES):
        self.folder = Path(folder)
        self.limit_bytes = limit_bytes

    def key(self, structure: Mapping[str, object]) -> str:
        """The entry name of a model whose graph `structure` determines (JSON-able), in this
        environment (package versions and the source the graph is traced from)."""
        text = json.dumps({"structure": structure, "environment": environment()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def load(self, key: str, module: torch.nn.Module) -> onnx.ModelProto | None:
        """The kept graph of `key` with `module`'s weights in it, or None (none kept, or one
        that does not fit the module: then it is removed)."""
        path = self.folder / f"{key}{SUFFIX}"
        if not path.is_file():
            return None
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # onnx raises DecodeError, OSError, ... for a bad file
            warnings.warn(
                f"removed an unreadable cached ONNX graph {path}: {exc}", UfoWarning, stacklevel=2
            )
            path.unlink(missing_ok=True)
            return None
        state = _state(module)
        if state is None:
            return None
        if not _fits(model, state):
            path.unlink(missing_ok=True)
            return None
        for init in model.graph.initializer:
            init.raw_data = state[init.name].tobytes()
        with contextlib.suppress(OSError):
            os.utime(path)  # most recently used
        return model

    def store(self, key: str, model: onnx.ModelProto, module: torch.nn.Module) -> bool:
        """Keep `model`'s graph without its weights where its initializers are exactly
        `module`'s state; True if kept. The least recently used entries then go beyond the
        size limit."""
        state = _state(module)
        if (
            state is None
            or not _fits(model, state)
            or not all(
                np.array_equal(numpy_helper.to_array(init), state[init.name])
                for init in model.graph.initializer
            )
        ):
            return False
        template = onnx.ModelProto()
        template.CopyFrom(model)
        for init in template.graph.initializer:
            for field in DATA_FIELDS:
                init.ClearField(field)
            del init.external_data[:]
            init.data_location = onnx.TensorProto.DEFAULT
        try:
            path = write_atomic(
                self.folder / f"{key}{SUFFIX}",
                lambda tmp: tmp.write_bytes(template.SerializeToString()),
                overwrite=True,
            )
            self._prune(keep=path)
        except OSError as exc:
            warnings.warn(
                f"could not keep an exported ONNX graph in {self.folder} ({exc}); exports "
                f"run in full; {CACHE_ENV}=off turns the cache off",
                UfoWarning,
                stacklevel=2,
            )
            return False
        return True

    def _prune(self, keep: Path) -> None:
        entries = []
        for path in self.folder.glob(f"*{SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):  # another process pruned it
                entries.append((path.stat(), path))
        entries.sort(key=lambda entry: entry[0].st_mtime)
        total = sum(stat.st_size for stat, _ in entries)
        for stat, path in entries:
            if total <= self.limit_bytes:
                break
            if path != keep:
                total -= stat.st_size
                path.unlink(missing_ok=True)


def graph_cache() -> GraphCache | None:
    """The cache `$UFO_NAS_CACHE` names (None where it says `off`), else the user's."""
    setting = os.environ.get(CACHE_ENV)
    if setting is not None and setting.strip().lower() == "off":
        return None
    if setting:
        root = Path(setting)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "ufo-nas"
    return GraphCache(root / "onnx-graphs")


@functools.cache
def environment() -> dict[str, str]:
    """What an exported graph depends on besides the model's structure: the exporter's and
    timm's versions, and ufo-nas's source (any change to it starts the cache afresh)."""
    import onnxscript
    import timm

    package, digest = Path(__file__).resolve().parent, hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + path.read_bytes())
    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "timm": timm.__version__,
        "source": digest.hexdigest(),
    }


def _state(module: torch.nn.Module) -> dict[str, np.ndarray] | None:
    """The module's state as arrays; None where a tensor has no numpy dtype (bf16)."""
    try:
        return {name: t.detach().cpu().numpy() for name, t in module.state_dict().items()}
    except TypeError:
        return None


def _fits(model: onnx.ModelProto, state: Mapping[str, np.ndarray]) -> bool:
    """Whether every initializer is a state entry of the same shape and dtype, and every
    state entry an initializer."""
    inits = model.graph.initializer
    if {init.name for init in inits} != set(state):
        return False
    return all(
        tuple(init.dims) == state[init.name].shape
        and helper.tensor_dtype_to_np_dtype(init.data_type) == state[init.name].dtype
        for init in inits
    )
