"""OpenVINO: read the ONNX model, compile it for CPU, GPU or NPU with explicit properties.

Precision is always set explicitly: OpenVINO's CPU default is bf16 where the CPU has it,
so an fp32 table must ask for f32. The compiled model's precision is read back, and a
device that would silently run another precision (e.g. f16 asked, bf16 given) is refused.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ufo_nas.backends.base import (
    PROFILING_SAMPLES,
    Backend,
    BackendError,
    Exported,
    Runner,
    Target,
)

INT8_RECIPE = (
    "NNCF post-training int8 (transformer preset, SmoothQuant off) after constant folding; "
    "tables quantise on random inputs of the model's shape, exports on calibration images"
)
# SmoothQuant (NNCF's default for transformers: alpha 0.95 on matmuls) moves activation
# outliers into the weights; on these ViTs it cost accuracy at no gain in speed: min cosine
# against PyTorch on held-out faces, ViT-Base face-front subnets 0.99659 / 0.99643 / 0.99594
# with it, 0.99892 / 0.99893 / 0.99849 without (P6, docs/export-log.md, 2026-12-08)
SMOOTH_QUANT_OFF = -1.0


class OpenVinoBackend(Backend):
    """OpenVINO on CPU/GPU/NPU: fp32, fp16, bf16 (where the device has it) and int8
    (NNCF)."""

    name = "openvino"
    export_precisions = ("fp32", "fp16", "bf16", "int8")
    int8_needs_images = True

    def __init__(self, target: Target):
        super().__init__(target)
        import openvino

        self.core = openvino.Core()
        self.device = target.device.upper()
        available = self.core.available_devices  # e.g. CPU, GPU.0, GPU.1, NPU
        if not any(self.device in (name, name.split(".")[0]) for name in available):
            raise BackendError(
                f"openvino has no device {self.device} here; available: {', '.join(available)}"
            )
        if target.precision == "bf16" and not self.has("BF16"):
            raise BackendError(
                f"openvino {self.device} has no bf16 compute here (it supports "
                f"{', '.join(self.capabilities())}; a CPU needs AVX-512 BF16 or AMX): use fp32 "
                "or int8"
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

    def config(self, precision: str | None = None) -> dict[str, Any]:
        """The compile properties for the target, or another precision (int8 models run
        their quantised ops in int8 and the rest in f32)."""
        import openvino
        import openvino.properties as props
        import openvino.properties.hint as hints

        f32, f16, bf16 = openvino.Type.f32, openvino.Type.f16, openvino.Type.bf16
        types = {"fp32": f32, "fp16": f16, "bf16": bf16, "int8": f32}
        config: dict[str, Any] = {
            hints.inference_precision: types[precision or self.target.precision],
            hints.performance_mode: hints.PerformanceMode.LATENCY,
            props.num_streams: 1,
        }
        if self.device == "CPU" and self.target.threads > 0:  # CPU threads; GPU/NPU have none
            config[props.inference_num_threads] = self.target.threads
        return config

    def compiled_model(self, model: Path | Any, precision: str | None = None) -> Any:
        """A model (an ONNX or IR .xml file, or a model read) compiled for the target (or
        another precision); refused if the device changed the precision."""
        import openvino.properties.hint as hints

        config = self.config(precision)
        name = model if isinstance(model, Path) else "the model"
        try:
            read = self.core.read_model(str(model)) if isinstance(model, Path) else model
            compiled = self.core.compile_model(read, self.device, config)
        except RuntimeError as exc:
            raise BackendError(
                f"openvino could not compile {name} for {self.device}: {last_line(exc)}"
            ) from None
        wanted = config[hints.inference_precision]
        got = compiled.get_property(hints.inference_precision)
        if got != wanted:
            raise BackendError(
                f"openvino {self.device} would run {got.get_type_name()}, not the "
                f"{wanted.get_type_name()} asked for; it supports {', '.join(self.capabilities())}"
            )
        return compiled

    @classmethod
    def recipe(cls, target: Target, host: dict[str, Any] | None = None) -> str:
        """`INT8_RECIPE` for int8 (on any host); other precisions compile the graph as given."""
        return INT8_RECIPE if target.precision == "int8" else ""

    def compile(self, module: torch.nn.Module, onnx_path: Path, work_dir: Path) -> Runner:
        """The compiled model; int8 is NNCF-quantised first, on `PROFILING_SAMPLES` random
        inputs of the model's shape (`ufo export` quantises on calibration images)."""
        if self.target.precision != "int8":
            return request_runner(self.compiled_model(onnx_path))
        try:
            model = self.core.read_model(str(onnx_path))
        except RuntimeError as exc:
            raise BackendError(f"openvino could not read {onnx_path}: {last_line(exc)}") from None
        shape = model.inputs[0].get_partial_shape()
        if shape.is_dynamic:
            raise BackendError(f"openvino int8 profiling needs a static input shape: {onnx_path}")
        batch, *rest = shape.to_shape()
        rng = np.random.default_rng(0)
        inputs = rng.standard_normal((PROFILING_SAMPLES * batch, *rest), dtype=np.float32)
        return request_runner(self.compiled_model(quantize_nncf(model, inputs)))

    def export(
        self, onnx_path: Path, out_dir: Path, calibration: np.ndarray | None = None
    ) -> Exported:
        """OpenVINO IR (`model.xml` + `model.bin`), its batch fixed to the target's where it
        names one: fp16 weights for fp16; for int8, NNCF post-training quantisation on the
        calibration images."""
        import openvino

        int8 = self.target.precision == "int8"
        if int8 and (calibration is None or len(calibration) == 0):
            raise BackendError("openvino int8 needs calibration images (ufo export --calibration)")
        model = self.core.read_model(str(onnx_path))
        batch = int(self.target.options.get("batch", 0))
        if batch:  # a static batch: with a dynamic one, a ufo_vit_tiny subnet ran 15% slower
            shape = model.inputs[0].get_partial_shape()
            shape[0] = batch
            model.reshape({model.inputs[0]: shape})
        if int8:
            model = quantize_nncf(model, calibration)
        xml = Path(out_dir) / "model.xml"
        fp16 = self.target.precision == "fp16"
        openvino.save_model(model, str(xml), compress_to_fp16=fp16)
        files = [xml, xml.with_suffix(".bin")]
        if fp16 and not self.has("FP16"):
            note = f"fp16 weights; {self.device} has no f16 compute, so it ran them in f32 here"
            return Exported(files, request_runner(self.compiled_model(xml, "fp32")), note)
        return Exported(files, request_runner(self.compiled_model(xml)))

    def capabilities(self) -> list[str]:
        """What the device computes in, e.g. FP32, BF16, INT8."""
        import openvino.properties.device as device

        return list(self.core.get_property(self.device, device.capabilities))

    def has(self, capability: str) -> bool:
        return capability in self.capabilities()


