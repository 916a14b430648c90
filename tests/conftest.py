"""Shared fixtures: the shipped spaces and a small supernet."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from ufo_nas import SearchSpace, load_space
from ufo_nas.graph_cache import CACHE_ENV
from ufo_nas.supernet import SuperViT

# $UFO_NAS_DATA where set (tools/mutation.py runs the tests from a copy of the tree)
DATASETS = Path(
    os.environ.get("UFO_NAS_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets"
)


SHIPPED_TABLE = (
    Path(__file__).resolve().parents[1] / "latency_tables" / "cpu-onnxruntime" / "ufo_vit_tiny.yaml"
)


@pytest.fixture(scope="session")
def shipped_host() -> dict:
    """The host fingerprint the shipped CPU tables record."""
    return yaml.safe_load(SHIPPED_TABLE.read_text())["provenance"]["host"]


@pytest.fixture(autouse=True)
def as_on_the_shipped_tables_host(monkeypatch, shipped_host):
    """Every test runs as on the host the shipped tables describe, so that what the suite
    sees (the other-host warning of a table in use) does not depend on the CPU it runs on;
    the tests of that warning set the host they need."""
    import ufo_nas.export
    import ufo_nas.latency.predictor

    for module in (ufo_nas.export, ufo_nas.latency.predictor):
        monkeypatch.setattr(module, "host_fingerprint", lambda: dict(shipped_host))


@pytest.fixture(scope="session", autouse=True)
def graph_cache_of_the_session(tmp_path_factory):
    """Exported graphs are kept for this session only (and its child processes), never in
    the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def tiny() -> SearchSpace:
    return load_space("ufo_vit_tiny")


@pytest.fixture(scope="session")
def base() -> SearchSpace:
    return load_space("ufo_vit_base")


def randomise_routers(supernet: SuperViT, seed: int = 0) -> None:
    """Non-trivial router logits, so mix paths are not a plain average."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in supernet.blocks:
            block.router_logits.copy_(torch.randn(block.router_logits.shape, generator=generator))


@pytest.fixture(scope="session")
def tiny_supernet(tiny: SearchSpace) -> SuperViT:
    torch.manual_seed(0)
    supernet = SuperViT(tiny.spec).eval()
    randomise_routers(supernet)
    return supernet


@pytest.fixture(scope="session")
def base_supernet(base: SearchSpace) -> SuperViT:
    torch.manual_seed(0)
    supernet = SuperViT(base.spec).eval()
    randomise_routers(supernet)
    return supernet


def put(*keys, value):
    """A change of a nested mapping: `put("a", 0, "b", value=1)(d)` sets d["a"][0]["b"]."""

    def change(data):
        for key in keys[:-1]:
            data = data[key]
        data[keys[-1]] = value

    return change


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """UFO_NAS_DATA pointing at tmp_path/data (where tests/train/micro.py puts images)."""
    monkeypatch.setenv("UFO_NAS_DATA", str(tmp_path / "data"))
    return tmp_path / "data"
