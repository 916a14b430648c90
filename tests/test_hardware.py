from dataclasses import replace

import pytest
import yaml

from ufo_nas import hardware
from ufo_nas.errors import SpecError, UfoError
from ufo_nas.hardware import (
    load_profile,
    profile_from_dict,
    shipped_profiles,
    write_host_profile,
)


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
