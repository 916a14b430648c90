from copy import deepcopy
from dataclasses import replace

import numpy as np
import pytest

from ufo_nas.cli import main
from ufo_nas.hardware import host_id
from ufo_nas.latency.operator_set import space_operators
from ufo_nas.latency.predictor import LatencyPredictor, latency_predictor
from ufo_nas.latency.table import LatencyTable, LatencyTableError, OperatorRow
from ufo_nas.space import SearchSpace
from ufo_nas.spec import space_spec_from_dict


@pytest.fixture(scope="module")
def table(tiny) -> LatencyTable:
    """Operator times 1, 2, 3, ... ms in space order; calibration 2 * sum + 1."""
    rows = {
        op.key: OperatorRow(op.key, float(k + 1), float(k + 1), 0.0, 1.0)
        for k, op in enumerate(space_operators(tiny.spec))
    }
    return LatencyTable(
        tiny.name, tiny.spec.fingerprint(), "cpu-test", True, operators=rows,
        calibration={"model": "a*sum+b", "a": 2.0, "b": 1.0, "c": 0.0},
    )  # fmt: skip


def test_sum_counts_each_operator(tiny, table):
    predictor = LatencyPredictor(tiny, table)
    ms = {key: table.op_ms(key) for key in table.operators}
    arch = tiny.parse("d4-h2,3,4,2-m2,3,4,2-face:stms-object:ssss")
    # face alone: one stream; layer 3 mixes, layers 1 and 2 use the face path (x1)
    hidden = [tiny.spec.hidden_dim(r) for r in (2, 3, 4, 2)]
    expected = ms["stem"] + ms["head.face"]
    expected += ms["attn.h2"] + ms["attn.h3"] + ms["attn.h4"] + ms["attn.h2"]
    for layer, path in enumerate("stms"):
        expected += ms[f"ffn.m{hidden[layer]}.x{2 if path == 'm' else 1}"]
    assert predictor.sum_ms([arch], "face")[0] == pytest.approx(expected)
    assert predictor.latency_ms([arch], "face")[0] == pytest.approx(2 * expected + 1)


def test_multi_task_trunk_counts_split_streams(tiny, table):
    predictor = LatencyPredictor(tiny, table)
    arch = tiny.parse("d4-h2,2,2,2-m2,2,2,2-face:tsss-object:ssss")
    one = predictor.sum_ms([arch], "face")[0]
    both = predictor.sum_ms([arch], ("face", "object"))[0]
    # face takes its own FFN in layer 1, object the shared one: the streams split there,
    # and layers 2-4 run attention and the shared FFN once per stream
    ffn = table.op_ms(f"ffn.m{tiny.spec.hidden_dim(2.0)}.x1")
    attn = table.op_ms("attn.h2")
    assert both - one == pytest.approx(table.op_ms("head.object") + ffn + 3 * (attn + ffn))


def test_the_sum_splits_into_attention_ffn_and_stem_with_heads(tiny, table):
    predictor = LatencyPredictor(tiny, table)
    ms = {key: table.op_ms(key) for key in table.operators}
    arch = tiny.parse("d4-h2,3,4,2-m2,3,4,2-face:stms-object:ssss")
    hidden = [tiny.spec.hidden_dim(r) for r in (2, 3, 4, 2)]
    attn, ffn, fixed = predictor.sum_parts([arch], "face")[0]
    assert attn == pytest.approx(2 * ms["attn.h2"] + ms["attn.h3"] + ms["attn.h4"])
    assert ffn == pytest.approx(
        sum(ms[f"ffn.m{h}.x{2 if p == 'm' else 1}"] for h, p in zip(hidden, "stms"))
    )
    assert fixed == pytest.approx(ms["stem"] + ms["head.face"])
    archs = [tiny.sample(np.random.default_rng(k)) for k in range(20)]
    parts = predictor.sum_parts(archs, ("face", "object"))
    np.testing.assert_allclose(parts.sum(axis=1), predictor.sum_ms(archs, ("face", "object")))


def test_vectorised_matches_one_by_one(tiny, table):
    predictor = LatencyPredictor(tiny, table)
    archs = [tiny.sample(np.random.default_rng(k)) for k in range(50)]
    together = predictor.latency_ms(archs, ("face", "object"))
    alone = [predictor.latency_ms([a], ("face", "object"))[0] for a in archs]
    np.testing.assert_allclose(together, alone)
    genes = np.stack([tiny.encode(a) for a in archs])
    np.testing.assert_allclose(predictor.latency_ms(genes, ("face", "object")), together)


def test_table_of_another_space_is_refused(base, table):
    with pytest.raises(LatencyTableError, match="is for space 'ufo_vit_tiny', not 'ufo_vit_base'"):
        LatencyPredictor(base, table)


def test_a_table_without_single_stream_ffn_operators_is_refused(tiny, table):
    """A renamed `ffn.m384.x1` row (a corrupt file) is a missing operator, not a KeyError."""
    rows = {k: v for k, v in table.operators.items() if k != "ffn.m384.x1"}
    with pytest.raises(LatencyTableError, match="has no operator 'ffn.m384.x1'"):
        LatencyPredictor(tiny, replace(table, operators=rows))


def test_devices_without_a_table_get_an_estimate(base):
    predictor = latency_predictor(base, "jetson")
    assert not predictor.measured
    assert predictor.latency_ms([base.smallest()], "face")[0] > 0


