"""The weights a timed model carries.

A freshly initialised model holds exact zeros (biases, norm shifts) and ones (norm scales),
and a compiler may drop the ops they feed, which a trained model keeps: OpenVINO ran a tiny
subnet's init weights 4-8% faster in fp32 and bf16 than the same subnet with the shipped
trained weights or with noise added, and 1-4% slower in int8 (ONNX Runtime within 2%, TVM
within 2.5%; ViT-Base subnets within 1.3% on every OpenVINO precision, where the dropped ops
weigh little beside the matmuls). So a model is timed with noise on every parameter: at the
speed of a trained one.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

NOISE_STD = 0.02
TIMED_WEIGHTS = (
    f"initialised, then N(0, {NOISE_STD}) noise on every parameter (as trained: no exact 0 or 1)"
)

# in the names of the folders that keep timed models' builds, so no build of other weights
# is reused
WEIGHTS_TAG = "w" + hashlib.sha1(TIMED_WEIGHTS.encode()).hexdigest()[:6]


def trained_like_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Add seeded N(0, NOISE_STD) noise to every parameter of `module` in place, so none
    holds the exact zeros and ones of its initialisation; returns `module`."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=param.dtype)
            param.add_(noise.mul_(NOISE_STD))
    return module
