"""The reference backend: the PyTorch module itself, eager, under `torch.inference_mode()`."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ufo_nas.backends.base import Backend, BackendError, Runner, Target

SUPPORTED = {"cpu": ("fp32",), "cuda": ("fp32", "fp16")}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


class TorchBackend(Backend):
    """Eager PyTorch: fp32 on cpu, fp32/fp16 on cuda."""

    name = "torch"
    needs_onnx = False

    def __init__(self, target: Target):
        super().__init__(target)
        if target.device not in SUPPORTED:
            raise BackendError(
                f"torch backend: unknown device '{target.device}'; allowed: {', '.join(SUPPORTED)}"
            )
        if target.precision not in SUPPORTED[target.device]:
            supported = "; ".join(f"{d}: {'/'.join(p)}" for d, p in SUPPORTED.items())
            raise BackendError(
                f"torch backend cannot run {target.precision} on {target.device}; "
                f"it supports {supported}"
            )
        if target.device == "cuda" and not torch.cuda.is_available():
            raise BackendError("torch backend: device cuda asked for but no CUDA GPU is visible")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @classmethod
    def versions(cls) -> dict[str, str]:
        found = {"torch": str(torch.__version__)}
        if torch.version.cuda:
            found["cuda"] = torch.version.cuda
        return found

    def compile(self, module: torch.nn.Module, onnx_path: Path | None, work_dir: Path) -> Runner:
        device = torch.device(self.target.device)
        dtype = DTYPES[self.target.precision]
        threads = self.target.threads
        model = copy.deepcopy(module).eval().to(device=device, dtype=dtype)
        cuda = device.type == "cuda"

        def run(images: np.ndarray) -> list[np.ndarray]:
            with _torch_threads(threads), torch.inference_mode():
                outputs = model(torch.from_numpy(images).to(device=device, dtype=dtype))
                if cuda:
                    torch.cuda.synchronize(device)
            outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
            return [out.float().cpu().numpy() for out in outputs]

        return run


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run with torch's global thread count at `threads` (0: as it is), then give it back.

    Giving it back matters beyond tidiness: libgomp's worker pool is not fork-safe, so a
    process left at more threads than its caller chose deadlocks in the first parallel
    torch op of a forked child (pytest-forked, mutmut, multiprocessing's fork start).
    """
    previous = torch.get_num_threads()
    if threads <= 0 or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


BACKEND = TorchBackend
