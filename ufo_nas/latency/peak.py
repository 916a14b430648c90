"""The CPU's compute peak per precision: an upper bound from its ISA and clock, and what a
runtime's own GEMM kernels reach (ONNX Runtime's MLAS for fp32 MatMul and u8 x s8
MatMulInteger, the kernels its dynamic int8 runs; OpenVINO's for f32 and, where the CPU has
it, bf16). Engines are judged as a fraction of these: MACs per second over the peak.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
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


def nominal_clock_ghz() -> float | None:
    """The nominal clock from /proc/cpuinfo (a VM reports its host's), else None."""
    mhz = _cpuinfo("cpu MHz")
    return None if mhz is None else float(mhz) / 1000


CHAIN_ADDS = 32  # dependent adds per loop iteration of the clock probe
CHAIN_LOOPS = 5_000_000  # iterations per timing: 1.6e8 cycles, about 50 ms at 3 GHz
PROBE_TIMEOUT_S = 60.0  # a probe takes about a second where it runs at all
# A child process: time the add chain (machine code in argv[1]), print its best GHz
_CHAIN_PROBE = """
import ctypes, mmap, sys, time
code, loops, adds = bytes.fromhex(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
page = mmap.mmap(-1, len(code), prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(code)
address = ctypes.addressof(ctypes.c_char.from_buffer(page))
chain = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64)(address)
assert chain(3, 1) == 3 * adds
best = float("inf")
for _ in range(7):
    began = time.perf_counter()
    chain(loops, 1)
    best = min(best, time.perf_counter() - began)
print(loops * adds / best / 1e9)
"""


def add_chain_code(adds: int = CHAIN_ADDS) -> bytes:
    """x86-64 System V machine code for `f(n, step)` (n >= 1): n times, `adds` dependent
    `add rax, rsi` (each waits the one cycle the last takes; a register operand, so no
    renamer folds it away), then return rax = n * adds * step."""
    loop = b"\x48\x01\xf0" * adds + b"\x48\xff\xcf"  # add rax, rsi (x adds); dec rdi
    back = -(len(loop) + 2)  # jnz: back to the first add
    return b"\x48\x31\xc0" + loop + b"\x75" + back.to_bytes(1, "little", signed=True) + b"\xc3"


def measured_clock_ghz(cores: int | None = None) -> float | None:
    """The clock the cores run at with every one busy, in GHz: a chain of dependent adds
    (one cycle each) timed in `cores` processes at once, their median. Turbo takes a core
    above its nominal clock (a GEMM then beats a bound at the nominal one). None where the
    probe cannot run: not x86-64 Linux, or memory may not be both written and executed."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    cores = cores or len(os.sched_getaffinity(0))
    argv = [sys.executable, "-c", _CHAIN_PROBE, add_chain_code().hex(), str(CHAIN_LOOPS)]
    argv.append(str(CHAIN_ADDS))
    probes = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for _ in range(cores)
    ]
    try:
        outputs = [
            (probe.communicate(timeout=PROBE_TIMEOUT_S)[0], probe.returncode) for probe in probes
        ]
    except subprocess.TimeoutExpired:
        for probe in probes:
            probe.kill()
            probe.wait()
        return None
    if any(code != 0 for _, code in outputs):
        return None
    return float(np.median([float(out) for out, _ in outputs]))


@functools.cache
def clock() -> tuple[float, str] | None:
    """(GHz, how it was found): 'measured' under load on every core where the probe runs
    and lands within 0.4-2.5x the nominal clock, else 'nominal'; None where neither is
    known."""
    nominal, measured = nominal_clock_ghz(), measured_clock_ghz()
    if measured is not None and (nominal is None or 0.4 <= measured / nominal <= 2.5):
        return measured, "measured"
    return None if nominal is None else (nominal, "nominal")


def clock_ghz() -> float | None:
    """The clock the ISA bound counts cycles at (`clock`), else None."""
    found = clock()
    return None if found is None else found[0]


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
