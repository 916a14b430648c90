"""The compute peaks: the ISA bound's arithmetic, and GEMM graphs whose outputs are the
products they claim to time."""

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
