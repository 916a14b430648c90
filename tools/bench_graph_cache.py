"""What the graph cache saves: a subnet's profiling export traced by `torch.onnx` against
the same subnet's export from its kept graph, and whether the two run alike.

For each space, `--subnets` random subnets (from a trained-like noised supernet, as profiling
builds them) are exported three ways, in one process: with the cache off (a trace, as before
the cache), into an empty cache (a trace, then the graph kept), and again from the kept graph
with the weights of a second, differently noised supernet (what a later process exports). The
cached export's outputs are checked against PyTorch on random images, and its graph against a
full trace of the same subnet.

    python tools/bench_graph_cache.py [--spaces ufo_vit_tiny,ufo_vit_base] [--subnets 3]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from results_io import write_results

from ufo_nas import load_space
from ufo_nas.graph_cache import CACHE_ENV
from ufo_nas.hardware import host_fingerprint, host_id
from ufo_nas.latency.weights import trained_like_
from ufo_nas.onnx_io import export_for_backend
from ufo_nas.supernet import SuperViT, extract

ROOT = Path(__file__).resolve().parents[1]


def _timed_export(subnet, path: Path, cache: str) -> float:
    os.environ[CACHE_ENV] = cache
    start = time.perf_counter()
    export_for_backend(subnet, path, 1)
    return time.perf_counter() - start


def _max_error(path: Path, subnet, images: torch.Tensor) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        want = subnet(images)
    want = want if isinstance(want, tuple) else (want,)
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))


def _graph(path: Path) -> tuple[list, list, list]:
    graph = onnx.load(str(path), load_external_data=False).graph
    return (list(graph.node), list(graph.input), list(graph.output))


def bench_space(name: str, subnets: int, folder: Path) -> list[str]:
    space = load_space(name)
    torch.manual_seed(0)
    first = trained_like_(SuperViT(space.spec)).eval()
    torch.manual_seed(1)
    second = trained_like_(SuperViT(space.spec), seed=1).eval()
    rng = np.random.default_rng(7)
    images = torch.randn(1, space.spec.in_chans, space.spec.image_size, space.spec.image_size)
    rows = []
    for k in range(subnets):
        arch, cache = space.sample(rng), str(folder / f"cache-{name}-{k}")
        tasks = space.spec.task_names
        traced = _timed_export(extract(first, arch, tasks), folder / "off.onnx", "off")
        kept = _timed_export(extract(first, arch, tasks), folder / "kept.onnx", cache)
        again = extract(second, arch, tasks)
        cached = _timed_export(again, folder / "cached.onnx", cache)
        _timed_export(again, folder / "fresh.onnx", "off")
        same = _graph(folder / "cached.onnx") == _graph(folder / "fresh.onnx")
        error = _max_error(folder / "cached.onnx", again, images)
        size = sum(p.stat().st_size for p in Path(cache).rglob("*.onnx")) / 1e6
        rows.append(
            f"| {name} | `{arch.to_string()}` | {traced:.2f} | {kept:.2f} | {cached:.2f} | "
            f"{traced / cached:.0f}x | {size:.1f} | {'yes' if same else 'NO'} | {error:.1e} |"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", default="ufo_vit_tiny,ufo_vit_base")
    parser.add_argument("--subnets", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "tools/results/bench_graph_cache.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    start = time.time()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ufo-graph-cache-") as tmp:
        for name in args.spaces.split(","):
            rows += bench_space(name, args.subnets, Path(tmp))
    host = host_fingerprint()
    command = shlex.join(["python", "tools/bench_graph_cache.py", *(argv or sys.argv[1:])])
    lines = [
        "# Profiling exports: traced by torch.onnx or taken from the graph cache",
        "",
        f"Command: `{command}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(start))}; host "
        f"{host_id(host)} ({host.get('cpu', '?')}); torch {torch.__version__}, 2 threads; "
        f"{time.time() - start:.0f} s in all. Seconds per export (batch 1, weights beside the "
        "graph): cache off (a trace); into an empty cache (a trace, the graph kept); from the "
        "kept graph with a second supernet's weights. Same graph: nodes, inputs and outputs "
        "equal a fresh trace's. Max |error|: the cached export run by ONNX Runtime against "
        "PyTorch on one random image.",
        "",
        "| space | subnet | traced (s) | traced and kept (s) | from the cache (s) | saved | "
        "kept graph (MB) | same graph | max abs error |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    write_results(lines, args.out)


if __name__ == "__main__":
    main()
