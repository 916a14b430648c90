import pytest

from ufo_nas.hardware import load_profile
from ufo_nas.latency.operator_set import Operator
from ufo_nas.latency.predictor import LatencyPredictor
from ufo_nas.latency.roofline import operator_work, roofline_table


def test_roofline_is_labelled_and_monotone(base):
    profile = load_profile("jetson")
    table = roofline_table(base, profile)
    assert not table.measured and "roofline" in table.provenance["estimate"]
    predictor = LatencyPredictor(base, table)
    small, large = predictor.latency_ms([base.smallest(), base.largest()], "face")
    assert 0 < small < large


def test_roofline_operator_time_is_the_binding_limit(base):
    profile = load_profile("rpi4")
    table = roofline_table(base, profile)
    macs, weights, activations = operator_work(
        base.spec, Operator("ffn.m3072.x1", "ffn", hidden=3072, arity=1)
    )
    compute = 2 * macs / (profile.peak_tflops * 1e12)
    memory = 4 * (weights + activations) / (profile.memory_gbps * 1e9)
    assert table.op_ms("ffn.m3072.x1") == pytest.approx(1e3 * max(compute, memory))
