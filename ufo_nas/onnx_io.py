"""Export a SubnetViT to ONNX with its arch, space and input spec in the metadata."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx.external_data_helper import set_external_data

from ufo_nas.errors import CheckpointError, UfoError
from ufo_nas.fileio import write_atomic
from ufo_nas.graph_cache import graph_cache
from ufo_nas.supernet import SubnetViT

MIN_OPSET = 17
INPUT_NAME = "images"
EXTERNAL_BYTES = 1024  # tensors this large go in the weights' file (onnx's default)
META_PREFIX = "ufo_nas."
# The graphs backends build from (profiling's operators and subnets, and `ufo export` to a
# backend format) skip onnxscript's graph optimiser: it is half of a ViT-Base export's time
# and the backends fuse the graph themselves (ufo_vit_base, 4 subnets, p25 of 25 rounds:
# unoptimised / optimised 0.968-1.046 on ONNX Runtime, 0.979-1.014 on OpenVINO).
PROFILE_EXPORT = "torch.onnx dynamo, fixed batch, without onnxscript's optimiser"


def onnx_metadata(subnet: SubnetViT, batch: int | None = None) -> dict[str, str]:
    """The ufo-nas metadata of `subnet`'s graph; `batch`: its fixed batch (None: dynamic)."""
    spec = subnet.spec
    return {
        "arch": subnet.arch.to_string(),
        "tasks": json.dumps(list(subnet.tasks)),
        "space": json.dumps(spec.to_dict()),
        "space_name": spec.name,
        "space_fingerprint": spec.fingerprint(),
        "input": json.dumps(
            {
                "name": INPUT_NAME,
                "shape": [batch or "batch", spec.in_chans, spec.image_size, spec.image_size],
                "dtype": "float32",
            }
        ),
        "outputs": json.dumps(
            {t: [batch or "batch", spec.task(t).embed_dim] for t in subnet.tasks}
        ),
    }


def export_onnx(
    subnet: SubnetViT,
    path: str | os.PathLike,
    opset: int = 18,
    overwrite: bool = False,
) -> Path:
    """Write `subnet` as an ONNX model with a dynamic batch axis; outputs named by task."""
    if opset < MIN_OPSET:
        raise UfoError(f"ONNX opset {opset} is too old; use {MIN_OPSET} or newer")
    spec = subnet.spec
    example = torch.zeros(2, spec.in_chans, spec.image_size, spec.image_size)
    program = _onnx_program(
        subnet, example, list(subnet.tasks), opset, dynamic_batch=True, optimize=True
    )
    model = program.model_proto
    for key, value in onnx_metadata(subnet).items():
        model.metadata_props.add(key=META_PREFIX + key, value=value)
    return write_atomic(path, lambda tmp: onnx.save(model, str(tmp)), overwrite)


def export_module(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    opset: int = 18,
    output_names: list[str] | None = None,
    metadata: dict[str, str] | None = None,
    structure: dict[str, Any] | None = None,
) -> Path:
    """Write any one-input module as ONNX with the example's fixed shape, unoptimised (for
    backends to build from: see PROFILE_EXPORT), its weights in `<path>.data` beside it
    (twice as fast to write as one protobuf for a ViT-Base); the input is named `images`.
    Overwrites `path` and its weights' file (`external_data(path)`). `structure`: what
    determines the module's graph (JSON-able), where it does: then the graph is taken from
    the graph cache (`ufo_nas.graph_cache`) where it holds one, and kept there otherwise."""
    if opset < MIN_OPSET:
        raise UfoError(f"ONNX opset {opset} is too old; use {MIN_OPSET} or newer")
    cache = graph_cache() if structure is not None else None
    key = ""
    if cache:
        key = cache.key(
            {
                **(structure or {}),
                "module": type(module).__qualname__,
                "example": [list(example.shape), str(example.dtype)],
                "outputs": output_names,
                "opset": opset,
                "export": PROFILE_EXPORT,
            }
        )
    model = cache.load(key, module) if cache else None
    if model is None:
        model = _onnx_program(
            module, example, output_names, opset, dynamic_batch=False, optimize=False
        ).model_proto
        if cache:
            cache.store(key, model, module)
    path = Path(path)
    for name, value in (metadata or {}).items():
        model.metadata_props.add(key=META_PREFIX + name, value=value)

    return write_atomic(
        path, lambda tmp: save_with_weights_beside(model, tmp, external_data(path)), True
    )


def export_for_backend(
    subnet: SubnetViT, path: str | os.PathLike, batch: int, opset: int = 18
) -> Path:
    """The graph a backend builds `subnet`'s artefact from, in profiling and in `ufo export`
    alike, so a table predicts what is shipped: `export_module`'s (fixed `batch`, weights
    beside it), outputs named by task, the ufo-nas metadata."""
    spec = subnet.spec
    example = torch.zeros(batch, spec.in_chans, spec.image_size, spec.image_size)
    tasks = list(subnet.tasks)
    structure = {"arch": subnet.arch.to_string(), "space": spec.fingerprint()}
    metadata = onnx_metadata(subnet, batch)
    return export_module(subnet, example, path, opset, tasks, metadata, structure)


def save_with_weights_beside(model: onnx.ModelProto, graph: Path, weights: Path) -> None:
    """Write `model` to `graph`, its tensors of `EXTERNAL_BYTES` or more to `weights` (in the
    same folder), replacing what either held. (`onnx.save(save_as_external_data=True)`
    refuses a weights file of that name in the current folder, and appends to one beside the
    graph: the tensors are marked here.)"""
    weights.unlink(missing_ok=True)
    for tensor in model.graph.initializer:
        if tensor.HasField("raw_data") and len(tensor.raw_data) >= EXTERNAL_BYTES:
            set_external_data(tensor, weights.name)
    onnx.save(model, str(graph))


def external_data(path: str | os.PathLike) -> Path:
    """The weights' file of a model written by `export_module`."""
    path = Path(path)
    return path.with_name(f"{path.name}.data")


def _onnx_program(
    module: torch.nn.Module,
    example: torch.Tensor,
    output_names: list[str] | None,
    opset: int,
    dynamic_batch: bool,
    optimize: bool,
):
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=output_names,
                dynamic_shapes=({0: torch.export.Dim("batch")},) if dynamic_batch else None,
                optimize=optimize,
                verbose=False,
            )
    finally:
        module.train(was_training)


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ufo-nas metadata of an exported model, JSON fields decoded."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ... for a bad file
        raise CheckpointError(f"{path} is not a readable ONNX model: {exc}") from None
    props = {
        p.key.removeprefix(META_PREFIX): p.value
        for p in model.metadata_props
        if p.key.startswith(META_PREFIX)
    }
    if "arch" not in props:
        raise CheckpointError(f"{path} is an ONNX model but was not exported by ufo-nas")
    for key in ("tasks", "space", "input", "outputs"):
        props[key] = json.loads(props[key])
    return props
