import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import randomise_routers

import ufo_nas.onnx_io
from ufo_nas.errors import UfoWarning
from ufo_nas.graph_cache import CACHE_ENV, GraphCache, graph_cache
from ufo_nas.onnx_io import export_for_backend, export_module, external_data
from ufo_nas.supernet import SuperViT, extract

MIXED = "d5-h4,2,3,4,3-m3,2,4,4,2-face:smtsm-object:sstmt"  # shared, task and mix paths


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder / "onnx-graphs"


@pytest.fixture
def traces(monkeypatch) -> list[str]:
    """The modules `torch.onnx` traced, by class name."""
    traced: list[str] = []
    trace = ufo_nas.onnx_io._onnx_program

    def counting(module, *args, **kwargs):
        traced.append(type(module).__name__)
        return trace(module, *args, **kwargs)

    monkeypatch.setattr(ufo_nas.onnx_io, "_onnx_program", counting)
    return traced


def run(path, images: torch.Tensor) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images.numpy()})


class Scaled(torch.nn.Module):
    """A small one-input module; `persistent=False` keeps its scale out of its state."""

    def __init__(self, persistent: bool = True):
        super().__init__()
        self.linear = torch.nn.Linear(64, 32)  # weights over onnx's 1 KB: saved beside the graph
        self.register_buffer("scale", torch.rand(32) + 0.5, persistent=persistent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * self.scale


def test_a_subnet_exported_again_takes_the_kept_graph_with_its_own_weights(
    tiny, tiny_supernet, cache_dir, traces, tmp_path
):
    torch.manual_seed(1)
    other = SuperViT(tiny.spec).eval()
    randomise_routers(other, seed=1)
    arch = tiny.parse(MIXED)
    first = extract(tiny_supernet, arch, ("face", "object"))
    second = extract(other, arch, ("face", "object"))
    export_for_backend(first, tmp_path / "first.onnx", 2)
    export_for_backend(second, tmp_path / "second.onnx", 2)
    assert traces == ["SubnetViT"]  # the second export took the kept graph
    assert len(list(cache_dir.glob("*.onnx"))) == 1
    images = torch.randn(2, 3, 64, 64)
    for subnet, path in ((first, "first.onnx"), (second, "second.onnx")):
        with torch.no_grad():
            want = subnet(images)
        got = run(tmp_path / path, images)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w.numpy(), atol=1e-5, rtol=0)
    # the weights differ (the mix weights too), so equal outputs would mean stale weights
    assert not np.allclose(run(tmp_path / "first.onnx", images)[0], got[0], atol=1e-3)
    # the graph is the one a full export writes, metadata included
    fresh = tmp_path / "fresh.onnx"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, "off")
        export_for_backend(second, fresh, 2)
    kept, made = (onnx.load(str(p), load_external_data=False) for p in (tmp_path / path, fresh))
    assert kept.graph.node == made.graph.node
    assert kept.graph.input == made.graph.input and kept.graph.output == made.graph.output
    assert kept.metadata_props == made.metadata_props


def test_another_structure_or_setting_is_traced_afresh(
    tiny, tiny_supernet, cache_dir, traces, tmp_path
):
    subnet = extract(tiny_supernet, tiny.smallest(), ("face",))
    export_for_backend(subnet, tmp_path / "a.onnx", 1)
    export_for_backend(subnet, tmp_path / "b.onnx", 2)  # another batch
    export_for_backend(subnet, tmp_path / "c.onnx", 1, opset=17)  # another opset
    bigger = extract(tiny_supernet, tiny.largest(), ("face",))  # another arch
    export_for_backend(bigger, tmp_path / "d.onnx", 1)
    export_for_backend(subnet, tmp_path / "e.onnx", 1)  # the first again
    assert len(traces) == 4
    assert len(list(cache_dir.glob("*.onnx"))) == 4


def test_the_cache_is_off_where_the_setting_says_so(monkeypatch, tmp_path, traces):
    monkeypatch.setenv(CACHE_ENV, "off")
    assert graph_cache() is None
    module, example = Scaled(), torch.randn(1, 64)
    for _ in range(2):
        export_module(module, example, tmp_path / "m.onnx", structure={"name": "scaled"})
    assert traces == ["Scaled", "Scaled"]
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert graph_cache().folder == tmp_path / "xdg" / "ufo-nas" / "onnx-graphs"


def test_a_graph_whose_weights_are_not_the_module_s_state_is_not_kept(cache_dir, traces, tmp_path):
    module, example = Scaled(persistent=False), torch.randn(1, 64)
    for _ in range(2):
        path = export_module(module, example, tmp_path / "m.onnx", structure={"name": "s"})
    assert traces == ["Scaled", "Scaled"]
    assert not list(cache_dir.glob("*.onnx"))
    with torch.no_grad():
        np.testing.assert_allclose(run(path, example)[0], module(example).numpy(), atol=1e-6)


