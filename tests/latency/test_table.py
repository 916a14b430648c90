import numpy as np
import pytest
import yaml
from conftest import put

from ufo_nas.latency.table import (
    ABSOLUTE_FORMS,
    CALIBRATION_FORMS,
    RELATIVE_FORMS,
    SCHEMA,
    LatencyTable,
    LatencyTableError,
    OperatorRow,
    Regressors,
    ValidationRow,
    calibrated_ms,
    describe_calibration,
    fit_calibration,
)


def regressors(sums: np.ndarray, blocks: np.ndarray, seed: int = 7) -> Regressors:
    """Sums and blocks with parameter counts (millions) that follow neither."""
    return Regressors(sums, blocks, np.random.default_rng(seed).uniform(0.3, 1.2, len(sums)))


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
        ("corrupt", r"t.yaml: operator row 'stem': no 'ms'; delete the row and run `ufo-profile"),
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
    x = regressors(rng.uniform(2, 10, 30), rng.integers(4, 7, 30).astype(float))
    for forms in (RELATIVE_FORMS, ABSOLUTE_FORMS):  # the families of older tables
        fit = fit_calibration(x, 1.2 * x.sum_ms + 0.5, forms)
        assert fit["model"] == forms[0]
        assert fit["a"] == pytest.approx(1.2) and fit["b"] == pytest.approx(0.5)
        assert fit["c"] == fit["d"] == 0.0
        fit = fit_calibration(x, 0.9 * x.sum_ms + 0.1 + 0.3 * x.blocks, forms)
        assert fit["model"] == forms[1] and fit["c"] == pytest.approx(0.3)
        assert fit_calibration(x.rows(slice(0, 2)), x.sum_ms[:2], forms)["model"] == "sum"
    law = 1.1 * x.sum_ms + 0.2 + 0.4 * x.mparams  # weights streamed, not in the sum
    fit = fit_calibration(x, law)
    assert fit["model"] == "a*sum+b+d*mparams relative"
    assert (fit["a"], fit["b"], fit["c"], fit["d"]) == pytest.approx((1.1, 0.2, 0.0, 0.4))
    np.testing.assert_allclose(calibrated_ms(fit, x), law)
    assert describe_calibration(fit) == "a*sum+b+d*mparams relative: a=1.1 b=0.2 d=0.4"
    plain = fit_calibration(x, 1.2 * x.sum_ms + 0.5)
    assert (plain["a"], plain["b"], plain["d"]) == pytest.approx((1.2, 0.5, 0.0), abs=1e-9)
    assert fit_calibration(x, law, RELATIVE_FORMS)["d"] == 0.0  # an older family: no term
    assert CALIBRATION_FORMS == ("a*sum+b+d*mparams relative",)
    assert RELATIVE_FORMS == ("a*sum+b relative", "a*sum+b+c*blocks relative")
    assert ABSOLUTE_FORMS == ("a*sum+b", "a*sum+b+c*blocks")


def test_the_calibration_minimises_the_relative_error():
    """Subnets from 1 to 10 ms, scattered by 5%: in ms the large ones outweigh the small;
    the relative fit has the lower mean relative error, in sample and held out."""
    rng = np.random.default_rng(3)
    sums = rng.uniform(1, 10, 400)
    measured = (1.1 * sums + 0.3) * (1 + rng.normal(0, 0.05, 400)) + 0.4 * (sums < 2)
    x = regressors(sums, np.full(400, 4.0))
    fitted, held = slice(0, 40), slice(40, None)
    errors = {}
    for forms in (RELATIVE_FORMS, ABSOLUTE_FORMS):
        cal = fit_calibration(x.rows(fitted), measured[fitted], forms[:1])
        predicted = cal["a"] * sums + cal["b"]
        errors[forms[0]] = [np.mean(np.abs(predicted[k] / measured[k] - 1)) for k in (fitted, held)]
        w = 1 / measured[fitted] if forms is RELATIVE_FORMS else np.ones(40)
        design = np.column_stack([sums[fitted], np.ones(40)])
        coef, *_ = np.linalg.lstsq(design * w[:, None], measured[fitted] * w, rcond=None)
        assert (cal["a"], cal["b"]) == pytest.approx((coef[0], coef[1]))
    relative, absolute = errors["a*sum+b relative"], errors["a*sum+b"]
    assert relative[0] < absolute[0] and relative[1] < absolute[1]


REMEASURE = "; delete the row and run `ufo-profile --device cpu-test --space ufo_vit_tiny` to"
ROW = r"validation row 0 \(d4-h2,2,2,2-m2,2,2,2-face:ssss-object:ssss\)"


