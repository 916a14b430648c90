"""Each operator of a space (see `operator_set`) as a small module that runs alone.

Every layer has the same token shape, so a block variant is the same operator at any depth,
and attention and FFN operators can be timed as a chain of copies (distinct weights), which
amortises the backend's per-call overhead and keeps caches as warm as in a real subnet.
"""

from __future__ import annotations

import torch
from timm.layers import Attention, Mlp
from torch import Tensor, nn

from ufo_nas.latency.operator_set import Operator
from ufo_nas.latency.weights import trained_like_
from ufo_nas.spec import SpaceSpec
from ufo_nas.supernet.layers import TokenEmbedding, layer_norm


class _Stem(TokenEmbedding):
    def __init__(self, spec: SpaceSpec):
        super().__init__(spec)
        nn.init.normal_(self.pos_embed, std=0.02)

    def forward(self, images: Tensor) -> Tensor:
        return self.embed(images)


class _AttentionHalf(nn.Module):
    def __init__(self, spec: SpaceSpec, heads: int):
        super().__init__()
        self.norm1 = layer_norm(spec.embed_dim)
        self.attn = Attention(
            spec.embed_dim, num_heads=heads, attn_head_dim=spec.head_dim, qkv_bias=spec.qkv_bias
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.attn(self.norm1(x))


class _FfnHalf(nn.Module):
    def __init__(self, spec: SpaceSpec, hidden: int, arity: int):
        super().__init__()
        self.norm2 = layer_norm(spec.embed_dim)
        self.mlps = nn.ModuleList(Mlp(spec.embed_dim, hidden) for _ in range(arity))
        self.register_buffer("mix", torch.full((arity,), 1.0 / arity))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm2(x)
        if len(self.mlps) == 1:
            return x + self.mlps[0](y)
        return x + self.mix[0] * self.mlps[0](y) + self.mix[1] * self.mlps[1](y)


class _Head(nn.Module):
    def __init__(self, spec: SpaceSpec, task: str):
        super().__init__()
        self.norm = layer_norm(spec.embed_dim)
        self.neck = nn.Linear(spec.embed_dim, spec.task(task).embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.neck(self.norm(x)[:, 0])


def chainable(op: Operator) -> bool:
    """Whether the operator maps tokens to tokens, so copies of it can be chained."""
    return op.kind in ("attn", "ffn")


def build_operator(
    spec: SpaceSpec, op: Operator, batch: int = 1, copies: int = 1
) -> tuple[nn.Module, Tensor]:
    """The operator (`copies` chained copies if chainable) as an eval-mode module with random
    weights, noised as trained ones (`trained_like_`), and an example input."""
    if copies > 1:
        if not chainable(op):
            raise ValueError(f"operator '{op.key}' cannot be chained")
        chain = nn.Sequential(*(build_operator(spec, op, batch)[0] for _ in range(copies)))
        return chain.eval(), build_operator(spec, op, batch)[1]
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(batch, spec.num_tokens, spec.embed_dim, generator=generator)
    if op.kind == "stem":
        module: nn.Module = _Stem(spec)
        example = torch.randn(batch, spec.in_chans, spec.image_size, spec.image_size)
    elif op.kind == "attn":
        module, example = _AttentionHalf(spec, op.heads), tokens
    elif op.kind == "ffn":
        module, example = _FfnHalf(spec, op.hidden, op.arity), tokens
    elif op.kind == "head":
        module, example = _Head(spec, op.task), tokens
    else:
        raise ValueError(f"unknown operator kind '{op.kind}'")
    return trained_like_(module).eval(), example
