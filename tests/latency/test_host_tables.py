"""A CPU device holds tables for several hosts: prediction reads the one measured on this
host, and `ufo profile` builds, resumes or moves the one for this host, leaving the others
as they are."""

import warnings

import pytest
import yaml

from ufo_nas.cli import main
from ufo_nas.errors import UfoWarning
from ufo_nas.hardware import host_id
from ufo_nas.latency import predictor as predictor_module
from ufo_nas.latency.measure import calibrate
from ufo_nas.latency.predictor import latency_predictor, table_for_this_host
from ufo_nas.latency.table import LatencyTable, LatencyTableError
from ufo_nas.paths import project_root

# a shipped table of the engines ONNX Runtime builds now (the reference one's threads slept)
SHIPPED = (
    project_root() / "latency_tables/cpu-onnxruntime/hosts/intel-xeon-84ea994f/ufo_vit_tiny.yaml"
)
REFERENCE_HOST = {"cpu": "AMD EPYC", "isa": ["avx2", "avx512f"], "machine": "x86_64"}
INTEL_HOST = {"cpu": "Intel(R) Xeon(R) Processor", "isa": ["avx2", "amx_tile"], "machine": "x86_64"}
THIRD_HOST = {"cpu": "Ampere Altra", "isa": ["neon", "asimd"], "machine": "aarch64"}
SLOWER = 1.3  # the Intel host's whole subnets, against the reference host's


@pytest.fixture
def project(tmp_path, monkeypatch, tiny):
    """A project home whose cpu-onnxruntime tiny table (the reference host's) has a copy for
    the Intel host in which every validation subnet took 1.3 times as long."""
    for folder in ("search_spaces", "hardware_profiles"):
        (tmp_path / folder).symlink_to(project_root() / folder)
    monkeypatch.setenv("UFO_NAS_HOME", str(tmp_path))
    monkeypatch.setattr(predictor_module, "_PREDICTORS", {})
    table = LatencyTable.load(SHIPPED, tiny)
    table.provenance["host"] = REFERENCE_HOST
    reference = table.save(tmp_path / "latency_tables" / "cpu-onnxruntime" / "ufo_vit_tiny.yaml")
    table.provenance["host"] = INTEL_HOST
    for row in table.validation:
        row.measured_ms *= SLOWER
    calibrate(tiny, table)
    folder = tmp_path / "latency_tables" / "cpu-onnxruntime" / "hosts" / host_id(INTEL_HOST)
    intel = table.save(folder / "ufo_vit_tiny.yaml")
    return reference, intel


def _on(monkeypatch, host: dict) -> None:
    monkeypatch.setattr(predictor_module, "host_fingerprint", lambda: dict(host))
    monkeypatch.setattr(predictor_module, "_PREDICTORS", {})


def _latency(tiny) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UfoWarning)
        return latency_predictor(tiny, "cpu-onnxruntime").latency_ms([tiny.largest()], "face")[0]


def test_prediction_reads_the_table_of_this_host_without_a_warning(project, tiny, monkeypatch):
    reference, intel = project
    _on(monkeypatch, REFERENCE_HOST)
    assert table_for_this_host(tiny, "cpu-onnxruntime") == reference
    on_reference = _latency(tiny)
    _on(monkeypatch, INTEL_HOST)
    assert table_for_this_host(tiny, "cpu-onnxruntime") == intel
    assert _latency(tiny) == pytest.approx(SLOWER * on_reference, rel=1e-6)
    source = latency_predictor(tiny, "cpu-onnxruntime").source
    assert f", host {host_id(INTEL_HOST)}" in source
    assert host_id(INTEL_HOST).startswith("intel-xeon-")


def test_a_host_without_a_table_reads_the_reference_one_and_is_warned(project, tiny, monkeypatch):
    reference, _ = project
    _on(monkeypatch, THIRD_HOST)
    with pytest.warns(UfoWarning, match=f"^{reference} was measured on another host") as caught:
        latency_predictor(tiny, "cpu-onnxruntime")
    assert "writes a table for this host beside it" in str(caught[0].message)


def test_devices_that_run_elsewhere_never_look_for_host_tables(project, tiny, monkeypatch):
    _, intel = project
    folder = intel.parents[3] / "jetson" / "hosts" / host_id(INTEL_HOST)
    folder.mkdir(parents=True)
    (folder / "ufo_vit_tiny.yaml").write_text("not: a table")  # never read
    _on(monkeypatch, INTEL_HOST)
    assert not latency_predictor(tiny, "jetson").measured


def test_a_corrupt_host_table_is_refused_naming_it(project, tiny, monkeypatch):
    _, intel = project
    intel.write_text("schema: [")
    _on(monkeypatch, THIRD_HOST)
    with pytest.raises(LatencyTableError, match=f"^{intel} is not valid YAML at line 1"):
        latency_predictor(tiny, "cpu-onnxruntime")


ARGV = ["profile", "--device", "cpu-onnxruntime", "--space", "ufo_vit_tiny", "--dry-run"]


def test_profiling_on_a_host_with_its_table_resumes_that_table(project, monkeypatch, capsys):
    _, intel = project
    _on(monkeypatch, INTEL_HOST)
    assert main(ARGV) == 0
    out = capsys.readouterr().out
    assert f"-> {intel}\n" in out and "to measure: 0 operators, 0 validation subnets" in out


def test_profiling_on_a_new_host_builds_a_table_for_it_beside_the_others(
    project, monkeypatch, capsys
):
    reference, intel = project
    before = reference.read_bytes(), intel.read_bytes()
    _on(monkeypatch, THIRD_HOST)
    for_here = reference.parent / "hosts" / host_id(THIRD_HOST) / "ufo_vit_tiny.yaml"
    assert main(ARGV) == 0
    out = capsys.readouterr().out
    assert f"-> {for_here}\n" in out and "to measure: 13 operators, 40 validation subnets" in out
    assert main([*ARGV, "--recalibrate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        f"would re-time 40 of the 40 validation subnets of {reference} here into {for_here}\n"
        "then up to 2 more sessions, each in a new process, while fewer than 90%"
    )
    assert main([*ARGV, "--add-session"]) == 0  # joins only the host a table describes
    assert f"validation subnets of {reference} here\n" in capsys.readouterr().out
    assert (reference.read_bytes(), intel.read_bytes()) == before and not for_here.exists()


def test_recalibrating_without_out_on_the_tables_host_moves_it_in_place(
    project, monkeypatch, capsys
):
    _, intel = project
    _on(monkeypatch, INTEL_HOST)
    assert main([*ARGV, "--recalibrate"]) == 0
    assert capsys.readouterr().out.startswith(
        f"would re-time 40 of the 40 validation subnets of {intel} here\nthen up to 2 more"
    )


@pytest.mark.parametrize(
    "path",
    sorted((project_root() / "latency_tables").glob("*/hosts/*/*.yaml")),
    ids=lambda p: f"{p.parents[2].name}/{p.parent.name}/{p.stem}",
)
def test_every_shipped_host_table_sits_in_its_hosts_folder(path):
    data = yaml.safe_load(path.read_text())
    assert data["device"] == path.parents[2].name
    assert path.parent.name == host_id(data["provenance"]["host"])
    reference = yaml.safe_load((path.parents[2] / path.name).read_text())
    assert host_id(reference["provenance"]["host"]) != path.parent.name