def test_cli_labels_estimates(capsys):
    argv = [
        "latency",
        "--space",
        "ufo_vit_tiny",
        "--device",
        "cpu-onnxruntime,rpi4",
        "--task",
        "face",
    ]
    assert main([*argv, "--arch", "smallest", "largest"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("cpu-onnxruntime: measured table (onnxruntime")
    assert out[3].startswith("rpi4: ESTIMATE: roofline")
    smallest = "d4-h2,2,2,2-m2,2,2,2-face:ssss-object:ssss-digits:ssss"
    assert out[4].endswith("ms (estimate)  " + smallest)
    small, large = (float(line.split()[0]) for line in out[1:3])
    assert 0 < small < large
    assert (
        main(["latency", "--space", "ufo_vit_tiny", "--device", "tpu9", "--arch", "smallest"]) == 2
    )
    assert "unknown device 'tpu9'" in capsys.readouterr().err


def test_spaces_built_in_python_get_a_predictor_over_themselves(tiny):
    data = tiny.spec.to_dict()  # the YAML form
    data["name"] = "python_space"
    space = SearchSpace(space_spec_from_dict(data))
    predictor = latency_predictor(space, "jetson")
    assert predictor.space is space and not predictor.measured
    assert predictor.table.space == "python_space"
    assert predictor.latency_ms([space.smallest()], "face")[0] > 0
    same = SearchSpace(space_spec_from_dict(data))  # same content: the table is shared
    again = latency_predictor(same, "jetson")
    assert again.space is same and again.table is predictor.table
    data["tasks"]["face"]["embed_dim"] = 64  # same name, other content: its own entry
    other = SearchSpace(space_spec_from_dict(data))
    assert latency_predictor(other, "jetson").table.space_fingerprint == other.spec.fingerprint()
    assert latency_predictor(tiny, "jetson").table is not predictor.table


# --- found by mutation testing (tools/mutation.py) ------------------------------------------


COLD = "; operators and validation subnets timed cold: slower than a warm engine"
INIT = (
    "; operators and validation subnets timed on init weights: a trained model may run at "
    "another speed"
)


# The AMD host's tiny tables are all timed warm (since 2026-12-05); one whose sessions record
# no warm calls, as every session profiled before then, names itself cold.
@pytest.mark.parametrize("device, cold", [("cpu-onnxruntime", ""), ("cpu-openvino", COLD)])
def test_the_module_function_and_the_in_sample_validation(tiny, device, cold):
    from ufo_nas.latency.predictor import latency_ms

    predictor = latency_predictor(tiny, device)
    if cold:  # a copy: the predictor of the shipped table is shared
        table = deepcopy(predictor.table)
        for session in table.provenance["sessions"]:
            del session["warm_calls"]
        predictor = LatencyPredictor(tiny, table)
    archs = [tiny.smallest(), tiny.largest()]
    assert np.array_equal(
        latency_ms(archs, "face", device, tiny), predictor.latency_ms(archs, "face")
    )
    table = predictor.table
    measured, predicted = predictor.validation()
    subnets = list(dict.fromkeys((r.arch, tuple(r.tasks)) for r in table.validation))
    assert len(measured) == len(subnets) < len(table.validation)  # sessions were added
    for k in (0, -1):  # each subnet at its median over the sessions that timed it
        times = [
            table.scaled_ms(r.measured_ms, r.anchor_ms)
            for r in table.validation
            if (r.arch, tuple(r.tasks)) == subnets[k]
        ]
        assert len(times) == 3 and measured[k] == np.median(times)
        arch, tasks = subnets[k]
        assert predicted[k] == predictor.latency_ms([tiny.parse(arch)], tasks)[0]
    error = 100 * np.mean(np.abs(predicted - measured) / measured)
    assert error == pytest.approx(table.metrics["mean_abs_pct_error"], abs=1e-3)
    assert predictor.source == (
        f"measured table ({table.provenance['backend']}, {error:.1f}% mean error on "
        f"{len(subnets)} subnets, host {host_id(table.provenance['host'])}{cold}"
        f"{INIT if table.timed_on_init_weights() else ''})"
    )


def test_the_per_block_calibration_term_counts_each_subnets_blocks(tiny, table):
    cal = {"model": "a*sum+b+c*blocks", "a": 2.0, "b": 1.0, "c": 0.5}
    predictor = LatencyPredictor(tiny, replace(table, calibration=cal))
    archs = [tiny.parse("d4-h2,2,2,2-m2,2,2,2"), tiny.parse("d6-h2,2,2,2,2,2-m2,2,2,2,2,2")]
    sums = predictor.sum_ms(archs, "face")
    assert predictor.latency_ms(archs, "face").tolist() == pytest.approx(
        (2 * sums + 1 + 0.5 * np.array([4, 6])).tolist()
    )


def test_a_table_without_mixed_ffn_operators_serves_subnets_without_mixes(tiny, table):
    rows = {k: v for k, v in table.operators.items() if not k.endswith(".x2")}
    predictor = LatencyPredictor(tiny, replace(table, operators=rows))
    assert 2 not in predictor._ffn
    plain = tiny.parse("d4-h2,3,4,2-m2,3,4,2-face:stss")
    assert predictor.sum_ms([plain], "face")[0] > 0
    mixed = tiny.parse("d4-h2,3,4,2-m2,3,4,2-face:stms")
    with pytest.raises(LatencyTableError, match="^the cpu-test table has no mixed-FFN operators$"):
        predictor.sum_ms([mixed], "face")


def test_a_table_without_a_tasks_head_names_it(tiny, table):
    rows = {k: v for k, v in table.operators.items() if k != "head.object"}
    predictor = LatencyPredictor(tiny, replace(table, operators=rows))
    assert predictor.sum_ms([tiny.smallest()], "face")[0] > 0
    with pytest.raises(LatencyTableError, match="^the cpu-test table has no head for 'object'$"):
        predictor.sum_ms([tiny.smallest()], ("face", "object"))
