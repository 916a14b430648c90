"""`ufo export`: one subnet as a deployable engine, verified against PyTorch and re-timed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ufo_nas.backends import EXPORT_FORMATS
from ufo_nas.cli import args as shared


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `export`."""
    line = "export a subnet as an engine, verified and re-timed"
    p = shared.add_command(subparsers, "export", cmd_export, line)
    p.add_argument("--pareto", help="a ufo-search result (folder or pareto.json)")
    p.add_argument("--row", type=int, help="with --pareto: the row (index column of pareto.csv)")
    shared.add_arch(p, required=False, note="instead of --pareto")
    shared.add_space(p, note="with --arch")
    shared.add_task(p)
    checkpoint_help = "supernet checkpoint (default: the space's shipped one, else untrained)"
    p.add_argument("--checkpoint", help=checkpoint_help)
    device_note = "its backend is the format, its table gives the prediction (default with "
    shared.add_device(p, note=device_note + "--pareto: the front's device)")
    backend_help = "instead of --device: a format, run here"
    p.add_argument("--backend", choices=EXPORT_FORMATS, help=backend_help)
    shared.add_precision(p, note="overrides the device's")
    shared.add_number(p, "--threads", 0, "override the threads; 0 keeps the device's")
    p.add_argument("--calibration", help="image folder for int8 post-training quantisation")
    p.add_argument("--simplify", action="store_true", help="constant-fold the ONNX graph first")
    p.add_argument("--no-time", action="store_true", help="skip re-timing")
    chunks_help = "chunks the export is timed in, each against the anchor; the median is reported"
    shared.add_number(p, "--timing-chunks", 3, chunks_help, shared.positive_int)
    shared.add_opset(p)
    shared.add_out(p, "output folder (must not exist or be empty)", required=True)


def cmd_export(args: argparse.Namespace) -> None:
    """Export one subnet (a row of a ufo-search result, or an arch string) of a supernet
    checkpoint for a device: ONNX, an ONNX Runtime optimised model (int8: dynamic
    quantisation), OpenVINO IR (fp32, fp16, int8 with NNCF on --calibration images), a TVM
    library (MetaSchedule-tuned, reusing the profiling database) or a TensorRT plan. The
    artefact is loaded back, checked against PyTorch (cosine >= 0.999, int8 >= 0.98) and timed
    like ufo-profile, against the device table's prediction and torch eager (a reduced
    precision also beside its fp32 build: it notes where the precision does not pay on this
    CPU); manifest.json records it all.

    examples:
      ufo-export --pareto runs/search/ufo_vit_base-cpu-openvino-face --row 5 --out m
      ufo-export --space ufo_vit_tiny --arch smallest --task face --backend onnxruntime \\
          --precision int8 --out tiny-int8
    """
    import torch

    from ufo_nas.checkpoint import load_supernet, shipped_supernet
    from ufo_nas.data import read_image_folder
    from ufo_nas.export import check_export, export_subject, export_subnet, export_target
    from ufo_nas.hardware import load_profile
    from ufo_nas.latency.weights import TIMED_WEIGHTS, trained_like_
    from ufo_nas.supernet import SuperViT

    space, arch, tasks, front_device = export_subject(
        args.space, args.arch, args.task, args.pareto, args.row, args.device
    )
    device = args.device or (front_device if not args.backend else None)
    where = export_target(
        load_profile(device) if device else None, args.backend, args.precision, args.threads
    )
    out = check_export(where, args.calibration is not None, args.out)  # before any work
    checkpoint = args.checkpoint or shipped_supernet(space)
    if checkpoint:
        supernet = load_supernet(checkpoint, space)
        weights = {"checkpoint": str(checkpoint), "trained": True}
    else:
        print(
            "warning: no --checkpoint and none shipped for this space: exporting from a "
            "freshly initialised supernet (seed 0) with noise as trained weights have; the "
            "weights are untrained, fine for latency trials only",
            file=sys.stderr,
        )
        torch.manual_seed(0)
        supernet = trained_like_(SuperViT(space.spec))
        weights = {"checkpoint": None, "trained": False, "init_seed": 0, "noise": TIMED_WEIGHTS}
    calibration = None
    if args.calibration:
        calibration = read_image_folder(args.calibration, space.spec).numpy()
    manifest = export_subnet(
        supernet,
        space,
        arch,
        tasks,
        where,
        out,
        weights,
        simplify=args.simplify,
        calibration=calibration,
        time_it=not args.no_time,
        timing_chunks=args.timing_chunks,
        opset=args.opset,
        progress=lambda what: print(f"... {what}", file=sys.stderr),
    )
    _print_manifest(manifest, out)


def _print_manifest(manifest: dict[str, Any], out: Path) -> None:
    """What was written, its verification and its timing, from the manifest."""
    from ufo_nas.export import MANIFEST

    art, check = manifest["artefact"], manifest["verification"]
    sub = manifest["subnet"]
    print(
        f"exported {sub['arch']} ({', '.join(sub['tasks'])}) as {art['format']} "
        f"{art['precision']} -> {out}"
    )
    for f in art["files"]:
        print(f"  {f['path']}  {f['bytes'] / 1e6:.2f} MB")
    if art["runs_here"] != "as built":
        print(f"  note: {art['runs_here']}")
    print(
        f"verification against PyTorch on {check['images']} images ({check['inputs']}), "
        f"cosine >= {check['min_cosine_required']}: passed"
    )
    for task, o in check["outputs"].items():
        print(f"  {task}: min cosine {o['min_cosine']:.6f}, max abs diff {o['max_abs_diff']:.2e}")
    t = manifest["latency"]
    if t:
        chunks = t.get("chunks", [])
        of = f", the median of {len(chunks)} chunks" if len(chunks) > 1 else ""
        line = (
            f"latency (batch {t['batch']}, p25 of {t['rounds']} rounds{of}): "
            f"{t['measured_ms']:.3f} ms"
        )
        if "scaled_ms" in t:
            line += f" ({t['scaled_ms']:.3f} ms on the table's scale)"
        print(line)
        if "predicted_ms" in t:
            print(
                f"  predicted {t['predicted_ms']:.3f} ms from the {t['predicted_from']}: "
                f"error {t['prediction_error_pct']:+.1f}%"
                + (
                    " (each chunk: "
                    + ", ".join(f"{c['prediction_error_pct']:+.1f}%" for c in chunks)
                    + ")"
                    if len(chunks) > 1
                    else ""
                )
            )
        else:
            print("  no prediction: the target is not a hardware profile's measured setup")
        if "other_host" in t:
            print(f"  note: {t['other_host']}")
        if "fp32_ms" in t:
            print(
                f"  the fp32 build, timed beside it: {t['fp32_ms']:.3f} ms: "
                f"{art['precision']} {t['speedup_vs_fp32']:.2f}x"
            )
        if "precision_note" in t:
            print(f"  note: {t['precision_note']}")
        noisy = ""
        if t.get("speedup_noisy"):
            noisy = (
                f" (noisy: timing rounds spread up to "
                f"{100 * max(t['spread'], t['torch_eager_spread']):.0f}%, over 20%; "
                "the machine is loaded)"
            )
        print(f"  torch eager {t['torch_eager_ms']:.3f} ms: {t['speedup_vs_torch']:.2f}x{noisy}")
    print(f"manifest {out / MANIFEST}")
