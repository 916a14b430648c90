"""Elastic layers: timm's Attention and Mlp whose leading heads / hidden units run alone.

Like once-for-all's dynamic ops, each layer returns the prefix slice of its weights for an
active size (`active_weights`); the supernet runs with those slices, and `get_active_subnet`
copies them into a static timm layer of that size, so both compute the same thing. Options
of timm's layers that `forward_active` does not implement are refused at construction.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Attention, Mlp
from torch import Tensor, nn

from ufo_nas.errors import SpecError

# Per layer: the parts forward_active applies (any other part must be an Identity), and the
# timm options that add the parts it does not, for the error message.
ATTENTION_PARTS = {
    "qkv": nn.Linear,
    "attn_drop": nn.Dropout,
    "proj": nn.Linear,
    "proj_drop": nn.Dropout,
}
ATTENTION_OPTIONS = {
    "q_norm": "qk_norm",
    "k_norm": "qk_norm",
    "norm": "scale_norm",
    "gate": "gated",
}
MLP_PARTS = {
    "fc1": nn.Linear,
    "act": nn.Module,
    "drop1": nn.Dropout,
    "fc2": nn.Linear,
    "drop2": nn.Dropout,
}
MLP_OPTIONS = {"norm": "norm_layer", "fc1": "use_conv", "fc2": "use_conv"}


class ElasticAttention(Attention):
    """Multi-head self-attention that can run its first `heads` heads only.

    `options` are timm Attention's keyword arguments; those adding a part that
    `forward_active` skips (qk_norm, scale_norm, gated) raise SpecError.
    """

    def __init__(self, dim: int, num_heads: int, **options: Any):
        super().__init__(dim, num_heads=num_heads, **options)
        self.options = options
        refuse_unimplemented(self, ATTENTION_PARTS, ATTENTION_OPTIONS)

    def active_weights(self, heads: int) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """(qkv weight, qkv bias, proj weight, proj bias) of the first `heads` heads.

        qkv rows are laid out [q | k | v] x heads x head_dim (timm's layout), so the
        active rows are the first `heads` heads of each of q, k and v.
        """
        hd, dim = self.head_dim, self.qkv.in_features
        qkv_w = self.qkv.weight.view(3, self.num_heads, hd, dim)[:, :heads].reshape(-1, dim)
        qkv_b = None
        if self.qkv.bias is not None:
            qkv_b = self.qkv.bias.view(3, self.num_heads, hd)[:, :heads].reshape(-1)
        return qkv_w, qkv_b, self.proj.weight[:, : heads * hd], self.proj.bias

    def forward_active(self, x: Tensor, heads: int) -> Tensor:
        B, N, _ = x.shape
        qkv_w, qkv_b, proj_w, proj_b = self.active_weights(heads)
        qkv = F.linear(x, qkv_w, qkv_b).reshape(B, N, 3, heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0
        )
        out = out.transpose(1, 2).reshape(B, N, heads * self.head_dim)
        return self.proj_drop(F.linear(out, proj_w, proj_b))

    def get_active_subnet(self, heads: int) -> Attention:
        """A static timm Attention of `heads` heads holding copies of the active weights."""
        options = {**self.options, "attn_head_dim": self.head_dim}
        attn = Attention(self.qkv.in_features, num_heads=heads, **options).to(self.qkv.weight)
        qkv_w, qkv_b, proj_w, proj_b = self.active_weights(heads)
        copy_into(attn.qkv, qkv_w, qkv_b)
        copy_into(attn.proj, proj_w, proj_b)
        return attn


class ElasticMlp(Mlp):
    """Two-layer MLP that can run its first `hidden` hidden units only.

    `options` are timm Mlp's keyword arguments; norm_layer and use_conv raise SpecError.
    """

    def __init__(self, in_features: int, hidden_features: int, **options: Any):
        super().__init__(in_features, hidden_features, **options)
        self.options = options
        refuse_unimplemented(self, MLP_PARTS, MLP_OPTIONS)

    def active_weights(self, hidden: int) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """(fc1 weight, fc1 bias, fc2 weight, fc2 bias) of the first `hidden` hidden units."""
        fc1_b = self.fc1.bias[:hidden] if self.fc1.bias is not None else None
        return self.fc1.weight[:hidden], fc1_b, self.fc2.weight[:, :hidden], self.fc2.bias

    def forward_active(self, x: Tensor, hidden: int) -> Tensor:
        fc1_w, fc1_b, fc2_w, fc2_b = self.active_weights(hidden)
        x = self.drop1(self.act(F.linear(x, fc1_w, fc1_b)))
        return self.drop2(F.linear(x, fc2_w, fc2_b))

    def get_active_subnet(self, hidden: int) -> Mlp:
        """A static timm Mlp of `hidden` hidden units holding copies of the active weights."""
        mlp = Mlp(self.fc1.in_features, hidden, **self.options).to(self.fc1.weight)
        fc1_w, fc1_b, fc2_w, fc2_b = self.active_weights(hidden)
        copy_into(mlp.fc1, fc1_w, fc1_b)
        copy_into(mlp.fc2, fc2_w, fc2_b)
        return mlp


def refuse_unimplemented(
    layer: nn.Module, parts: dict[str, type[nn.Module]], options: dict[str, str]
) -> None:
    """Raise SpecError unless each part of `layer` is of its type in `parts`, or Identity."""
    for name, child in layer.named_children():
        if not isinstance(child, parts.get(name, nn.Identity)):
            option = options.get(name, f"option that adds {name!r}")
            raise SpecError(
                f"{type(layer).__name__} does not implement timm's {option} "
                f"(its {name!r} is a {type(child).__name__})"
            )


def copy_into(linear: nn.Linear, weight: Tensor, bias: Tensor | None) -> None:
    """Copy a (sliced) weight and bias into a static Linear of the same shape."""
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