def test_an_unreadable_or_misfit_entry_is_removed_and_traced_afresh(cache_dir, traces, tmp_path):
    module, example = Scaled(), torch.randn(1, 64)
    export_module(module, example, tmp_path / "m.onnx", structure={"name": "s"})
    (entry,) = cache_dir.glob("*.onnx")
    entry.write_bytes(b"\x08 truncated")
    with pytest.warns(UfoWarning, match=f"removed an unreadable cached ONNX graph {entry}"):
        path = export_module(module, example, tmp_path / "m.onnx", structure={"name": "s"})
    with torch.no_grad():
        np.testing.assert_allclose(run(path, example)[0], module(example).numpy(), atol=1e-6)
    assert traces == ["Scaled", "Scaled"] and entry.is_file()  # kept again
    # an entry of the key whose initializers are not this module's (another shape)
    cache, wider = GraphCache(cache_dir), torch.nn.Linear(64, 48)
    assert cache.load(entry.stem, wider) is None and not entry.exists()


def test_the_least_recently_used_graphs_go_beyond_the_limit(cache_dir, tmp_path):
    module, example = Scaled(), torch.randn(1, 64)
    model = ufo_nas.onnx_io._onnx_program(module, example, None, 18, False, False).model_proto
    cache = GraphCache(cache_dir)
    assert cache.store("a", model, module) and cache.store("b", model, module)
    size = (cache_dir / "a.onnx").stat().st_size
    cache.load("a", module)  # now the most recently used
    cache.limit_bytes = 2 * size
    os.utime(cache_dir / "b.onnx", (1, 1))  # plainly older than a, whatever the clock's step
    assert cache.store("c", model, module)
    assert sorted(p.stem for p in cache_dir.glob("*.onnx")) == ["a", "c"]


def test_an_unwritable_cache_warns_and_the_export_is_written(tmp_path, monkeypatch, traces):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocker))
    module, example = Scaled(), torch.randn(1, 64)
    with pytest.warns(UfoWarning, match="could not keep an exported ONNX graph"):
        path = export_module(module, example, tmp_path / "m.onnx", structure={"name": "s"})
    with torch.no_grad():
        np.testing.assert_allclose(run(path, example)[0], module(example).numpy(), atol=1e-6)


def test_an_export_replaces_a_stale_weights_file(tmp_path, cache_dir, monkeypatch):
    module, example = Scaled(), torch.randn(1, 64)
    path = tmp_path / "out" / "m.onnx"
    path.parent.mkdir()
    weights = module.linear.weight.numel() * 4
    for stale in (path.parent, tmp_path):  # beside the graph (a killed run), the current folder
        (stale / "m.onnx.data").write_bytes(b"left by a killed run")
    monkeypatch.chdir(tmp_path)
    for structure in (None, {"name": "s"}, {"name": "s"}):  # traced, kept, taken from cache
        export_module(module, example, path, structure=structure)
        assert external_data(path).stat().st_size == weights
        with torch.no_grad():
            np.testing.assert_allclose(run(path, example)[0], module(example).numpy(), atol=1e-6)


class Picked(torch.nn.Module):
    """Picks columns by an int64 buffer: state that is not float."""

    def __init__(self, columns: list[int]):
        super().__init__()
        self.linear = torch.nn.Linear(64, 32)
        self.register_buffer("columns", torch.tensor(columns))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)[:, self.columns]


def test_integer_state_is_taken_from_the_module_too(cache_dir, traces, tmp_path):
    example = torch.randn(1, 64)
    for k, columns in enumerate(([0, 5, 9], [31, 2, 7])):
        module = Picked(columns)
        path = export_module(module, example, tmp_path / f"{k}.onnx", structure={"name": "p"})
        with torch.no_grad():
            np.testing.assert_allclose(run(path, example)[0], module(example).numpy(), atol=1e-6)
    assert traces == ["Picked"]


def test_state_without_a_numpy_dtype_is_exported_and_not_kept(cache_dir, traces, tmp_path):
    module, example = Scaled().to(torch.bfloat16), torch.randn(1, 64, dtype=torch.bfloat16)
    for _ in range(2):
        path = export_module(module, example, tmp_path / "m.onnx", structure={"name": "b"})
    assert traces == ["Scaled", "Scaled"] and path.is_file()
    assert not cache_dir.exists() or not list(cache_dir.glob("*.onnx"))
