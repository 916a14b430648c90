"""Hardware profiles: YAML files in `hardware_profiles/` that say where a model runs.

name: jetson
description: NVIDIA Jetson AGX Orin 64GB, TensorRT
backend: tensorrt          # torch, onnxruntime, openvino, tvm, tensorrt
device: cuda               # the backend's device (cpu, cuda, gpu, npu, ...)
precision: fp16            # fp32, fp16, bf16, int8
batch: 1
threads: 0                 # 0: the backend's default
peak:
  tflops: 42.5             # published dense peak at this precision
  memory_gbps: 204.8       # published memory bandwidth
  source: <where the figures come from>
remote: null               # or {tracker_host, tracker_port, key} (TVM RPC)
options: {}                # backend options, e.g. tvm_target, tuning_trials
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ufo_nas.backends import BACKEND_MODULES, PRECISIONS, Target
from ufo_nas.errors import SpecError
from ufo_nas.fileio import write_atomic
from ufo_nas.formats import non_finite_path, parse, read_text
from ufo_nas.paths import project_root, resolve_named_file
from ufo_nas.spec import TASK_NAME

_KEYS = {
    "name": True,
    "description": False,
    "backend": True,
    "device": True,
    "precision": True,
    "batch": False,
    "threads": False,
    "peak": True,
    "remote": False,
    "options": False,
}


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    backend: str
    device: str
    precision: str
    peak_tflops: float
    memory_gbps: float
    peak_source: str
    description: str = ""
    batch: int = 1
    threads: int = 0
    remote: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "<dict>"

    def target(self) -> Target:
        options = {"batch": self.batch, **self.options}
        if self.remote:
            options["rpc"] = dict(self.remote)
        return Target(self.device, self.precision, self.threads, options)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "backend": self.backend,
            "device": self.device,
            "precision": self.precision,
            "batch": self.batch,
            "threads": self.threads,
            "peak": {
                "tflops": self.peak_tflops,
                "memory_gbps": self.memory_gbps,
                "source": self.peak_source,
            },
            "remote": self.remote,
            "options": self.options,
        }


# sane ranges: a peak outside them is a typo (and would make roofline times overflow)
PEAK_RANGE = (1e-6, 1e6)  # TFLOP/s and GB/s
COUNT_LIMIT = 65536  # batch and threads


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def profile_from_dict(data: Any, source: str = "<dict>") -> HardwareProfile:
    """A profile from the mapping of a profile file; one-line SpecError naming `source` and
    the key when any value is missing, of the wrong type, out of range, NaN or infinite."""

    def fail(key: str, why: str) -> SpecError:
        return SpecError(f"{source}: {key}: {why}")

    def text(key: str, value: Any, default: str | None = None) -> str:
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise fail(key, f"expected a string, got {value!r}")
        return value

    def choice(key: str, allowed: Any) -> str:
        value = data[key]
        if not isinstance(value, str) or value not in allowed:
            raise fail(key, f"unknown {key} {value!r}; allowed: {', '.join(allowed)}")
        return value

    def count(key: str, default: int, low: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= COUNT_LIMIT:
            noun = "positive" if low else "non-negative"
            raise fail(key, f"expected a {noun} integer of at most {COUNT_LIMIT}, got {value!r}")
        return value

    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping with keys {', '.join(_KEYS)}")
    for key in data:
        if key not in _KEYS:
            raise fail(str(key), f"unknown key; allowed: {', '.join(_KEYS)}")
    for key, required in _KEYS.items():
        if required and key not in data:
            raise fail(key, "missing required key")
    name = data["name"]
    if not isinstance(name, str) or not TASK_NAME.fullmatch(name.replace("-", "_")):
        raise fail("name", f"expected a lower-case name (a-z, 0-9, -, _), got {name!r}")
    backend, precision = choice("backend", BACKEND_MODULES), choice("precision", PRECISIONS)
    device = text("device", data["device"])
    if not device or not device.isprintable():
        raise fail("device", f"expected the backend's device (cpu, cuda, ...), got {device!r}")
    peak = data["peak"]
    if not isinstance(peak, dict) or set(peak) - {"tflops", "memory_gbps", "source"}:
        raise fail("peak", "expected a mapping with tflops, memory_gbps and source")
    numbers = {}
    for key in ("tflops", "memory_gbps"):
        value = peak.get(key)
        low, high = PEAK_RANGE
        if not _is_number(value) or not low <= value <= high:
            raise fail(
                f"peak.{key}", f"expected a positive number from {low:g} to {high:g}, got {value!r}"
            )
        numbers[key] = float(value)
    remote = data.get("remote")
    if remote is not None:
        if not isinstance(remote, dict) or set(remote) != {"tracker_host", "tracker_port", "key"}:
            raise fail("remote", "expected null or {tracker_host, tracker_port, key}")
        port = remote["tracker_port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise fail("remote.tracker_port", f"expected a port number, got {port!r}")
        for key in ("tracker_host", "key"):
            text(f"remote.{key}", remote[key])
    options = data.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise fail("options", f"expected a mapping of option names, got {options!r}")
    bad = non_finite_path(options, "options")
    if bad:
        raise fail(bad, "expected a finite value, got NaN or infinity")
    return HardwareProfile(
        name=name,
        backend=backend,
        device=device,
        precision=precision,
        peak_tflops=numbers["tflops"],
        memory_gbps=numbers["memory_gbps"],
        peak_source=text("peak.source", peak.get("source"), ""),
        description=text("description", data.get("description"), ""),
        batch=count("batch", 1, 1),
        threads=count("threads", 0, 0),
        remote=remote,
        options=options,
        source=source,
    )


def load_profile(name_or_path: str | os.PathLike) -> HardwareProfile:
    """A hardware profile by file path or shipped name (`jetson`, `cpu-onnxruntime`)."""
    path = resolve_named_file(name_or_path, "hardware_profiles", "device")
    text = read_text(path, "a hardware profile is a YAML file", SpecError)
    try:
        data = parse(text, "YAML")
    except ValueError as exc:
        raise SpecError(f"{path}: {exc}") from None
    return profile_from_dict(data, str(path))


def shipped_profiles() -> list[str]:
    return sorted(p.stem for p in (project_root() / "hardware_profiles").glob("*.yaml"))


ISA_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "neon",
    "asimd",
)
# the flags looked for by fingerprints that do not say (before `isa_checked` was recorded)
_ISA_FLAGS_V1 = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "neon", "asimd")


def host_fingerprint() -> dict[str, Any]:
    """What identifies this machine in a table's provenance; `isa` lists the flags of
    `isa_checked` this CPU has."""
    model = platform.processor() or platform.machine()
    flags: list[str] = []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = [f for f in line.split(":", 1)[1].split() if f in ISA_FLAGS]
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "isa": flags,
        "isa_checked": list(ISA_FLAGS),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def host_difference(recorded: dict[str, Any], here: dict[str, Any]) -> str | None:
    """None when two host fingerprints are the same CPU (model, architecture and the ISA
    flags both looked for), else both in short form: CPU model and the flags that differ,
    e.g. `AMD EPYC (avx2) vs this host's Intel Xeon (+avx512f +avx512_vnni)`."""
    checked = set(recorded.get("isa_checked", _ISA_FLAGS_V1)) & set(
        here.get("isa_checked", _ISA_FLAGS_V1)
    )
    old = [f for f in recorded.get("isa", []) if f in checked]
    new = [f for f in here.get("isa", []) if f in checked]
    same = (
        recorded.get("cpu") == here.get("cpu")
        and recorded.get("machine") == here.get("machine")
        and set(old) == set(new)
    )
    if same:
        return None
    changed = [f"+{f}" for f in new if f not in old] + [f"-{f}" for f in old if f not in new]
    return (
        f"{recorded.get('cpu')} ({' '.join(old) or 'no listed ISA extensions'}) vs this "
        f"host's {here.get('cpu')} ({' '.join(changed) or 'same ISA extensions'})"
    )


def host_id(host: dict[str, Any]) -> str:
    """A folder name for a host fingerprint: its CPU model in short, then a hash of model,
    architecture and ISA flags (what `host_difference` compares), e.g.
    `intel-xeon-2f9c41d0`."""
    import hashlib
    import re

    model = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$", " ", str(host.get("cpu", "")).lower())
    words = re.findall(r"[a-z0-9]+", model)
    key = "|".join([str(host.get("cpu")), str(host.get("machine")), *sorted(host.get("isa", []))])
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return "-".join([*words[:4], digest])


def runs_here(profile: HardwareProfile) -> bool:
    """Whether the profile's device is this machine's CPU (not a GPU, nor over RPC)."""
    return profile.device == "cpu" and not profile.remote


def measure_host_peaks(seconds: float = 2.0) -> tuple[float, float]:
    """(fp32 TFLOP/s, memory GB/s) of this machine, from a large matmul and a large copy
    in PyTorch: a measured ceiling for a new profile when no published figure is known."""
    import time

    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    src, dst = torch.empty(64 * 2**20), torch.empty(64 * 2**20)  # 256 MiB each
    best_mm, best_copy = float("inf"), float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        best_mm = min(best_mm, time.perf_counter() - start)
        start = time.perf_counter()
        dst.copy_(src)
        best_copy = min(best_copy, time.perf_counter() - start)
    return 2 * 2048**3 / best_mm / 1e12, 2 * src.numel() * 4 / best_copy / 1e9


def new_host_profile(name: str, backend: str, threads: int) -> HardwareProfile:
    """A profile of the machine this runs on, its peaks measured (see measure_host_peaks)."""
    tflops, gbps = measure_host_peaks()
    host = host_fingerprint()
    return profile_from_dict(
        {
            "name": name,
            "description": f"{host['cpu']}, {host['cores']} cores, {backend} on the CPU, fp32",
            "backend": backend,
            "device": "cpu",
            "precision": "fp32",
            "batch": 1,
            "threads": threads,
            "peak": {
                "tflops": round(tflops, 4),
                "memory_gbps": round(gbps, 2),
                "source": "measured by `ufo profile --new-profile`: 2048^2 fp32 matmul, "
                "256 MiB copy",
            },
            "remote": None,
            "options": {},
        },
        source=f"new profile {name}",
    )


def write_host_profile(name: str, backend: str, threads: int = 0) -> tuple[Path, HardwareProfile]:
    """Write `hardware_profiles/<name>.yaml` for this machine (see `new_host_profile`);
    refuses an existing file. Returns its path and the profile."""
    profile = new_host_profile(name, backend, threads)
    path = project_root() / "hardware_profiles" / f"{profile.name}.yaml"
    text = yaml.safe_dump(profile.to_dict(), sort_keys=False)
    write_atomic(path, lambda tmp: tmp.write_text(text), overwrite=False)
    return path, profile
