"""The CPU's compute peak per precision: an upper bound from its ISA and clock, and what a
runtime's own GEMM kernels reach (ONNX Runtime's MLAS for fp32 MatMul and u8 x s8
MatMulInteger, the kernels its dynamic int8 runs; OpenVINO's for f32 and, where the CPU has
it, bf16). Engines are judged as a fraction of these: MACs per second over the peak.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from ufo_nas.backends import Runner, Target, get_backend
from ufo_nas.latency.timing import time_interleaved

# (M, K, N): ViT-Base's FFN GEMM for 197 tokens, and a square one
GEMM_SHAPES = ((197, 768, 3072), (1024, 1024, 1024))


def macs_per_cycle(isa: list[str], precision: str, split_512: bool = False) -> int | None:
    """MACs per cycle per core the ISA allows, assuming two full-width vector pipes (an
    upper bound), or two 256-bit ones where the core runs 512-bit ops as two halves
    (`split_512`: AMD Zen 4); None where the ISA has no instructions for the precision.
    int8 without VNNI needs two instructions per multiply-add (vpmaddubsw, vpmaddwd), so it
    counts at twice fp32. With AMX the tile unit sets the bound: 512 bf16 or 1024 int8 MACs
    per cycle per core (Intel: 1024 bf16 / 2048 int8 operations), 8x AVX-512's."""
    wide = 16 if "avx512f" in isa and not split_512 else 8 if "avx2" in isa else 4  # fp32 lanes
    fp32 = 2 * wide
    if precision == "fp32":
        return fp32
    if precision == "bf16":
        if "amx_bf16" in isa:
            return 512
        return 2 * fp32 if "avx512_bf16" in isa else None
    if precision == "int8":
        if "amx_int8" in isa:
            return 1024
        vnni = "avx512_vnni" in isa or "avx_vnni" in isa
        return 4 * fp32 if vnni else 2 * fp32
    return None


def _cpuinfo(key: str) -> str | None:
    """The first value of `key` in /proc/cpuinfo, else None."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return None
    for line in info.read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def clock_ghz() -> float | None:
    """The nominal clock from /proc/cpuinfo (a VM reports its host's), else None."""
    mhz = _cpuinfo("cpu MHz")
    return None if mhz is None else float(mhz) / 1000


def splits_512() -> bool:
    """Whether this CPU runs 512-bit vector ops as two 256-bit halves: AMD Zen 4 (family
    25, 0x19) does; Intel's AVX-512 parts and Zen 5 have full-width pipes."""
    return _cpuinfo("vendor_id") == "AuthenticAMD" and _cpuinfo("cpu family") == "25"


def isa_peak_gmacs(isa: list[str], cores: int, precision: str) -> float | None:
    """cores x clock x MACs per cycle, in GMAC/s; None where unknown."""
    per_cycle, ghz = macs_per_cycle(isa, precision, splits_512()), clock_ghz()
    return None if per_cycle is None or ghz is None else cores * ghz * per_cycle


def gemm_model(m: int, k: int, n: int, precision: str, seed: int = 0) -> onnx.ModelProto:
    """Y = X @ W, W a constant: MatMul in fp32, MatMulInteger (u8 x s8 -> i32) in int8."""
    rng = np.random.default_rng(seed)
    if precision == "int8":
        # 7-bit weights: AVX2's vpmaddubsw saturates a pair of u8 x s8 products at int16
        weight = rng.integers(-63, 64, (k, n), dtype=np.int8)
        x = helper.make_tensor_value_info("images", TensorProto.UINT8, [m, k])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])
        node = helper.make_node("MatMulInteger", ["images", "w"], ["y"])
    else:
        weight = rng.standard_normal((k, n), dtype=np.float32)
        x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [m, k])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])
        node = helper.make_node("MatMul", ["images", "w"], ["y"])
    graph = helper.make_graph([node], "gemm", [x], [y], [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def gemm_input(m: int, k: int, precision: str, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if precision == "int8":
        return rng.integers(0, 256, (m, k), dtype=np.uint8)
    return rng.standard_normal((m, k), dtype=np.float32)


@dataclass(frozen=True)
class GemmPeak:
    backend: str
    precision: str
    gmacs: float  # the best GEMM shape's MACs per second / 1e9
    shape: tuple[int, int, int]


def measure_gemm_peaks(
    engines: list[tuple[str, str]], threads: int, rounds: int = 15
) -> list[GemmPeak]:
    """For each (backend, precision), the best GMAC/s over GEMM_SHAPES, all timed
    interleaved in one run (p25 of `rounds`). A backend whose precision cannot run here
    raises its BackendError."""
    runners: dict[str, Runner] = {}
    inputs: dict[str, np.ndarray] = {}
    keys: dict[str, tuple[str, str, tuple[int, int, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend_name, precision in engines:
            # the int8 GEMM is already integer: compile it as it is, not re-quantised
            target = Target("cpu", "fp32" if precision == "int8" else precision, threads)
            backend = get_backend(backend_name)(target)
            for shape in GEMM_SHAPES:
                key = f"{backend_name}-{precision}-{'x'.join(map(str, shape))}"
                path = Path(tmp) / f"{key}.onnx"
                onnx.save(gemm_model(*shape, precision), str(path))
                runners[key] = backend.compile(torch.nn.Identity(), path, Path(tmp) / key)
                inputs[key] = gemm_input(shape[0], shape[1], precision)
                keys[key] = (backend_name, precision, shape)
        timings = time_interleaved(runners, inputs, rounds)
    best: dict[tuple[str, str], GemmPeak] = {}
    for key, (backend_name, precision, shape) in keys.items():
        gmacs = float(np.prod(shape)) / (timings[key].ms / 1e3) / 1e9
        held = best.get((backend_name, precision))
        if held is None or gmacs > held.gmacs:
            best[backend_name, precision] = GemmPeak(backend_name, precision, gmacs, shape)
    return [best[engine] for engine in engines]
