"""Does a model's speed depend on its weights? The same subnets with a freshly initialised
supernet's weights (exact zeros in biases, ones in norm scales), with those weights noised as
profiling now times them (`ufo_nas.latency.weights.trained_like_`), and with the shipped
trained supernet's where there is one, built by each engine and timed interleaved in one
process (p25 of `--rounds` rounds, 2 timed calls a visit, batch 1, 2 threads). For OpenVINO
it also counts the ops of each compiled model (`get_runtime_model`): what the compiler kept.

    python tools/check_timed_weights.py [--space ufo_vit_tiny] [--engines onnxruntime:fp32,...]
        [--rounds 15] [--out FILE]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from results_io import write_results

from ufo_nas import load_space
from ufo_nas.backends import Runner, Target, get_backend
from ufo_nas.checkpoint import load_supernet, shipped_supernet
from ufo_nas.errors import UfoError
from ufo_nas.hardware import host_fingerprint, host_id
from ufo_nas.latency.measure import validation_subnets
from ufo_nas.latency.timing import time_interleaved
from ufo_nas.latency.weights import TIMED_WEIGHTS, trained_like_
from ufo_nas.onnx_io import export_for_backend
from ufo_nas.supernet import SuperViT, extract

ROOT = Path(__file__).resolve().parents[1]
ENGINES = "onnxruntime:fp32,onnxruntime:int8,openvino:fp32,openvino:bf16,openvino:int8"
THREADS = 2


def parse_engines(text: str) -> list[tuple[str, str]]:
    engines = [tuple(item.split(":")) for item in text.split(",")]
    if any(len(engine) != 2 for engine in engines):
        raise SystemExit(f"--engines: expected backend:precision pairs, got '{text}'")
    for backend, _ in engines:
        get_backend(backend)  # an unknown one: a BackendError naming the allowed ones
    return engines  # type: ignore[return-value]


def openvino_ops(engine, exported) -> int | None:
    """Ops of the OpenVINO model `exported` as compiled for `engine`'s target (what the
    compiler kept); None for another backend."""
    if engine.name != "openvino":
        return None
    return len(engine.compiled_model(exported.files[0]).get_runtime_model().get_ops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="ufo_vit_tiny")
    parser.add_argument("--engines", default=ENGINES, help=f"default {ENGINES}")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    engines = parse_engines(args.engines)
    started = time.time()
    space = load_space(args.space)
    spec = space.spec
    torch.manual_seed(0)
    weights = {"init": SuperViT(spec).eval()}
    torch.manual_seed(0)
    weights["noised"] = trained_like_(SuperViT(spec)).eval()
    checkpoint = shipped_supernet(space)
    if checkpoint:
        weights["trained"] = load_supernet(checkpoint, space).eval()
    by_tasks = sorted(validation_subnets(space, 40, 0), key=lambda pair: len(pair[1]))
    picks = [by_tasks[0], by_tasks[len(by_tasks) // 2], by_tasks[-1]]
    images = torch.randn(1, spec.in_chans, spec.image_size, spec.image_size).numpy()
    calibration = torch.randn(8, spec.in_chans, spec.image_size, spec.image_size).numpy()
    names = list(weights)
    lines = [
        f"# Timed weights: {args.space}",
        "",
        f"Command: `{shlex.join(['python', 'tools/check_timed_weights.py', *sys.argv[1:]])}`  ",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; host "
        f"{host_id(host_fingerprint())}; {THREADS} threads, batch 1, p25 of {args.rounds} "
        "interleaved rounds (2 timed calls a visit, after warm ones), one process.  ",
        f"Weights: init (a fresh supernet, seed 0), noised ({TIMED_WEIGHTS}), trained (the "
        "shipped supernet, where there is one). Subnets: the validation subnets serving the "
        "fewest tasks, the middle one and the most tasks (seed 0).",
        "",
        "| engine | subnet | "
        + " | ".join(f"{n} ms" for n in names)
        + " | "
        + " | ".join(f"{n} / init" for n in names[1:])
        + " | OpenVINO ops: "
        + " / ".join(names)
        + " |",
        "|---|---|" + "---|" * (2 * len(names) - 1) + "---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for backend, precision in engines:
            engine = get_backend(backend)(Target("cpu", precision, THREADS, {"batch": 1}))
            runners: dict[str, Runner] = {}
            ops: dict[str, int | None] = {}
            for k, (arch, tasks) in enumerate(picks):
                for name, supernet in weights.items():
                    folder = Path(tmp) / f"{backend}-{precision}-{k}-{name}"
                    folder.mkdir()
                    graph = export_for_backend(extract(supernet, arch, tasks), folder / "m.onnx", 1)
                    exported = engine.export(graph, folder, calibration)
                    runners[f"{k}-{name}"] = exported.runner
                    ops[f"{k}-{name}"] = openvino_ops(engine, exported)
            timed = time_interleaved(runners, dict.fromkeys(runners, images), args.rounds, 2)
            for k, (arch, tasks) in enumerate(picks):
                ms = [timed[f"{k}-{n}"].ms for n in names]
                counts = [ops[f"{k}-{n}"] for n in names]
                serves = f"{len(tasks)} task{'s' if len(tasks) > 1 else ''}"
                lines.append(
                    f"| {backend} {precision} | {arch.to_string()} ({serves}) | "
                    + " | ".join(f"{t:.3f}" for t in ms)
                    + " | "
                    + " | ".join(f"{t / ms[0]:.3f}" for t in ms[1:])
                    + " | "
                    + (" / ".join(str(c) for c in counts) if counts[0] is not None else "-")
                    + " |"
                )
            del runners
    lines += ["", f"{time.time() - started:.0f} s in all."]
    default = ROOT / "tools" / "results" / f"check_timed_weights-{args.space}.md"
    write_results(lines, args.out or default)


if __name__ == "__main__":
    try:
        main()
    except UfoError as exc:  # an unknown space or backend, a precision this CPU lacks
        sys.exit(f"error: {exc}")
