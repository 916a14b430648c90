"""ONNX Runtime: one InferenceSession per model, on the CPU, CUDA or TensorRT provider.

int8 on the CPU is dynamic quantisation of every weight matmul (QInt8 weights per output
channel, activations quantised at run time; per-tensor weights lost too much: cosine 0.94
against PyTorch on a ViT-Base subnet, per-channel 0.998, at the same speed); fp16 on CUDA
converts the model's weights and ops to float16 (inputs and outputs stay float32); fp16 on
TensorRT is the provider's own `trt_fp16_enable`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from ufo_nas.backends.base import Backend, BackendError, Exported, Runner, Target

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
SUPPORTED = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16"), "tensorrt": ("fp32", "fp16")}
# what `recipe` records; change the text whenever a change to the code changes the engines
INT8_RECIPE = (
    "dynamic int8: constants folded first; every MatMul/Gemm weight QInt8 per output "
    "channel, activations quantised at run time; Conv fp32"
)
# An x86 CPU without VNNI (AVX2, AVX-512 before Cascade Lake) multiplies u8 activations by
# s8 weights with vpmaddubsw, which adds each pair of products in 16 bits and saturates: on
# the AVX2 EPYC host the tiny front subnets' int8 engines came out at cosine 0.9975-0.9982
# against PyTorch (tools/results/bench_export-ufo_vit_tiny-amd-avx2.md). 7-bit weights (the
# quantiser's `reduce_range`) keep the sums in range: 0.9999 there, as fast (...-avx2-
# reduce-range.md). Decided by the CPU that builds the engine.
REDUCED_RANGE_RECIPE = "weights 7-bit (reduce_range: no VNNI, 8-bit products saturate)"
FP16_RECIPE = "fp16: weights and ops float16, inputs and outputs float32"
# How the CPU sessions' worker threads wait: spinning within a run, stopped when it returns.
# Asleep between operators (until 2026-12-05), tiny fp32 subnets ran 1.15x slower (int8 the
# same); spinning on after a run, a subnet's time over the anchor's moved 11% between chunks
# (`tools/check_ort_threads.py`).
SPINNING = {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"}
SPINNING_RECIPE = "intra-op threads spin within a run, stop when it returns"


VNNI = {"avx512_vnni", "avx_vnni"}


def int8_saturates(host: dict[str, Any]) -> bool:
    """Whether the host (a `hardware.host_fingerprint`) is an x86 CPU without VNNI, whose
    int8 kernels saturate on 8-bit weights (see `REDUCED_RANGE_RECIPE`); False where its
    fingerprint predates checking for VNNI."""
    x86 = str(host.get("machine", "")).lower() in ("x86_64", "amd64", "i386", "i686")
    checked = VNNI <= set(host.get("isa_checked", ()))
    return x86 and checked and not VNNI & set(host.get("isa", ()))


@functools.cache
def int8_saturates_here() -> bool:
    """`int8_saturates` for this CPU."""
    from ufo_nas.hardware import host_fingerprint

    return int8_saturates(host_fingerprint())


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime: cpu fp32/int8, cuda fp32/fp16, tensorrt fp32/fp16."""

    name = "onnxruntime"
    export_precisions = ("fp32", "fp16", "int8")  # per device: SUPPORTED

    def __init__(self, target: Target):
        super().__init__(target)
        device, precision = target.device, target.precision
        if device not in PROVIDERS:
            raise BackendError(
                f"onnxruntime: unknown device '{device}'; allowed: {', '.join(PROVIDERS)}"
            )
        available = ort.get_available_providers()
        if PROVIDERS[device] not in available:
            raise BackendError(
                f"onnxruntime has no {PROVIDERS[device]} for device '{device}' here "
                f"(available: {', '.join(available)}); pip install onnxruntime-gpu instead"
            )
        if precision not in SUPPORTED[device]:
            supported = "; ".join(f"{d}: {'/'.join(p)}" for d, p in SUPPORTED.items())
            raise BackendError(
                f"onnxruntime cannot run {precision} on {device}; it supports {supported}"
            )

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @classmethod
    def versions(cls) -> dict[str, str]:
        return {"onnxruntime": ort.__version__}

    @classmethod
    def recipe(cls, target: Target, host: dict[str, Any] | None = None) -> str:
        """On the CPU: `INT8_RECIPE` for int8 (and `REDUCED_RANGE_RECIPE` where the host's int8
        kernels saturate), then `SPINNING_RECIPE` (how its threads
        wait; a table without it timed sessions whose threads slept between operators,
        which ran slower). fp16 on CUDA: `FP16_RECIPE`; else as given. (ONNX Runtime int8 tables
        profiled from 2026-12-02 to 12-03, which record none, timed unquantised graphs: the
        quantiser did not yet fold constants.)"""
        if target.device == "cpu" and target.precision != "int8":
            return SPINNING_RECIPE
        if target.device == "cpu":
            saturates = int8_saturates(host) if host else int8_saturates_here()
            return "; ".join([INT8_RECIPE, *[REDUCED_RANGE_RECIPE] * saturates, SPINNING_RECIPE])
        if target.precision == "fp16" and target.device == "cuda":
            return FP16_RECIPE
        return ""

    def compile(self, module: torch.nn.Module, onnx_path: Path, work_dir: Path) -> Runner:
        """A session of the model (quantised or converted in a temporary folder: the
        session holds it; `work_dir` keeps only the TensorRT engine cache)."""
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            return session_runner(self.session(self.prepared(onnx_path, Path(tmp)), work_dir))

    def export(
        self, onnx_path: Path, out_dir: Path, calibration: np.ndarray | None = None
    ) -> Exported:
        """`model.ort.onnx` and its weights `model.ort.onnx.data`: the graph after ONNX
        Runtime's portable (extended) optimisations, int8-quantised first where asked; loaded
        back without optimising it again. It needs no other file (the input graph's weights
        may live beside the input)."""
        out_dir = Path(out_dir)
        with tempfile.TemporaryDirectory() as tmp:
            out = out_dir / "model.ort.onnx"
            self.session(self.prepared(onnx_path, Path(tmp)), out_dir, optimised_out=out)
        load = self.session(out, out_dir, level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        weights = out.with_name(f"{out.name}.data")
        return Exported([out, weights] if weights.exists() else [out], session_runner(load))

    def prepared(self, onnx_path: Path, work_dir: Path) -> Path:
        """The model to load: int8-quantised or fp16-converted into `work_dir` where asked."""
        if self.target.precision == "int8":
            return quantize_int8(onnx_path, work_dir)
        if self.target.precision == "fp16" and self.target.device == "cuda":
            return convert_fp16(onnx_path, work_dir)
        return onnx_path

    def session(
        self,
        model_path: Path,
        work_dir: Path,
        optimised_out: Path | None = None,
        level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    ) -> ort.InferenceSession:
        device, precision = self.target.device, self.target.precision
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        if optimised_out is not None:
            # ENABLE_ALL adds layout changes tied to this CPU; EXTENDED stays portable
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            write_optimised_to(options, optimised_out)
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        # Worker threads spin while a run is in progress and stop when it returns: by
        # default they spin on after it too, stealing the cores of the next session that
        # runs (interleaved timing); without spinning they sleep between operators.
        for key, value in SPINNING.items():
            options.add_session_config_entry(key, value)
        if self.target.threads > 0:
            options.intra_op_num_threads = self.target.threads
        providers: list = [PROVIDERS[device]]
        if device == "tensorrt":
            trt_options = {
                "trt_fp16_enable": precision == "fp16",
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(work_dir),
            }
            providers = [(PROVIDERS[device], trt_options), PROVIDERS["cuda"]]
        session = load_session(model_path, options, providers)
        if PROVIDERS[device] not in session.get_providers():
            raise BackendError(
                f"onnxruntime fell back to {', '.join(session.get_providers())} instead of "
                f"{PROVIDERS[device]}; check its CUDA/cuDNN/TensorRT libraries are installed"
            )
        return session


def session_runner(session: ort.InferenceSession) -> Runner:
    feed = session.get_inputs()[0].name
    names = [out.name for out in session.get_outputs()]

    def run(images: np.ndarray) -> list[np.ndarray]:
        return session.run(names, {feed: images})

    return run


def quantize_int8(onnx_path: Path, work_dir: Path) -> Path:
    """Dynamic int8 quantisation of `onnx_path`'s weight matmuls (per-channel QInt8; 7-bit
    where `int8_saturates_here`) into `work_dir`, after folding the graph's constants
    (`fold_constants`).

    The patch embedding's Conv stays fp32: ONNX Runtime's ConvInteger has no fast kernel
    (timm ViT-B/16, 2 threads, AVX-512 VNNI: 88 ms with it quantised, 68 ms without)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(fold_constants(onnx_path, work_dir)))
    # The torch exporter records value_info for initializers; the quantiser transposes
    # Gemm weights in place and its shape inference then rejects the stale entries.
    initializers = {init.name for init in model.graph.initializer}
    kept = [info for info in model.graph.value_info if info.name not in initializers]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    out = work_dir / "model_int8.onnx"
    with _quiet_preprocessing_advice():
        quantize_dynamic(
            model,
            out,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=int8_saturates_here(),
            op_types_to_quantize=["MatMul", "Gemm"],
        )
    return out


def fold_constants(onnx_path: Path, work_dir: Path) -> Path:
    """`onnx_path` after ONNX Runtime's basic (constant-folding) optimisations, in `work_dir`.

    The export feeds each Linear's weight through Transpose (and an elastic layer's through
    Slice); the quantiser only quantises a matmul whose weight is an initializer, so without
    folding it left every Linear in fp32 (a ViT-Base subnet ran as fast as fp32)."""
    folded = work_dir / "model_folded.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    write_optimised_to(options, folded)
    load_session(onnx_path, options, [PROVIDERS["cpu"]])
    return folded


def write_optimised_to(options: ort.SessionOptions, out: Path) -> None:
    """Make a session built with `options` save its optimised graph as `out`, its weights in
    `<out>.data` beside it (not references to the input's)."""
    options.optimized_model_filepath = str(out)
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", f"{out.name}.data"
    )
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
    )


def load_session(
    model_path: Path, options: ort.SessionOptions, providers: list
) -> ort.InferenceSession:
    """An InferenceSession of `model_path`; a one-line BackendError naming it if it fails."""
    try:
        return ort.InferenceSession(str(model_path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail, InvalidGraph, ... types
        first = str(exc).partition("\n")[0]
        raise BackendError(f"onnxruntime could not load {model_path}: {first}") from None


@contextlib.contextmanager
def _quiet_preprocessing_advice() -> Iterator[None]:
    """Drop the quantiser's "consider to run pre-processing" warning (one per model: a
    profile quantises hundreds); its other messages pass."""

    def keep(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def convert_fp16(onnx_path: Path, work_dir: Path) -> Path:
    """`onnx_path` with float16 weights and ops, float32 inputs and outputs, in `work_dir`."""
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        raise BackendError(
            "onnxruntime fp16 on cuda needs onnxruntime.transformers.float16, which this "
            "onnxruntime install lacks; reinstall onnxruntime-gpu"
        ) from None
    model = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    out = work_dir / "model_fp16.onnx"
    onnx.save(model, str(out))
    return out


BACKEND = OnnxRuntimeBackend
