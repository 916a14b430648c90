"""An artefact's outputs checked against the PyTorch subnet it was built from.

Every output of every image must reach a cosine similarity of MIN_COSINE[precision] with
PyTorch's; the images are calibration images the quantiser never saw (when there are any)
or seeded standard-normal ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ufo_nas.backends import Runner
from ufo_nas.errors import UfoError
from ufo_nas.spec import SpaceSpec
from ufo_nas.supernet import SubnetViT

MIN_COSINE = {"fp32": 0.999, "fp16": 0.999, "bf16": 0.999, "int8": 0.98}  # per image, every output
VERIFY_IMAGES, VERIFY_SEED = 8, 0


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of a and b (rows flattened); 1 where either is zero."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-300), 1.0)


def held_out(n: int, count: int) -> np.ndarray:
    """Indices of `count` of `n` calibration images kept for verification, spread over the set."""
    return np.linspace(0, n - 1, count).round().astype(int)


def verification_images(spec: SpaceSpec, calibration: np.ndarray | None, batch: int) -> np.ndarray:
    """Held-out calibration images when there are any, else seeded standard-normal ones;
    at least VERIFY_IMAGES, a whole number of batches (engines may fix their batch)."""
    count = batch * -(-VERIFY_IMAGES // batch)
    if calibration is not None:
        if len(calibration) < 2 * count:
            raise UfoError(
                f"calibration needs at least {2 * count} images ({count} are held out to "
                f"verify), got {len(calibration)}"
            )
        return np.ascontiguousarray(calibration[held_out(len(calibration), count)])
    generator = torch.Generator().manual_seed(VERIFY_SEED)
    shape = (count, spec.in_chans, spec.image_size, spec.image_size)
    return torch.randn(shape, generator=generator).numpy()


def verify(
    runner: Runner, subnet: SubnetViT, images: np.ndarray, batch: int, precision: str
) -> dict[str, Any]:
    """Run the artefact and the PyTorch subnet on `images` (in batches of `batch`) and
    compare each task's output: min cosine similarity over images, max abs difference."""
    with torch.inference_mode():
        want = subnet(torch.from_numpy(images))
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    got: list[list[np.ndarray]] = [[] for _ in want]
    for start in range(0, len(images), batch):
        outs = list(runner(images[start : start + batch]))
        if len(outs) != len(want):
            raise UfoError(f"the artefact gave {len(outs)} outputs; the subnet has {len(want)}")
        for k, out in enumerate(outs):
            got[k].append(np.asarray(out, dtype=np.float32))
    outputs, passed = {}, True
    bound = MIN_COSINE[precision]
    for task, reference, pieces in zip(subnet.tasks, want, got):
        reference, actual = reference.numpy(), np.concatenate(pieces)
        if actual.shape != reference.shape:
            raise UfoError(
                f"the artefact's '{task}' output has shape {list(actual.shape)}, "
                f"PyTorch's {list(reference.shape)}"
            )
        cosine = float(cosine_rows(actual, reference).min())
        passed &= cosine >= bound
        outputs[task] = {
            "min_cosine": round(cosine, 7),
            "max_abs_diff": float(np.abs(actual - reference).max()),
            "max_abs_reference": float(np.abs(reference).max()),
        }
    return {
        "images": len(images),
        "min_cosine_required": bound,
        "passed": bool(passed),
        "outputs": outputs,
    }


def failure(verification: dict[str, Any], what: str) -> str | None:
    """One line naming the worst output of a failed verification of `what`; None if it passed."""
    if verification["passed"]:
        return None
    task, worst = min(verification["outputs"].items(), key=lambda kv: kv[1]["min_cosine"])
    return (
        f"{what} output '{task}' differs from PyTorch: cosine {worst['min_cosine']:.5f} "
        f"< {verification['min_cosine_required']}"
    )