@pytest.mark.parametrize(
    "change, message",
    [
        (put("validation", 0, "session", value={}), rf"{ROW}: session is \{{\}}; expected a n"),
        (
            put("validation", 0, "session", value=None),
            f"{ROW}: session is None; expected a non",
        ),
        (put("validation", 0, "tasks", value=[1]), rf"{ROW}: tasks is \[1\]; expected a list"),
        (
            put("operators", 0, "session", value=float("nan")),
            "operator row 'stem': session is nan; expected",
        ),
        (
            put("operators", 1, "copies", value=float("inf")),
            "operator row 'attn.h2': copies is inf",
        ),
        (
            put("operators", 1, "copies", value=0),
            "operator row 'attn.h2': copies is 0; expected a posi",
        ),
        (
            put("operators", 0, "spread", value=10**30),
            "operator row 'stem': spread is 10000000000",
        ),
        (
            put("operators", 0, "anchor_ms", value=0),
            "operator row 'stem': anchor_ms is 0; expected a time",
        ),
        (
            put("operators", 0, "ms", value=1e308),
            r"operator row 'stem': ms is 1e\+308; expected a time",
        ),
        (put("operators", 0, "extra", value=1), "operator row 'stem': unknown key 'extra'"),
        (put("operators", 1, "op", value="stem"), "operator row 'stem': a second row for the"),
        (put("operators", 0, value=[]), r"operator row 0 is \[\]; expected a mapping"),
        (put("operators", 0, "op", value=[]), r"operator row 0: op is \[\]; expected a name"),
        (put("operators", value=0), "operators is 0; expected a list of rows"),
        (put("calibration", value=0), "calibration is 0; expected a mapping"),
        (put("calibration", value={}), "calibration a is None; expected a number of magnitude"),
        (put("calibration", "a", value=1e308), r"calibration a is 1e\+308; expected a number"),
        (put("calibration", "model", value=[]), r"calibration model is \[\]; expected a name"),
        (
            put("calibration", "model", value="a*sum+e"),
            r"calibration model is 'a\*sum\+e'; expected one of sum, "
            r"a\*sum\+b\+d\*mparams relative, ",
        ),
        (put("calibration", "d", value=1e308), r"calibration d is 1e\+308; expected a number"),
        (
            put("metrics", value={"x": float("inf")}),
            "metrics x is inf; expected a finite number",
        ),
        (
            put("provenance", "threads", value=float("nan")),
            "provenance.threads is NaN or infin",
        ),
        (put("provenance", "host", value=1), "provenance.host: expected a mapping whose isa"),
        (put("measured", value="yes"), "measured is 'yes'; expected true or false"),
        (put("device", value=None), "device is None; expected a name"),
    ],
)
def test_every_value_of_a_table_file_is_checked(tiny, tmp_path, change, message):
    data = small_table(tiny).to_dict()
    change(data)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(LatencyTableError, match=f"^{path}: {message}") as info:
        LatencyTable.load(path, tiny)
    assert "\n" not in str(info.value)
    if message.startswith(("operator row", ROW)):
        assert REMEASURE in str(info.value)


def test_a_control_character_gets_a_one_line_error(tiny, tmp_path):
    path = small_table(tiny).save(tmp_path / "t.yaml")
    path.write_bytes(path.read_bytes().replace(b"space:", b"\x02space:", 1))
    with pytest.raises(LatencyTableError, match="control character 0x02 is not allowed") as info:
        LatencyTable.load(path, tiny)
    assert "\n" not in str(info.value)


# --- found by mutation testing (tools/mutation.py) ------------------------------------------


def full_table(tiny) -> LatencyTable:
    table = small_table(tiny)
    table.calibration = {"model": "a*sum+b", "a": 1.5, "b": 0.25, "c": 0.0}
    table.metrics = {"mean_abs_pct_error": 3.5, "validation_subnets": 1}
    table.provenance = {"backend": "torch", "host": {"cpu": "x", "isa": ["avx2"]}}
    return table


def test_a_round_trip_keeps_calibration_metrics_and_key_order(tiny, tmp_path):
    table = full_table(tiny)
    path = table.save(tmp_path / "t.yaml")
    loaded = LatencyTable.load(path, tiny)
    assert loaded.calibration == table.calibration and loaded.metrics == table.metrics
    assert loaded == table
    text = path.read_text()
    assert text.startswith("schema: 1\nspace: ufo_vit_tiny\n")  # written in its own order
    # saving again replaces the file
    table.calibration = {"model": "sum", "a": 1.0, "b": 0.0, "c": 0.0}
    table.save(path)
    assert LatencyTable.load(path).calibration["model"] == "sum"


def test_long_rows_stay_on_one_line(tiny, tmp_path):
    table = small_table(tiny)
    long = OperatorRow("ffn.m768.x2", 0.123456789012, 0.123456789012, 0.123456789012,
                       2.123456789012, session=3, copies=4)  # fmt: skip
    table.operators[long.op] = long
    lines = table.save(tmp_path / "t.yaml").read_text().splitlines()
    row = [line for line in lines if long.op in line]
    assert len(row) == 1 and len(row[0]) > 100 and row[0].endswith("session: 3, copies: 4}")


