"""Static pieces shared by the supernet, its subnets and the latency operator modules."""

from __future__ import annotations

import torch
from timm.layers import PatchEmbed
from torch import Tensor, nn

from ufo_nas.spec import SpaceSpec

LAYER_NORM_EPS = 1e-6  # timm's ViT value


def layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=LAYER_NORM_EPS)


class TokenEmbedding(nn.Module):
    """Base class of modules that embed images as timm's VisionTransformer does.

    `patch_embed`, `cls_token` and `pos_embed` are attributes of the subclass itself (not of
    a submodule), so their state-dict keys are top-level, as in a timm ViT checkpoint.
    """

    def __init__(self, spec: SpaceSpec):
        super().__init__()
        dim = spec.embed_dim
        self.patch_embed = PatchEmbed(spec.image_size, spec.patch_size, spec.in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, spec.num_tokens, dim))

    def embed(self, images: Tensor) -> Tensor:
        """Tokens (B, 1 + patches, embed_dim): the class token, then the patches, plus positions."""
        x = self.patch_embed(images)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
