"""Inference backends behind one interface; `get_backend(name)` finds one by name."""

from __future__ import annotations

from ufo_nas.backends.base import (
    PRECISIONS,
    Backend,
    BackendError,
    Exported,
    Runner,
    Target,
)

BACKEND_MODULES = {
    "torch": "ufo_nas.backends.torch_eager",
    "onnxruntime": "ufo_nas.backends.onnxruntime",
    "openvino": "ufo_nas.backends.openvino",
    "tvm": "ufo_nas.backends.tvm",
    "tensorrt": "ufo_nas.backends.tensorrt",
}

# backends with a deployable artefact, and plain ONNX (run with ONNX Runtime when checked)
EXPORT_FORMATS = ("onnx", "onnxruntime", "openvino", "tvm", "tensorrt")


def get_backend(name: str) -> type[Backend]:
    """The Backend class of `name`; its module imports its runtime lazily."""
    import importlib

    if name not in BACKEND_MODULES:
        raise BackendError(f"unknown backend '{name}'; allowed: {', '.join(BACKEND_MODULES)}")
    module = importlib.import_module(BACKEND_MODULES[name])
    return module.BACKEND


__all__ = [
    "BACKEND_MODULES",
    "EXPORT_FORMATS",
    "PRECISIONS",
    "Backend",
    "BackendError",
    "Exported",
    "Runner",
    "Target",
    "get_backend",
]
