"""Fuzz every file loader: a corrupted real file loads as before, or as another finite
result, or raises one UfoError with a one-line message (never another exception, never
NaN or inf in the output).

The property and the mutations live in tools/fuzz_loaders.py, which runs the same check
with thousands of mutations per loader and writes tools/results/fuzz_loaders.md. Here a
few dozen per loader, derandomised so the suite is deterministic.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import fuzz_loaders  # noqa: E402
from fuzz_loaders import FAILURES, Loader  # noqa: E402

EXAMPLES = 25
KEYS = ("space", "hardware", "latency", "predictor", "accuracy", "pareto.json", "checkpoint")


class Loaders(dict):
    """The loaders by key, with a short repr (hypothesis prints the arguments of a failure)."""

    def __repr__(self) -> str:
        return f"Loaders({', '.join(self)})"


@pytest.fixture(scope="module")
def loaders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Loader]:
    workdir = tmp_path_factory.mktemp("fuzz")
    return Loaders(
        {loader.name.split()[0]: loader for loader in fuzz_loaders.build_loaders(workdir)}
    )


@pytest.mark.parametrize("key", KEYS)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(min_value=0, max_value=2**31 - 1))
def test_a_corrupted_file_loads_or_raises_one_ufo_error(
    key: str, loaders: dict[str, Loader], seed: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    loader = loaders[key]
    path = tmp_path_factory.getbasetemp() / f"fuzz-{key}-{loader.filename}"
    mutation, outcome = fuzz_loaders.run_one(loader, seed, path)
    assert outcome.kind not in FAILURES, f"{mutation.how}: {outcome}"


def test_the_seed_files_load(loaders: dict[str, Loader]) -> None:
    """Every loader reads its unmutated seed, and the mutations actually change it."""
    assert set(loaders) == set(KEYS)
    for loader in loaders.values():
        assert loader.original
        assert fuzz_loaders.mutate(loader, fuzz_loaders.random.Random(0)).data != loader.seed


# --- minimal reproductions of what the fuzzer found ---------------------------------------------
ROOT = fuzz_loaders.ROOT
TINY_TABLE = ROOT / "latency_tables" / "cpu-onnxruntime" / "ufo_vit_tiny.yaml"


def _space(path: Path) -> object:
    from ufo_nas.space import load_space

    return load_space(path)


def _profile(path: Path) -> object:
    from ufo_nas.hardware import load_profile

    return load_profile(path)


def _table(path: Path) -> object:
    from ufo_nas.latency.table import LatencyTable

    table = LatencyTable.load(path, _space(ROOT / "search_spaces" / "ufo_vit_tiny.yaml"))
    return table.reference_anchor_ms


def _report(path: Path) -> object:
    from ufo_nas.search.report import SearchReport

    report = SearchReport.load(path)
    return report, report.csv_rows(), [report.format_front(front) for front in report.fronts]


def _nul(path: Path) -> bytes:
    return path.read_bytes().replace(b"name:", b"\x00name:", 1).replace(b"schema:", b"\x00schema:")


def _yaml_set(path: Path, *keys: object, value: object) -> bytes:
    import yaml

    doc = yaml.safe_load(path.read_text())
    fuzz_loaders._get(doc, keys[:-1])[keys[-1]] = value
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _pareto(seed: bytes, *keys: object, value: object) -> bytes:
    import json

    doc = json.loads(seed)
    fuzz_loaders._get(doc, keys[:-1])[keys[-1]] = value
    return json.dumps(doc).encode()


RPI4 = ROOT / "hardware_profiles" / "rpi4.yaml"
# the failures the fuzzer found (tools/results/fuzz_loaders.md), kept as regression tests:
# (loader, file maker, the bug it was)
REPRODUCTIONS = {
    "space-yaml-NUL-multi-line-error": (
        _space,
        lambda seeds: _nul(ROOT / "search_spaces" / "ufo_vit_tiny.yaml"),
        "a YAML reader error (NUL or control character) gives a two-line SpecError",
    ),
    "profile-yaml-NUL-multi-line-error": (
        _profile,
        lambda seeds: _nul(RPI4),
        "load_profile: a YAML reader error gives a two-line SpecError",
    ),
    "profile-not-utf8-UnicodeDecodeError": (
        _profile,
        lambda seeds: RPI4.read_bytes() + b"# \xa0\n",
        "load_profile: a file that is not UTF-8 raises UnicodeDecodeError",
    ),
    "profile-backend-list-TypeError": (
        _profile,
        lambda seeds: _yaml_set(RPI4, "backend", value=["tvm"]),
        "load_profile: an unhashable backend/precision raises TypeError (unhashable type)",
    ),
    "profile-peak-nan-accepted": (
        _profile,
        lambda seeds: _yaml_set(RPI4, "peak", "tflops", value=float("nan")),
        "load_profile: peak.tflops / memory_gbps of .nan or .inf is accepted",
    ),
    "latency-table-NUL-multi-line-error": (
        _table,
        lambda seeds: _nul(TINY_TABLE),
        "formats.parse: a YAML reader error gives a two-line LatencyTableError",
    ),
    "latency-table-session-dict-TypeError": (
        _table,
        lambda seeds: _yaml_set(TINY_TABLE, "validation", 0, "session", value={}),
        "LatencyTable.load: a row field of the wrong type (session: {}) raises TypeError later",
    ),
    "pareto-score-None-TypeError": (
        _report,
        lambda seeds: _pareto(
            seeds["pareto.json"].seed, "fronts", 0, "rows", 0, "score", value=None
        ),
        "SearchReport.load does not check types: csv_rows raises TypeError",
    ),
    "pareto-latency-nan-accepted": (
        _report,
        lambda seeds: _pareto(
            seeds["pareto.json"].seed, "fronts", 0, "rows", 0, "latency_ms", value=float("nan")
        ),
        "SearchReport.load accepts NaN figures",
    ),
}


@pytest.mark.parametrize("case", list(REPRODUCTIONS))
def test_known_reproduction(case: str, loaders: dict[str, Loader], tmp_path: Path) -> None:
    from ufo_nas.errors import UfoError

    load, make, _ = REPRODUCTIONS[case]
    path = tmp_path / ("pareto.json" if case.startswith("pareto") else "file.yaml")
    path.write_bytes(make(loaders))
    try:
        result = load(path)
    except UfoError as exc:
        assert "\n" not in str(exc), repr(str(exc))
        return
    assert not fuzz_loaders._non_finite(result), result
