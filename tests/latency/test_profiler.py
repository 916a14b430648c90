"""`Profiler` on its own: the target its backend gets (precision, threads, the run's TVM
tuning folder), the cleaning of what earlier runs left in the work folder, operators and
subnets compiled by ONNX Runtime against PyTorch's outputs, the subnet folders `release`
keeps (built engines) or removes (the anchor's only at `close`), and `time_chunk`'s rounds,
time budget, seed and steal time on the fake backend and clock of test_measure_values."""

from __future__ import annotations

import os
import shutil
import subprocess
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.latency import test_measure_values
from ufo_nas.backends import Backend, Target
from ufo_nas.hardware import HardwareProfile, load_profile, profile_from_dict
from ufo_nas.latency import measure
from ufo_nas.latency.measure import Profiler, ProfileSettings, anchor_subnet
from ufo_nas.latency.operator_modules import build_operator
from ufo_nas.latency.operator_set import space_operators
from ufo_nas.latency.timing import WARM_CALLS
from ufo_nas.latency.weights import WEIGHTS_TAG
from ufo_nas.onnx_io import external_data

fake = test_measure_values.fake  # a backend of known costs on a fake clock (a fixture)
A, B = test_measure_values.A, test_measure_values.B


def _with(profile: HardwareProfile, **changes) -> HardwareProfile:
    return profile_from_dict(profile.to_dict() | changes, "p.yaml")


