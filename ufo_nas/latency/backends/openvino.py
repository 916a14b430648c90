"""OpenVINO: read the ONNX model, compile it for CPU, GPU or NPU with explicit properties.

Precision is always set explicitly: OpenVINO's CPU default is bf16 where the CPU has it,
so an fp32 table must ask for f32. The compiled model's precision is read back, and a
device that would silently run another precision (e.g. f16 asked, bf16 given) is refused.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ufo_nas.latency.backends.base import Backend, BackendError, Runner, Target


class OpenVinoBackend(Backend):
    """OpenVINO on CPU/GPU/NPU: fp32 and fp16 (where the device has it)."""

    name = "openvino"

    def __init__(self, target: Target):
        super().__init__(target)
        if target.precision == "int8":
            raise BackendError(
                "openvino int8 needs NNCF post-training quantisation with a calibration set, "
                "which this backend does not support yet; use fp32 or fp16"
            )
        import openvino

        self.core = openvino.Core()
        self.device = target.device.upper()
        available = self.core.available_devices  # e.g. CPU, GPU.0, GPU.1, NPU
        if not any(self.device in (name, name.split(".")[0]) for name in available):
            raise BackendError(
                f"openvino has no device {self.device} here; available: {', '.join(available)}"
            )

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("openvino") is None:
            return 'openvino is not installed: pip install -e ".[openvino]"'
        return None

    @classmethod
    def versions(cls) -> dict[str, str]:
        import openvino

        return {"openvino": openvino.get_version()}

    def config(self) -> dict[str, Any]:
        """The compile properties for the target."""
        import openvino
        import openvino.properties as props
        import openvino.properties.hint as hints

        precision = {"fp32": openvino.Type.f32, "fp16": openvino.Type.f16}
        config: dict[str, Any] = {
            hints.inference_precision: precision[self.target.precision],
            hints.performance_mode: hints.PerformanceMode.LATENCY,
            props.num_streams: 1,
        }
        if self.device == "CPU" and self.target.threads > 0:  # CPU threads; GPU/NPU have none
            config[props.inference_num_threads] = self.target.threads
        return config

    def compiled_model(self, onnx_path: Path) -> Any:
        """`onnx_path` compiled for the target; refused if the device changed its precision."""
        import openvino.properties.device as device
        import openvino.properties.hint as hints

        config = self.config()
        try:
            compiled = self.core.compile_model(
                self.core.read_model(str(onnx_path)), self.device, config
            )
        except RuntimeError as exc:
            raise BackendError(
                f"openvino could not compile {onnx_path} for {self.device}: {last_line(exc)}"
            ) from None
        wanted = config[hints.inference_precision]
        got = compiled.get_property(hints.inference_precision)
        if got != wanted:
            capabilities = self.core.get_property(self.device, device.capabilities)
            raise BackendError(
                f"openvino {self.device} would run {got.get_type_name()}, not the "
                f"{wanted.get_type_name()} asked for; it supports {', '.join(capabilities)}"
            )
        return compiled

    def compile(self, module: torch.nn.Module, onnx_path: Path, work_dir: Path) -> Runner:
        compiled = self.compiled_model(onnx_path)
        request = compiled.create_infer_request()  # one request, reused for every call
        count = len(compiled.outputs)

        def run(images: np.ndarray) -> list[np.ndarray]:
            request.infer({0: images})
            return [request.get_output_tensor(i).data.copy() for i in range(count)]

        return run


def last_line(exc: Exception) -> str:
    """The message of an OpenVINO error, without its 'Exception from src/...' trail."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


BACKEND = OpenVinoBackend
