import numpy as np
import pytest
import yaml

from ufo_nas.latency.table import (
    SCHEMA,
    LatencyTable,
    LatencyTableError,
    OperatorRow,
    ValidationRow,
    fit_calibration,
)


def small_table(tiny) -> LatencyTable:
    return LatencyTable(
        space=tiny.name,
        space_fingerprint=tiny.spec.fingerprint(),
        device="cpu-test",
        measured=True,
        provenance={"backend": "torch"},
        operators={
            "stem": OperatorRow("stem", 0.1, 0.12, 0.2, anchor_ms=2.0),
            "attn.h2": OperatorRow("attn.h2", 0.3, 0.35, 0.1, anchor_ms=4.0, session=1, copies=4),
        },
        validation=[
            ValidationRow("d4-h2,2,2,2-m2,2,2,2-face:ssss-object:ssss", ["face"], 3.0, 2.0)
        ],
    )


def test_round_trip_and_anchor_scaling(tiny, tmp_path):
    table = small_table(tiny)
    path = table.save(tmp_path / "t.yaml")
    loaded = LatencyTable.load(path, tiny)
    assert loaded == table
    assert loaded.reference_anchor_ms == 2.0  # the first session's median anchor
    assert loaded.op_ms("stem") == pytest.approx(0.1)
    assert loaded.op_ms("attn.h2") == pytest.approx(0.15)  # its chunk ran 2x slower
    with pytest.raises(LatencyTableError, match="no operator 'ffn.m384.x1'"):
        loaded.op_ms("ffn.m384.x1")
    text = path.read_text()  # diff-friendly: one row per line
    assert "- {op: attn.h2, ms: 0.3," in text


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not: [yaml", "is not a readable latency table"),
        ("name: jetson\n", "is not a ufo-nas latency table"),
        (None, "has table schema 0; this ufo-nas reads schema 1"),
        ("space", "was built for space 'other'"),
        ("corrupt", "is a corrupt latency table"),
    ],
)
def test_bad_tables_are_refused(tiny, tmp_path, content, message):
    path = tmp_path / "t.yaml"
    data = small_table(tiny).to_dict()
    if content is None:
        data["schema"] = 0
    elif content == "space":
        data["space"], data["space_fingerprint"] = "other", "0123456789abcdef"
    elif content == "corrupt":
        del data["operators"][0]["ms"]
    if isinstance(content, str) and content not in ("space", "corrupt"):
        path.write_text(content)
    else:
        path.write_text(yaml.safe_dump(data))
    with pytest.raises(LatencyTableError, match=message):
        LatencyTable.load(path, tiny)
    assert SCHEMA == 1


def test_missing_table(tiny, tmp_path):
    with pytest.raises(LatencyTableError, match="no latency table at"):
        LatencyTable.load(tmp_path / "none.yaml", tiny)


def test_calibration_recovers_a_linear_law():
    rng = np.random.default_rng(0)
    sums = rng.uniform(2, 10, 30)
    blocks = rng.integers(4, 7, 30).astype(float)
    fit = fit_calibration(sums, blocks, 1.2 * sums + 0.5)
    assert fit["model"] == "a*sum+b"
    assert fit["a"] == pytest.approx(1.2) and fit["b"] == pytest.approx(0.5)
    fit = fit_calibration(sums, blocks, 0.9 * sums + 0.1 + 0.3 * blocks)
    assert fit["model"] == "a*sum+b+c*blocks" and fit["c"] == pytest.approx(0.3)
    assert fit_calibration(sums[:2], blocks[:2], sums[:2])["model"] == "sum"