def _temporary(name: str) -> str:
    """The kept folder name of a temporary `subnet-<hash>.tmp-<this pid>`, checked."""
    assert fnmatch(name, "subnet-*.tmp-*")  # what a later run cleans if this one is killed
    kept, _, pid = name.rpartition(".tmp-")
    assert pid == str(os.getpid())
    return kept


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_the_backend_runs_the_profile_target_with_the_run_tuning_folder(tiny, tmp_path):
    """Precision, threads and options reach the backend; TVM tunes into the work folder (one
    database per run) unless the profile names its own."""
    work = tmp_path / "work"
    profile = _with(load_profile("cpu-onnxruntime-int8"), threads=1, options={"cc": "gcc"})
    backend = Profiler(tiny, profile, work).backend
    assert backend.target == Target(
        "cpu", "int8", 1, {"tuning_dir": str(work), "batch": 1, "cc": "gcc"}
    )
    own = _with(profile, options={"tuning_dir": "/shared/tvm"})
    assert Profiler(tiny, own, work).backend.target.options["tuning_dir"] == "/shared/tvm"


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_new_profiler_cleans_what_earlier_runs_left(tiny, tmp_path):
    """A dead run's temporaries and empty kept folders go; a live run's temporaries, built
    engines and operator folders stay."""
    work = tmp_path / "work"
    for name in (f"subnet-aaaaaaaaaaaa.tmp-{_dead_pid()}", "subnet-cccccccccccc", "op-stem-x1"):
        (work / name).mkdir(parents=True)
        (work / name / "engine").write_text("built")
    live = work / f"subnet-bbbbbbbbbbbb.tmp-{os.getpid()}"
    live.mkdir()
    (work / "subnet-0123456789ab").mkdir()  # empty, as runs before temporaries had a pid
    (work / "subnet-notes.txt").write_text("a file")
    Profiler(tiny, load_profile("cpu-onnxruntime"), work)
    assert _names(work) == ["op-stem-x1", live.name, "subnet-cccccccccccc", "subnet-notes.txt"]
    assert (work / "subnet-cccccccccccc" / "engine").read_text() == "built"
    Profiler(tiny, load_profile("cpu-onnxruntime"), tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_an_operator_compiles_to_its_chained_copies_and_a_resumed_run_reuses_its_graph(
    tiny, tmp_path, monkeypatch
):
    profile = load_profile("cpu-onnxruntime")
    op = next(op for op in space_operators(tiny.spec) if op.key == "ffn.m256.x1")
    profiler = Profiler(tiny, profile, tmp_path)
    torch.manual_seed(0)
    runner, x = profiler.compile_operator(op, 2)
    torch.manual_seed(0)
    module, example = build_operator(tiny.spec, op, profile.batch, 2)
    assert x.shape == (1, tiny.spec.num_tokens, tiny.spec.embed_dim)
    np.testing.assert_array_equal(x, example.numpy())
    with torch.no_grad():
        want = module(example).numpy()
    got = runner(x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    exported = []
    monkeypatch.setattr(measure, "export_module", lambda *args: exported.append(args))
    again, x2 = Profiler(tiny, profile, tmp_path).compile_operator(op, 2)
    assert not exported  # the graph of the first run is compiled again: its weights
    np.testing.assert_array_equal(again(x2)[0], got)


def test_a_subnet_compiles_to_the_onnxruntime_artefact_with_pytorch_outputs(tiny, tmp_path):
    """Built in `subnet-<hash>.tmp-<pid>` (a later run removes it if this one is killed),
    which holds no file once loaded and is gone after `close`."""
    profiler = Profiler(tiny, load_profile("cpu-onnxruntime"), tmp_path)
    arch, tasks = tiny.smallest(), ("face", "object")
    runner, images = profiler.compile_subnet(arch, tasks)
    assert images.shape == (1, tiny.spec.in_chans, tiny.spec.image_size, tiny.spec.image_size)
    with torch.no_grad():
        want = profiler.subnet(arch, tasks)(torch.from_numpy(images))
    got = runner(images)
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-4)
    [name] = _names(tmp_path)
    _temporary(name)
    assert not _names(tmp_path / name)
    profiler.close()
    assert not _names(tmp_path)


class EngineBackend(Backend):
    """A backend without an export of its own that builds an engine file in the folder it
    compiles in; it records what it compiled from."""

    name = "engine"
    needs_onnx = False
    seen: list[tuple[str | None, Path, bool]] = []  # the graph read, folder, weights found?

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @classmethod
    def versions(cls) -> dict[str, str]:
        return {"engine": "1"}

    def compile(self, module, onnx_path, work_dir):
        graph = onnx_path.read_text() if onnx_path.is_file() else None
        self.seen.append((graph, work_dir, external_data(onnx_path).is_file()))
        (work_dir / "engine").write_text(module.arch.to_string())
        return lambda x: []


@pytest.fixture
def engine(monkeypatch) -> type[EngineBackend]:
    monkeypatch.setattr(EngineBackend, "seen", [])
    monkeypatch.setattr(measure, "get_backend", lambda name: EngineBackend)
    return EngineBackend


def test_release_keeps_built_engines_that_a_later_run_builds_in_again(tiny, tmp_path, engine):
    work, profile = tmp_path / "cache" / "work", load_profile("cpu-torch")
    other = (tiny.largest(), ("object",))
    first = Profiler(tiny, profile, work)
    first.anchor()
    first.compile_subnet(*other)
    temporaries = [seen[1] for seen in engine.seen]  # where each was built: anchor, other
    assert [folder.parent for folder in temporaries] == [work, work]
    names = [_temporary(folder.name) for folder in temporaries]
    assert names[0] != names[1]
    first.release()  # the anchor's folder stays a temporary until close
    assert _names(work) == sorted([temporaries[0].name, names[1]])
    first.close()
    assert _names(work) == sorted(names)
    assert (work / names[1] / "engine").read_text() == tiny.largest().to_string()

    second = Profiler(tiny, profile, work)
    second.anchor()
    second.compile_subnet(*other)
    second.close()
    assert [seen[1] for seen in engine.seen[2:]] == [work / n for n in names]
    assert _names(work) == sorted(names)


def _export_stub(subnet, path: Path, batch: int) -> None:
    """A fast stand-in for `export_for_backend`: a graph file naming what it holds."""
    path.write_text(f"{subnet.arch.to_string()} x{batch}")
    external_data(path).write_text("weights")


def test_a_backend_without_export_compiles_the_exported_graph(tiny, tmp_path, engine, monkeypatch):
    """...in the subnet's folder, which keeps only the engine once loaded."""
    monkeypatch.setattr(engine, "needs_onnx", True)
    monkeypatch.setattr(measure, "export_for_backend", _export_stub)
    profiler = Profiler(tiny, load_profile("cpu-torch"), tmp_path)
    arch, tasks = anchor_subnet(tiny)
    profiler.compile_subnet(arch, tasks)
    [(graph, folder, weights)] = engine.seen
    assert graph == f"{arch.to_string()} x1" and weights
    assert folder.parent == tmp_path and _names(folder) == ["engine"]


def test_the_anchor_folder_outlives_release_until_close(tiny, tmp_path, fake):
    profiler = Profiler(tiny, fake.profile, tmp_path)
    runner, images = profiler.anchor()
    assert profiler.anchor() == (runner, images)
    [anchor] = _names(tmp_path)
    profiler.compile_subnet(tiny.largest(), ("object",))
    profiler.compile_subnet(tiny.smallest(), ("object",))
    assert len(_names(tmp_path)) == 3
    profiler.release()  # nothing built: the folders go, but the anchor's
    assert _names(tmp_path) == [anchor]
    shutil.rmtree(tmp_path / anchor)  # e.g. a cache cleaned meanwhile: no error over the run's
    profiler.close()
    profiler.compile_subnet(tiny.largest(), ("object",))
    profiler.close()
    assert not _names(tmp_path)


def _chunk(tiny, profiler: Profiler, fake, calls: list[str]) -> dict:
    """Two operators of known cost whose calls are logged in `calls`."""
    models = {}
    for op in space_operators(tiny.spec)[:2]:
        runner, x = profiler.compile_operator(op, 1)
        models[op.key] = (lambda x, run=runner, key=op.key: calls.append(key) or run(x), x)
    return models


def test_a_chunk_is_timed_in_rounds_that_fit_its_budget_or_fill_its_time(
    tiny, tmp_path, fake, monkeypatch
):
    ticks = iter([(100, 10_000), (130, 10_200)] * 6)
    monkeypatch.setattr(measure, "cpu_steal_ticks", lambda: next(ticks))
    profiler = Profiler(tiny, fake.profile, tmp_path)
    models = _chunk(tiny, profiler, fake, [])
    no_graph = [_names(tmp_path / f"op-{key}-x1-{WEIGHTS_TAG}") for key in models]
    assert no_graph == [[]] * len(models)  # the fake backend reads no graph
    arch, tasks = anchor_subnet(tiny)
    anchor_ms = A * float(fake.truth.sum_ms([arch], tasks)[0]) + B
    calls = WARM_CALLS + 2  # a round's calls of each model: untimed, then 2 timed
    round_s = calls * (sum(fake.costs[key] for key in models) + anchor_ms) / 1e3
    cases = [  # budget, fill (s): rounds of the chunk
        (5.5 * round_s, None, 5),
        (round_s / 10, None, 3),
        (None, None, 9),
        (None, 12.5 * round_s, 12),  # a fast chunk gets the rounds that fill its time
        (None, 1e3 * round_s, 20),  # at most max_rounds
        (None, 2.5 * round_s, 9),  # never fewer than `rounds`
    ]
    for budget, fill, rounds in cases:
        settings = ProfileSettings(
            rounds=9,
            calls_per_round=2,
            min_rounds=3,
            chunk_seconds=budget,
            fill_seconds=fill,
            max_rounds=20,
        )
        timings, anchor, steal = profiler.time_chunk(models, settings)
        assert list(timings) == list(models)
        for key, timing in timings.items():
            assert timing.calls == 2 * rounds
            assert timing.ms == pytest.approx(fake.costs[key], rel=1e-6)
        assert anchor == pytest.approx(anchor_ms, rel=1e-6)
        assert steal == pytest.approx(15.0)  # 30 of 200 ticks


def test_a_chunk_is_shuffled_by_the_seed(tiny, tmp_path, fake):
    profiler = Profiler(tiny, fake.profile, tmp_path)
    orders = []
    for seed in (5, 5, 6):
        calls: list[str] = []
        models = _chunk(tiny, profiler, fake, calls)
        profiler.time_chunk(models, ProfileSettings(rounds=12, chunk_seconds=None, seed=seed))
        orders.append(calls)
    assert orders[0] == orders[1] != orders[2]
