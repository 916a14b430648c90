"""Roofline estimates for devices with no measured table, from their published peaks.

Each operator takes max(FLOPs / peak compute, bytes moved / memory bandwidth): weights
once, activations read and written once. Real kernels reach a fraction of either peak, so
these are optimistic lower bounds; tables built from them say `measured: false`, and every
plot and CLI line that shows them says "estimate". A measured table replaces them.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ufo_nas.hardware import HardwareProfile
from ufo_nas.latency.operator_set import Operator, space_operators
from ufo_nas.latency.table import LatencyTable, OperatorRow
from ufo_nas.space import SearchSpace
from ufo_nas.spec import SpaceSpec

BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


def operator_work(spec: SpaceSpec, op: Operator) -> tuple[int, int, int]:
    """(MACs, weight elements, activation elements read + written) for one image."""
    E, N, hd = spec.embed_dim, spec.num_tokens, spec.head_dim
    if op.kind == "stem":
        patch = spec.in_chans * spec.patch_size**2
        return (
            spec.num_patches * E * patch,
            E * patch + E + N * E,
            spec.in_chans * spec.image_size**2 + N * E,
        )
    if op.kind == "attn":
        width = op.heads * hd
        macs = N * E * 3 * width + N * width * E + 2 * N * N * width
        return macs, 4 * E * width, 2 * N * E + 3 * N * width + op.heads * N * N
    if op.kind == "ffn":
        m = op.hidden
        return op.arity * 2 * N * E * m, op.arity * 2 * E * m, 2 * N * E + op.arity * N * m
    neck = spec.task(op.task).embed_dim
    return E * neck, E * neck, N * E + neck


def roofline_table(space: SearchSpace, profile: HardwareProfile) -> LatencyTable:
    spec = space.spec
    size = BYTES[profile.precision]
    rows = {}
    for op in space_operators(spec):
        macs, weights, activations = operator_work(spec, op)
        flops = 2 * macs * profile.batch
        moved = size * (weights + activations * profile.batch)
        ms = 1e3 * max(flops / (profile.peak_tflops * 1e12), moved / (profile.memory_gbps * 1e9))
        rows[op.key] = OperatorRow(op.key, ms, ms, 0.0, 1.0)
    return LatencyTable(
        space=space.name,
        space_fingerprint=spec.fingerprint(),
        device=profile.name,
        measured=False,
        provenance={
            "estimate": "roofline from published peaks",
            "peak_tflops": profile.peak_tflops,
            "memory_gbps": profile.memory_gbps,
            "peak_source": profile.peak_source,
            "precision": profile.precision,
            "batch": profile.batch,
            "date": datetime.now(timezone.utc).date().isoformat(),
        },
        operators=rows,
        calibration={"model": "sum", "a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0},
    )
