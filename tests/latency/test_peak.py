"""The compute peaks: the ISA bound's arithmetic, and GEMM graphs whose outputs are the
products they claim to time."""

import platform
import sys

import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from ufo_nas.latency import peak
from ufo_nas.latency.peak import gemm_input, gemm_model, macs_per_cycle, measure_gemm_peaks


@pytest.mark.parametrize(
    "isa, precision, expected",
    [
        (["avx2"], "fp32", 16),  # two 256-bit FMA pipes x 8 lanes
        (["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"], "bf16", 512),  # AMX tiles
        (["avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"], "int8", 1024),
        (["avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_bf16"], "int8", 128),  # no amx_int8
        (["avx2", "avx512f"], "fp32", 32),
        (["avx2"], "int8", 32),  # no VNNI: twice fp32
        (["avx2", "avx_vnni"], "int8", 64),
        (["avx2", "avx512f", "avx512_vnni"], "int8", 128),
        (["avx2"], "bf16", None),
        (["avx2", "avx512f", "avx512_bf16"], "bf16", 64),
        (["avx2"], "fp16", None),
    ],
)
def test_macs_per_cycle_by_isa(isa, precision, expected):
    assert macs_per_cycle(isa, precision) == expected


ZEN4 = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]


@pytest.mark.parametrize(
    "precision, expected",
    [("fp32", 16), ("int8", 64), ("bf16", 32)],  # two 256-bit pipes: AVX2's fp32 rate
)
def test_a_core_that_splits_512_bit_ops_counts_256_bit_pipes(precision, expected):
    assert macs_per_cycle(ZEN4, precision, split_512=True) == expected


@pytest.mark.parametrize(
    "vendor, family, split",
    [("AuthenticAMD", "25", True), ("AuthenticAMD", "26", False), ("GenuineIntel", "6", False)],
)
def test_splits_512_reads_the_cpu_family(tmp_path, monkeypatch, vendor, family, split):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\n")
    real = peak.Path
    monkeypatch.setattr(peak, "Path", lambda p: info if p == "/proc/cpuinfo" else real(p))
    assert peak.splits_512() is split


def test_isa_peak_is_cores_times_clock_times_macs(monkeypatch):
    monkeypatch.setattr(peak, "splits_512", lambda: False)
    monkeypatch.setattr(peak, "clock_ghz", lambda: 2.5)
    assert peak.isa_peak_gmacs(["avx2"], 2, "fp32") == pytest.approx(2 * 2.5 * 16)
    assert peak.isa_peak_gmacs(["avx2"], 2, "bf16") is None
    monkeypatch.setattr(peak, "splits_512", lambda: True)
    assert peak.isa_peak_gmacs(ZEN4, 2, "int8") == pytest.approx(2 * 2.5 * 64)
    monkeypatch.setattr(peak, "clock_ghz", lambda: None)
    assert peak.isa_peak_gmacs(["avx2"], 2, "fp32") is None


X86_LINUX = sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")


@pytest.mark.skipif(not X86_LINUX, reason="the clock probe is x86-64 Linux machine code")
def test_the_clock_probe_counts_its_adds_and_lands_near_the_nominal_clock(monkeypatch):
    monkeypatch.setattr(peak, "CHAIN_LOOPS", 1_000_000)
    measured, nominal = peak.measured_clock_ghz(1), peak.nominal_clock_ghz()
    assert measured is not None  # the probe also checks the chain returns loops * adds
    assert 0.4 * nominal <= measured <= 2.5 * nominal  # turbo: above nominal, never 2.5x


@pytest.mark.parametrize(
    "probe", ["raise SystemExit(3)", "import time; time.sleep(30)"], ids=["fails", "hangs"]
)
def test_a_clock_probe_that_fails_or_hangs_gives_no_clock(monkeypatch, probe):
    """Where the probe cannot run (no executable memory: it raises) or never ends, the
    bound falls back to the nominal clock: None here, not an error, not a wait."""
    monkeypatch.setattr(peak, "_CHAIN_PROBE", probe)
    monkeypatch.setattr(peak, "PROBE_TIMEOUT_S", 2.0)
    monkeypatch.setattr(peak.sys, "platform", "linux")
    monkeypatch.setattr(peak.platform, "machine", lambda: "x86_64")
    assert peak.measured_clock_ghz(2) is None


def test_the_add_chain_jumps_back_to_its_first_add():
    code = peak.add_chain_code(4)
    assert code[:3] == b"\x48\x31\xc0" and code[-1:] == b"\xc3"  # xor rax, rax ... ret
    assert code[3:15] == b"\x48\x01\xf0" * 4  # add rax, rsi
    back = int.from_bytes(code[-2:-1], "little", signed=True)
    assert code[-3:-2] == b"\x75" and len(code) - 1 + back == 3  # jnz lands on the first add


@pytest.mark.parametrize(
    "measured, nominal, expected",
    [
        (3.2, 2.45, (3.2, "measured")),  # turbo
        (None, 2.45, (2.45, "nominal")),  # the probe cannot run here
        (9.0, 2.45, (2.45, "nominal")),  # a probe far off the nominal clock is not believed
        (3.2, None, (3.2, "measured")),
        (None, None, None),
    ],
)
def test_the_bound_counts_cycles_at_the_measured_clock_where_believable(
    monkeypatch, measured, nominal, expected
):
    peak.clock.cache_clear()
    monkeypatch.setattr(peak, "measured_clock_ghz", lambda: measured)
    monkeypatch.setattr(peak, "nominal_clock_ghz", lambda: nominal)
    assert peak.clock() == expected
    assert peak.clock_ghz() == (None if expected is None else expected[0])
    peak.clock.cache_clear()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_gemm_graph_computes_the_product(precision):
    model = gemm_model(5, 7, 3, precision)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = gemm_input(5, 7, precision)
    weight = numpy_helper.to_array(model.graph.initializer[0])
    expected = x.astype(np.int64 if precision == "int8" else np.float64) @ weight
    np.testing.assert_allclose(session.run(None, {"images": x})[0], expected, rtol=1e-5)


def test_measured_peaks_are_per_engine_in_order(monkeypatch):
    monkeypatch.setattr(peak, "GEMM_SHAPES", ((16, 32, 64), (32, 32, 32)))
    peaks = measure_gemm_peaks([("onnxruntime", "int8"), ("onnxruntime", "fp32")], 1, rounds=3)
    assert [(p.backend, p.precision) for p in peaks] == [
        ("onnxruntime", "int8"),
        ("onnxruntime", "fp32"),
    ]
    assert all(p.gmacs > 0 and p.shape in peak.GEMM_SHAPES for p in peaks)