def request_runner(compiled: Any) -> Runner:
    request = compiled.create_infer_request()  # one request, reused for every call
    count = len(compiled.outputs)

    def run(images: np.ndarray) -> list[np.ndarray]:
        request.infer({0: images})
        return [request.get_output_tensor(i).data.copy() for i in range(count)]

    return run


def quantize_nncf(model: Any, calibration: np.ndarray) -> Any:
    """NNCF post-training int8 quantisation (transformer preset, SmoothQuant off) on
    calibration images.

    It runs in a child process (tried twice), so that a native crash in NNCF's statistics
    collection, which is rare and flaky, fails the export instead of killing the caller."""
    if importlib.util.find_spec("nncf") is None:
        raise BackendError('openvino int8 needs NNCF: pip install -e ".[openvino]"')
    import openvino

    with tempfile.TemporaryDirectory(prefix="ufo-nncf-") as folder:
        work = Path(folder)
        openvino.save_model(model, str(work / "model.xml"), compress_to_fp16=False)
        np.save(work / "calibration.npy", calibration)
        failure = ""
        for _ in range(2):  # a native crash in NNCF is flaky: one retry
            child = subprocess.run(
                _child_command(work),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                env=_child_env(),
                check=False,
            )
            if child.returncode == 0:
                out = work / "int8.xml"  # read into memory: the folder is deleted on return
                return openvino.Core().read_model(
                    out.read_bytes(), out.with_suffix(".bin").read_bytes()
                )
            failure = _failure(child.returncode, child.stderr)
    raise BackendError(
        f"OpenVINO NNCF int8 quantisation {failure} twice in a child process; "
        "export fp32 or fp16, or retry int8"
    )


def _child_command(work: Path) -> list[str]:
    """The command that quantises the model in `work` (a hook for tests)."""
    return [sys.executable, "-m", "ufo_nas.backends.openvino", str(work)]


def _child_env() -> dict[str, str]:
    """The environment with this ufo_nas on the child's path, installed or not."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def _failure(returncode: int, stderr: str) -> str:
    """How the child failed, e.g. 'crashed (signal 11, SIGSEGV)' or 'failed (exit 1: ...)'."""
    if returncode < 0:
        try:
            name = f", {signal.Signals(-returncode).name}"
        except ValueError:
            name = ""
        return f"crashed (signal {-returncode}{name})"
    detail = last_line(stderr) if stderr.strip() else "no error message"
    return f"failed (exit {returncode}: {detail})"


def _quantize_in_child(work: Path) -> None:
    """The child's side: `work/model.xml` quantised on `work/calibration.npy` to `int8.xml`."""
    import nncf
    import openvino
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )
    from openvino.passes import ConstantFolding, Manager

    model = openvino.Core().read_model(str(work / "model.xml"))
    # the export feeds each Linear's weight through Transpose (an elastic one's also through
    # Slice); NNCF quantises only a matmul whose weight is a constant, so unfolded it left
    # 40 of a ViT-Base subnet's 41 Linears in f32 (int8 ran as fast as fp32)
    folding = Manager()
    folding.register_pass(ConstantFolding())
    folding.run_passes(model)
    calibration = np.load(work / "calibration.npy")
    batch = model.inputs[0].get_partial_shape()[0]  # a static batch takes samples of its size
    size = batch.get_length() if batch.is_static else 1
    samples = [calibration[i : i + size] for i in range(0, len(calibration) - size + 1, size)]
    quantized = nncf.quantize(
        model,
        nncf.Dataset(samples),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(samples),
        advanced_parameters=AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=SMOOTH_QUANT_OFF)
        ),
    )
    openvino.save_model(quantized, str(work / "int8.xml"), compress_to_fp16=False)


def last_line(exc: Exception | str) -> str:
    """The message of an OpenVINO error (or the stderr of a failed child), without its
    'Exception from src/...' trail."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


BACKEND = OpenVinoBackend

if __name__ == "__main__":  # the child of quantize_nncf
    _quantize_in_child(Path(sys.argv[1]))