def test_an_unknown_operator_names_the_remedy(tiny):
    with pytest.raises(
        LatencyTableError,
        match="^the cpu-test table of 'ufo_vit_tiny' has no operator 'x'; re-run `ufo profile` "
        "to complete it$",
    ):
        small_table(tiny).op_ms("x")


def test_table_path(tiny):
    from ufo_nas.latency.table import table_path
    from ufo_nas.paths import project_root

    expected = project_root() / "latency_tables" / "jetson" / "ufo_vit_tiny.yaml"
    assert table_path("jetson", tiny) == expected


def test_calibration_needs_two_more_rows_than_coefficients():
    rng = np.random.default_rng(1)
    x = regressors(rng.uniform(2, 10, 6), rng.integers(4, 7, 6).astype(float))
    measured = 1.2 * x.sum_ms + 0.5 + 0.3 * x.blocks
    assert fit_calibration(x.rows(slice(0, 3)), measured[:3]) == {
        "model": "sum",
        "a": 1.0,
        "b": 0.0,
        "c": 0.0,
        "d": 0.0,
    }
    four = fit_calibration(x.rows(slice(0, 4)), measured[:4], RELATIVE_FORMS)
    assert four["model"] == "a*sum+b relative" and four["c"] == 0.0  # blocks need a fifth row
    five = fit_calibration(x.rows(slice(0, 5)), measured[:5], RELATIVE_FORMS)
    assert five["model"] == "a*sum+b+c*blocks relative"
    assert fit_calibration(x.rows(slice(0, 4)), measured[:4])["model"] == "sum"
    assert fit_calibration(x.rows(slice(0, 5)), measured[:5])["model"] == CALIBRATION_FORMS[0]


def test_calibration_picks_by_leave_one_out_relative_error():
    """A per-block term that only fits the noise loses in cross-validation."""
    for seed in (16, 21):  # data sets where other error measures would pick the c term
        rng = np.random.default_rng(seed)
        x = regressors(rng.uniform(2, 10, 12), rng.integers(4, 7, 12).astype(float), seed)
        measured = (1.2 * x.sum_ms + 0.5) * (1 + rng.normal(0, 0.05, 12))
        fit = fit_calibration(x, measured, RELATIVE_FORMS)
        assert fit["model"] == "a*sum+b relative" and fit["c"] == fit["d"] == 0.0
        design = np.column_stack([x.sum_ms, np.ones(12)]) / measured[:, None]
        coef, *_ = np.linalg.lstsq(design, np.ones(12), rcond=None)
        assert (fit["a"], fit["b"]) == pytest.approx((coef[0], coef[1]))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("device"), "no 'device'"),
        (put("device", value=""), "device is ''; expected a name"),
        (put("space", value="a\nb"), r"space is 'a\\nb'; expected a name"),
        (
            put("calibration", value={"a": 1.0, "b": 0.0, "c": 0.0, "zz": 1, "yy": 2}),
            "calibration: unknown key 'yy'$",
        ),
        (
            put("operators", 0, "spread", value=-1),
            "operator row 'stem': spread is -1; expected a non-negative number; delete the row",
        ),
        (put("validation", value=[5]), "validation row 0 is 5; expected a mapping; delete"),
        (
            lambda d: d["validation"][0].pop("arch"),
            "validation row 0: no 'arch'; delete the row",
        ),
        (
            put("provenance", "host", value={"isa": "avx2"}),
            "provenance.host: expected a mapping whose isa and isa_checked are lists of flags$",
        ),
        (
            put("provenance", "host", value={"isa_checked": [1]}),
            "provenance.host: expected a mapping whose isa",
        ),
    ],
)
def test_more_values_of_a_table_file_are_checked(tiny, tmp_path, change, message):
    data = full_table(tiny).to_dict()
    change(data)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(LatencyTableError, match=f"^{path}: {message}"):
        LatencyTable.load(path, tiny)


def test_empty_sections_and_values_at_the_limits_load(tiny, tmp_path):
    data = full_table(tiny).to_dict()
    data["provenance"] = {"host": {"cpu": "x"}}  # a host without flag lists
    data["metrics"] = None
    data["validation"] = None
    data["calibration"]["a"] = 1e7  # the largest magnitude allowed
    data["operators"][0]["ms"] = 1e7
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    table = LatencyTable.load(path, tiny)
    assert table.metrics == {} and table.validation == [] and table.calibration["a"] == 1e7
    assert table.operators["stem"].ms == 1e7
    data["provenance"] = None
    path.write_text(yaml.safe_dump(data))
    assert LatencyTable.load(path, tiny).provenance == {}
