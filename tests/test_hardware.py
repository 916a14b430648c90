from dataclasses import replace

import pytest
import yaml
from conftest import put

from ufo_nas import hardware
from ufo_nas.errors import SpecError, UfoError
from ufo_nas.hardware import (
    host_difference,
    host_id,
    load_profile,
    profile_from_dict,
    shipped_profiles,
    write_host_profile,
)
from ufo_nas.paths import project_root


def test_shipped_profiles_load():
    names = shipped_profiles()
    assert {"jetson", "rpi4", "a100-tensorrt", "cpu-onnxruntime", "cpu-openvino"} <= set(names)
    for name in names:
        profile = load_profile(name)
        assert profile.name == name and profile.peak_tflops > 0 and profile.memory_gbps > 0
    jetson = load_profile("jetson")
    assert (jetson.backend, jetson.device, jetson.precision) == ("tensorrt", "cuda", "fp16")
    assert jetson.target().options["batch"] == 1


def test_unknown_device_names_the_shipped_ones():
    with pytest.raises(UfoError, match="unknown device 'tpu9'.*jetson"):
        load_profile("tpu9")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"backend": "coreml"}, "backend: unknown backend 'coreml'; allowed: torch"),
        ({"precision": "fp8"}, "precision: unknown precision 'fp8'"),
        ({"peak": {"tflops": -1, "memory_gbps": 1}}, "peak.tflops: expected a positive number"),
        ({"batch": 0}, "batch: expected a positive integer"),
        ({"colour": "red"}, "colour: unknown key"),
        ({"remote": {"host": "x"}}, "remote: expected null or"),
    ],
)
def test_bad_profiles(change, message):
    data = load_profile("jetson").to_dict() | change
    with pytest.raises(SpecError, match=message):
        profile_from_dict(data, "p.yaml")


def test_malformed_yaml(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: [x")
    with pytest.raises(SpecError, match="p.yaml: not valid YAML"):
        load_profile(path)
    path.write_text(yaml.safe_dump(load_profile("rpi4").to_dict()))
    assert load_profile(path).name == "rpi4"


def test_write_host_profile_writes_once(tmp_path, monkeypatch):
    monkeypatch.setenv("UFO_NAS_HOME", str(tmp_path))
    (tmp_path / "hardware_profiles").mkdir()
    monkeypatch.setattr(hardware, "measure_host_peaks", lambda: (1.5, 20.0))
    path, profile = write_host_profile("my-cpu", "onnxruntime", threads=2)
    assert path == tmp_path / "hardware_profiles" / "my-cpu.yaml"
    assert load_profile(path) == replace(profile, source=str(path))
    assert (profile.peak_tflops, profile.threads) == (1.5, 2)
    with pytest.raises(UfoError, match="already exists"):
        write_host_profile("my-cpu", "onnxruntime")


def _rpi4_with(tmp_path, change) -> str:
    """A copy of the rpi4 profile with `change(data)` applied; its path."""
    data = yaml.safe_load((project_root() / "hardware_profiles" / "rpi4.yaml").read_text())
    change(data)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (put("backend", value=["tvm"]), r"backend: unknown backend \['tvm'\]; allowed: torch"),
        (put("precision", value={}), r"precision: unknown precision \{\}; allowed: fp32"),
        (put("device", value=None), "device: expected a string, got None"),
        (put("description", value=[1]), r"description: expected a string, got \[1\]"),
        (put("peak", "tflops", value=float("nan")), "peak.tflops: expected a positive number"),
        (put("peak", "memory_gbps", value=float("inf")), "peak.memory_gbps: expected a positi"),
        (put("peak", "tflops", value=1e-300), r"from 1e-06 to 1e\+06, got 1e-300"),
        (put("peak", "source", value=1.5), "peak.source: expected a string, got 1.5"),
        (put("batch", value=10**30), "batch: expected a positive integer of at most 65536"),
        (put("threads", value=float("nan")), "threads: expected a non-negative integer"),
        (
            put("remote", "tracker_port", value=float("inf")),
            "remote.tracker_port: expected a p",
        ),
        (put("remote", "key", value=float("nan")), "remote.key: expected a string, got nan"),
        (put("options", value=[1]), r"options: expected a mapping of option names, got \[1\]"),
        (
            put("options", "tuning_trials", value=float("nan")),
            "options.tuning_trials: expected",
        ),
        (
            put("options", "tvm_target", "mattr", 0, value=float("-inf")),
            r"options.tvm_target.mattr\[0\]: expected a finite value, got NaN or infinity",
        ),
    ],
)
def test_every_value_of_a_profile_file_is_checked(tmp_path, change, message):
    path = _rpi4_with(tmp_path, change)
    with pytest.raises(SpecError, match=f"^{path}: .*{message}") as info:
        load_profile(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"name: rpi4\n\x00backend: tvm\n", "not valid YAML at line 2, column 1: control charac"),
        (b"name: rpi4\n# \xa0\n", r"not UTF-8 text \(byte 13\); a hardware profile is a YAML"),
    ],
)
def test_unreadable_profile_files_get_one_line(tmp_path, content, message):
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    with pytest.raises(SpecError, match=f"^{path}: {message}") as info:
        load_profile(path)
    assert "\n" not in str(info.value)


def test_a_host_id_names_the_cpu_and_changes_exactly_when_the_host_differs():
    host = {
        "cpu": "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz",
        "cores": 2,
        "isa": ["avx2", "avx512f", "amx_tile"],
        "machine": "x86_64",
        "python": "3.11.7",
    }
    assert host_id(host).startswith("intel-xeon-platinum-8480-")
    same = host | {"cores": 64, "python": "3.12.1", "isa": ["amx_tile", "avx2", "avx512f"]}
    assert host_difference(host, same) is None and host_id(same) == host_id(host)
    for other in ({"isa": ["avx2", "avx512f"]}, {"cpu": "AMD EPYC 9R14"}, {"machine": "aarch64"}):
        assert host_difference(host, host | other) and host_id(host | other) != host_id(host)
    assert len(host_id(host).rpartition("-")[2]) == 8
