"""TensorRT 10: build a serialized engine from the ONNX model, run it on a CUDA stream.

UNVERIFIED on real hardware: written against the TensorRT 10 Python API documentation
but never run (it was developed without an NVIDIA GPU or TensorRT); treat its first
tables with suspicion and compare them with the onnxruntime tensorrt provider.

fp32 and fp16 (`BuilderFlag.FP16`); int8 only from an existing calibration cache
(`Target.options["calibration_cache"]`), as calibration itself needs a data set.
The engine is fixed to one input shape, batch `Target.options["batch"]` (default 1).
The plan is kept in `work_dir/model.plan` and reused while its sidecar JSON (precision,
batch, TensorRT version, GPU, ONNX and calibration-cache sha256) matches. tensorrt is
imported lazily, so this module imports without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ufo_nas.backends.base import Backend, BackendError, Exported, Runner, Target
from ufo_nas.fileio import sha256_file

WORKSPACE_MIB = 1024


class TensorRtBackend(Backend):
    """TensorRT on device cuda: fp32, fp16, int8 from a calibration cache."""

    name = "tensorrt"
    export_precisions = ("fp32", "fp16", "int8")  # int8 from options.calibration_cache

    def __init__(self, target: Target):
        super().__init__(target)
        if target.device != "cuda":
            raise BackendError(f"tensorrt runs on device cuda only, not '{target.device}'")
        if target.precision not in self.export_precisions:
            raise BackendError(
                f"tensorrt builds {'/'.join(self.export_precisions)} plans, not {target.precision}"
            )
        if target.precision == "int8":
            cache = target.options.get("calibration_cache")
            if cache is None:
                raise BackendError(
                    "tensorrt int8 needs a calibration cache: set options.calibration_cache in "
                    "the hardware profile (e.g. written by trtexec --int8 --calib=...)"
                )
            if not Path(cache).is_file():
                raise BackendError(f"tensorrt calibration cache {cache} does not exist")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return (
                "TensorRT is not installed (its wheels come from NVIDIA's index: pip install "
                "--extra-index-url https://pypi.nvidia.com tensorrt) and needs an NVIDIA GPU"
            )
        if not torch.cuda.is_available():
            return "no CUDA GPU visible"
        return None

    @classmethod
    def versions(cls) -> dict[str, str]:
        import tensorrt as trt

        return {"tensorrt": trt.__version__, "cuda": str(torch.version.cuda)}

    def compile(self, module: torch.nn.Module, onnx_path: Path, work_dir: Path) -> Runner:
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        plan_path, meta_path = work_dir / "model.plan", work_dir / "model.plan.json"
        meta = self.plan_meta(trt.__version__, onnx_path)
        if plan_path.exists() and meta_path.exists() and json.loads(meta_path.read_text()) == meta:
            plan = plan_path.read_bytes()
        else:
            plan = self.build(trt, logger, onnx_path)
            plan_path.write_bytes(plan)
            meta_path.write_text(json.dumps(meta, indent=1))
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise BackendError(f"tensorrt could not load {plan_path}; delete it to rebuild")
        return EngineRunner(trt, runtime, engine, self.batch)

    def export(
        self, onnx_path: Path, out_dir: Path, calibration: np.ndarray | None = None
    ) -> Exported:
        """`model.plan` (a serialised engine for this GPU and TensorRT version) and
        `model.plan.json` (what it was built from); int8 uses options.calibration_cache."""
        runner = self.compile(torch.nn.Identity(), onnx_path, out_dir)
        return Exported([Path(out_dir) / "model.plan", Path(out_dir) / "model.plan.json"], runner)

    @property
    def batch(self) -> int:
        return int(self.target.options.get("batch", 1))

    def plan_meta(self, version: str, onnx_path: Path) -> dict[str, Any]:
        """What a kept plan must match to be reused."""
        meta = {
            "precision": self.target.precision,
            "batch": self.batch,
            "tensorrt": version,
            "gpu": torch.cuda.get_device_name(),
            "onnx_sha256": sha256_file(onnx_path),
        }
        if self.target.precision == "int8":
            meta["calibration_sha256"] = sha256_file(self.target.options["calibration_cache"])
        return meta

    def build(self, trt: Any, logger: Any, onnx_path: Path) -> bytes:
        """A serialized engine for `onnx_path`, input shape fixed to batch `self.batch`."""
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"tensorrt could not parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        workspace = int(self.target.options.get("workspace_mib", WORKSPACE_MIB)) << 20
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
        if self.target.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)  # int8: fp16 for the layers left unquantised
        if self.target.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = cache_calibrator(trt, self.target.options["calibration_cache"])
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = (self.batch, *tuple(tensor.shape)[1:])
            profile.set_shape(tensor.name, shape, shape, shape)
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendError(f"tensorrt failed to build an engine for {onnx_path}; see its log")
        return bytes(plan)


def cache_calibrator(trt: Any, cache_path: str) -> Any:
    """An IInt8EntropyCalibrator2 that only replays an existing calibration cache."""
    path = Path(cache_path)

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> None:
            return None  # no data: TensorRT must take every scale from the cache

        def read_calibration_cache(self) -> bytes:
            return path.read_bytes()

        def write_calibration_cache(self, cache: bytes) -> None:
            return None

    return CacheCalibrator()


class EngineRunner:
    """A Runner over one execution context, I/O in torch CUDA tensors, on its own stream.

    It holds the runtime and engine too: the context is only valid while they live.
    """

    def __init__(self, trt: Any, runtime: Any, engine: Any, batch: int):
        self.runtime, self.engine = runtime, engine
        self.context = engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        (name,) = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.shape = (batch, *tuple(engine.get_tensor_shape(name))[1:])
        self.context.set_input_shape(name, self.shape)  # output shapes follow from it
        self.images = self.buffer(trt, name, self.shape)
        self.outputs = [
            self.buffer(trt, n, tuple(self.context.get_tensor_shape(n))) for n in names if n != name
        ]

    def buffer(self, trt: Any, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A CUDA tensor for I/O tensor `name`, bound to the context."""
        dtype = torch.from_numpy(np.empty(0, trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
        tensor = torch.empty(shape, dtype=dtype, device="cuda")
        self.context.set_tensor_address(name, tensor.data_ptr())
        return tensor

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        if images.shape != self.shape:
            raise BackendError(
                f"tensorrt engine was built for input {self.shape}, got {images.shape}; "
                "set options.batch to the batch you time"
            )
        with torch.cuda.stream(self.stream):
            self.images.copy_(torch.from_numpy(images))
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise BackendError("tensorrt execute_async_v3 failed; see its log")
        self.stream.synchronize()
        return [out.float().cpu().numpy() for out in self.outputs]


BACKEND = TensorRtBackend
