"""Elastic layers: timm's Attention and Mlp whose leading heads / hidden units run alone.

Like once-for-all's dynamic ops, each layer returns the prefix slice of its weights for an
active size (`active_weights`); the supernet runs with those slices and extraction copies
them into static timm layers, so both compute the same thing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Attention, Mlp
from torch import Tensor


class ElasticAttention(Attention):
    """Multi-head self-attention that can run its first `heads` heads only."""

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


class ElasticMlp(Mlp):
    """Two-layer MLP that can run its first `hidden` hidden units only."""

    def active_weights(self, hidden: int) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        fc1_b = self.fc1.bias[:hidden] if self.fc1.bias is not None else None
        return self.fc1.weight[:hidden], fc1_b, self.fc2.weight[:, :hidden], self.fc2.bias

    def forward_active(self, x: Tensor, hidden: int) -> Tensor:
        fc1_w, fc1_b, fc2_w, fc2_b = self.active_weights(hidden)
        x = self.drop1(self.act(F.linear(x, fc1_w, fc1_b)))
        return self.drop2(F.linear(x, fc2_w, fc2_b))


def copy_into(linear: torch.nn.Linear, weight: Tensor, bias: Tensor | None) -> None:
    """Copy a (sliced) weight and bias into a static Linear of the same shape."""
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
