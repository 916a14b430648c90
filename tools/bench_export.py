"""P6: exported engines of ufo_vit_base Pareto subnets against torch eager, same run.
Writes tools/results/bench_export.md.

Three subnets from a face search on cpu-onnxruntime (the fastest, the middle and the best
predicted of the front) are exported by `ufo export`'s code to each CPU format here, each
loaded back, verified against PyTorch and timed (p25 of 21 rounds, batch 1), with torch
eager timed right after in a round of its own (timing eager interleaved with ONNX Runtime or
OpenVINO slows both). Weights are a freshly initialised supernet's (latency does not depend
on them, though int8 error does: with untrained weights it is no guide to a trained model's);
int8 OpenVINO is calibrated on ORL face images. Goal: the best CPU backend >= 1.5x faster
than torch eager.

    python tools/bench_export.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from results_io import write_results

from ufo_nas import load_space
from ufo_nas.data import read_image_folder
from ufo_nas.export import MANIFEST, ExportVerificationError, export_subnet, export_target
from ufo_nas.hardware import host_fingerprint, load_profile
from ufo_nas.search import prepare, search_devices
from ufo_nas.supernet import SuperViT

ROOT = Path(__file__).resolve().parents[1]
ORL = ROOT.parent / "shared" / "datasets" / "orl_faces"
TARGETS = (  # (label, profile, backend, precision)
    ("ONNX Runtime fp32", "cpu-onnxruntime", None, None),
    ("ONNX Runtime int8 (dynamic)", "cpu-onnxruntime", None, "int8"),
    ("OpenVINO fp32", "cpu-openvino", None, None),
    ("OpenVINO int8 (NNCF)", "cpu-openvino", None, "int8"),
)


def main() -> int:
    space = load_space("ufo_vit_base")
    front = search_devices(prepare(space, ["face"], ["cpu-onnxruntime"])).fronts[0]
    picks = {"fastest": 0, "middle": len(front.rows) // 2, "best": len(front.rows) - 1}
    torch.manual_seed(0)
    supernet = SuperViT(space.spec).eval()
    calibration = read_image_folder(ORL, space.spec, limit=128).numpy()
    host = host_fingerprint()
    rows, speedups = [], {label: [] for label, *_ in TARGETS}
    verified = {label: True for label, *_ in TARGETS}
    for name, index in picks.items():
        row = front.rows[index]
        arch = space.parse(row.arch)
        for label, profile, backend, precision in TARGETS:
            where = export_target(load_profile(profile), backend, precision)
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "out"
                try:
                    export_subnet(
                        supernet,
                        space,
                        arch,
                        ("face",),
                        where,
                        out,
                        {"checkpoint": None, "trained": False, "init_seed": 0},
                        calibration=calibration if precision == "int8" else None,
                    )
                except ExportVerificationError:
                    pass  # written all the same; the table says so
                manifest = json.loads((out / MANIFEST).read_text())
            t, verification = manifest["latency"], manifest["verification"]
            check = verification["outputs"]["face"]
            cosine = f"{check['min_cosine']:.5f}" + (
                "" if verification["passed"] else " (below the int8 bound 0.98)"
            )
            predicted = (
                f"{t['predicted_ms']:.1f} ({t['prediction_error_pct']:+.1f}%)"
                if "predicted_ms" in t
                else "-"
            )
            speedups[label].append(t["speedup_vs_torch"])
            verified[label] &= verification["passed"]
            rows.append(
                f"| {name} (row {index}, {row.params / 1e6:.1f}M params, "
                f"{row.macs / 1e9:.2f} GMACs) | {label} | {t['measured_ms']:.1f} | "
                f"{t['torch_eager_ms']:.1f} | {t['speedup_vs_torch']:.2f}x | {predicted} | "
                f"{cosine} | {time.perf_counter() - start:.0f} s |"
            )
            print(rows[-1], flush=True)
    summary = [
        f"| {label} | {np.median(v):.2f}x | {min(v):.2f}x | {'yes' if verified[label] else 'NO'} |"
        for label, v in speedups.items()
    ]
    passing = [label for label in speedups if verified[label]]
    best = max(passing, key=lambda k: np.median(speedups[k]))
    fastest = max(speedups, key=lambda k: np.median(speedups[k]))
    lines = [
        "# Exported engines against torch eager (P6)",
        "",
        "Command: `python tools/bench_export.py`  ",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {host['cpu']}, "
        f"{host['cores']} cores, ISA {', '.join(host['isa'])}. Batch 1, 2 threads, p25 of 21 "
        "rounds; eager timed right after each engine, in its own round. Predicted: the "
        "device's table on its reference scale (fp32 tables only).",
        "",
        "| subnet | engine | engine ms | torch eager ms | speed-up | predicted ms (error) "
        "| min cosine vs PyTorch | export + checks |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "| engine | median speed-up | worst | verified on all three |",
        "|---|---|---|---|",
        *summary,
        "",
        f"Best CPU engine that passed verification: {best}, median "
        f"{np.median(speedups[best]):.2f}x (goal >= 1.5x: "
        f"{'met' if np.median(speedups[best]) >= 1.5 else 'NOT met'}). Fastest of all: "
        f"{fastest}, median {np.median(speedups[fastest]):.2f}x"
        + ("" if verified[fastest] else ", but below its accuracy bound")
        + ".",
    ]
    write_results(lines, ROOT / "tools" / "results" / "bench_export.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
