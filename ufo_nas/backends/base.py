"""The interface every inference backend implements: compile a model for a target, run it.

Backends only compile and run; timing (interleaved rounds, percentiles, steal time) is
shared code in `ufo_nas.latency.timing`, so every backend is measured the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ufo_nas.errors import UfoError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# Random inputs a profiled model is quantised on where int8 calibrates (tables): which ops a
# quantiser turns int8, and so the engine's speed, follows from the graph, not the ranges.
PROFILING_SAMPLES = 2

Runner = Callable[[np.ndarray], list[np.ndarray]]
"""A compiled model: images (B, C, H, W) float32 -> outputs; returns only when done."""


@dataclass
class Exported:
    """A deployable artefact: its files, a runner loaded from them, and a note on how it
    runs here when that differs from its target (empty otherwise)."""

    files: list[Path]
    runner: Runner
    note: str = ""


class BackendError(UfoError):
    """A backend is missing, cannot serve a target, or failed to compile a model."""


@dataclass(frozen=True)
class Target:
    """Where and how a model runs: device, precision, threads; backend options come from
    the hardware profile (e.g. a TVM target dict, tuning trials, an RPC tracker)."""

    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 0  # 0: the backend's default
    options: Mapping[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """One inference runtime. Subclasses set `name` and implement the three methods."""

    name: ClassVar[str]
    needs_onnx: ClassVar[bool] = True  # whether compile() reads the exported ONNX file
    export_precisions: ClassVar[tuple[str, ...]] = ()  # what export() writes (any device)
    int8_needs_images: ClassVar[bool] = False  # int8 export quantises on calibration images

    def __init__(self, target: Target):
        reason = self.unavailable_reason()
        if reason:
            raise BackendError(f"backend '{self.name}' is not usable here: {reason}")
        if target.precision not in PRECISIONS:
            raise BackendError(
                f"unknown precision '{target.precision}'; allowed: {', '.join(PRECISIONS)}"
            )
        self.target = target

    @classmethod
    @abstractmethod
    def unavailable_reason(cls) -> str | None:
        """None when usable here, else why not (missing package, no GPU, ...), one line
        naming the fix (e.g. `pip install -e ".[openvino]"`)."""

    @classmethod
    @abstractmethod
    def versions(cls) -> dict[str, str]:
        """Library versions for a table's provenance."""

    @classmethod
    def recipe(cls, target: Target, host: dict[str, Any] | None = None) -> str:
        """How the backend turns the ONNX graph into the engine it runs for `target`, where
        that is more than compiling the graph as given (a quantisation, a conversion): a
        table records it, and one timed under another recipe does not predict this
        backend's engines. "" when the graph runs as given. `host`: the fingerprint
        (`hardware.host_fingerprint`) of the CPU that builds it, where that matters; by
        default this one."""
        return ""

    def export(
        self, onnx_path: Path, out_dir: Path, calibration: np.ndarray | None = None
    ) -> Exported:
        """Write the deployable artefact of `onnx_path` for the target into `out_dir`; return
        its files and a runner loaded from those files, as a deployment would load them.
        `calibration`: images (N, C, H, W) for post-training int8 quantisation."""
        raise BackendError(f"backend '{self.name}' has no deployable artefact to export")

    @abstractmethod
    def compile(self, module: torch.nn.Module, onnx_path: Path, work_dir: Path) -> Runner:
        """Compile the model for `self.target`. ONNX backends read `onnx_path` (exported by
        the caller from `module`, one input `images`, batch fixed by the example the
        caller exports with); `work_dir` holds build artefacts worth keeping (engines,
        tuning databases)."""
