"""SuperViT: the UFO multi-task supernet.

Each block has elastic heads and MLP width; its FFN is, per task, the shared MLP, the
task's own MLP, or a learned mix of both (UFO 2.0's Task-MoE): the mix weights are the
softmax of per-task router logits, sampled with Gumbel noise in training and exact at
eval. Depth is elastic (the first `depth` blocks run). Module names follow timm's
VisionTransformer, so a timm ViT checkpoint loads into the shared trunk. Like once-for-all,
each block hands back its static subnet layer (`SuperBlock.get_active_subnet`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from timm.layers import DropPath, resample_abs_pos_embed, trunc_normal_
from torch import Tensor, nn

from ufo_nas.errors import CheckpointError
from ufo_nas.space import Arch, SearchSpace
from ufo_nas.spec import SpaceSpec
from ufo_nas.supernet.elastic import ElasticAttention, ElasticMlp
from ufo_nas.supernet.layers import TokenEmbedding, layer_norm
from ufo_nas.supernet.subnet import Branch, SubnetLayer, mlp_key, mlp_owners


class SuperBlock(nn.Module):
    """Pre-norm transformer block with elastic attention and a per-task FFN choice."""

    def __init__(self, spec: SpaceSpec, layer: int, drop_path: float = 0.0):
        super().__init__()
        dim = spec.embed_dim
        self.tasks = spec.task_names
        self.norm1 = layer_norm(dim)
        self.attn = ElasticAttention(
            dim,
            num_heads=spec.max_heads(layer),
            attn_head_dim=spec.head_dim,
            qkv_bias=spec.qkv_bias,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = layer_norm(dim)
        hidden = spec.max_hidden(layer)
        self.mlp = ElasticMlp(dim, hidden)
        self.task_mlps = nn.ModuleDict(
            {
                t.name: ElasticMlp(dim, hidden)
                for t in spec.tasks
                if set(t.paths[layer]) & {"task", "mix"}
            }
        )
        self.router_logits = nn.Parameter(torch.zeros(len(self.tasks), 2))
        self.gumbel_tau = 1.0

    def mix_weights(self, task: str, exact: bool = False) -> Tensor:
        """(shared, task) weights of the Task-MoE mix for `task`: Gumbel-sampled in
        training unless `exact`, else the router's softmax."""
        logits = self.router_logits[self.tasks.index(task)]
        if self.training and not exact:
            return F.gumbel_softmax(logits, tau=self.gumbel_tau)
        return logits.softmax(-1)

    def owned_mlp(self, owner: str | None) -> ElasticMlp:
        """The shared MLP (owner None) or the task MLP of `owner`."""
        return self.mlp if owner is None else self.task_mlps[owner]

    def ffn(self, y: Tensor, hidden: int, path: str, task: str) -> Tensor:
        if path == "shared":
            return self.mlp.forward_active(y, hidden)
        task_out = self.task_mlps[task].forward_active(y, hidden)
        if path == "task":
            return task_out
        w = self.mix_weights(task)
        return w[0] * self.mlp.forward_active(y, hidden) + w[1] * task_out

    def get_active_subnet(
        self, heads: int, hidden: int, branches: tuple[Branch, ...]
    ) -> SubnetLayer:
        """The static layer of `heads` heads and `hidden` FFN units for `branches`, holding
        copies of the active weights; each mix branch gets the router's softmax."""
        mlps = {
            mlp_key(owner): self.owned_mlp(owner).get_active_subnet(hidden)
            for owner in mlp_owners(branches)
        }
        mix = {
            b.task: self.mix_weights(b.task, exact=True).detach()
            for b in branches
            if b.path == "mix"
        }
        norm1, norm2 = copy.deepcopy(self.norm1), copy.deepcopy(self.norm2)
        return SubnetLayer(branches, norm1, self.attn.get_active_subnet(heads), norm2, mlps, mix)

    def forward(self, x: Tensor, heads: int, hidden: int, path: str, task: str) -> Tensor:
        x = x + self.drop_path(self.attn.forward_active(self.norm1(x), heads))
        return x + self.drop_path(self.ffn(self.norm2(x), hidden, path, task))


class SuperViT(TokenEmbedding):
    """The supernet of a space; `supernet(images, arch, task)` runs one subnet."""

    def __init__(self, spec: SpaceSpec):
        super().__init__(spec)
        self.spec = spec
        self.space = SearchSpace(spec)
        dim = spec.embed_dim
        rates = torch.linspace(0, spec.drop_path_rate, spec.max_depth).tolist()
        self.blocks = nn.ModuleList(SuperBlock(spec, i, rate) for i, rate in enumerate(rates))
        self.norm = layer_norm(dim)
        self.necks = nn.ModuleDict({t.name: nn.Linear(dim, t.embed_dim) for t in spec.tasks})
        self._init_weights()

    def _init_weights(self) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def set_gumbel_tau(self, tau: float) -> None:
        """Temperature of the router's Gumbel-softmax in training."""
        for block in self.blocks:
            block.gumbel_tau = tau

    def forward_features(self, images: Tensor, arch: Arch, task: str) -> Tensor:
        """Normalised tokens (B, 1 + patches, embed_dim) of `arch` for `task`."""
        self.space.check(arch)
        paths = arch.task_paths(task)
        x = self.embed(images)
        for i in range(arch.depth):
            hidden = self.spec.hidden_dim(arch.mlp_ratio[i])
            x = self.blocks[i](x, arch.num_heads[i], hidden, paths[i], task)
        return self.norm(x)

    def forward(self, images: Tensor, arch: Arch, task: str) -> Tensor:
        """The task embedding (B, task embed_dim) of subnet `arch`."""
        return self.necks[task](self.forward_features(images, arch, task)[:, 0])

    def load_timm_state_dict(self, state_dict: dict[str, Tensor]) -> list[str]:
        """Initialise the trunk from a timm VisionTransformer state dict.

        Every task MLP starts as a copy of the shared one; the position embedding is
        resampled when the checkpoint's patch grid differs. Returns the checkpoint keys
        that were not used (e.g. the classifier head).
        """
        own = self.state_dict()
        wanted = [k for k in own if not k.startswith(("necks.", "blocks.")) or _is_trunk_key(k)]
        missing = [k for k in wanted if k not in state_dict]
        if missing:
            raise CheckpointError(
                f"not a timm ViT state dict for this space: missing {len(missing)} keys, "
                f"e.g. {missing[0]!r}"
            )
        loaded = {}
        grid = self.spec.image_size // self.spec.patch_size
        for key in wanted:
            value = state_dict[key]
            if key == "pos_embed" and value.shape != own[key].shape:
                value = resample_abs_pos_embed(value, new_size=[grid, grid], num_prefix_tokens=1)
            if value.shape != own[key].shape:
                raise CheckpointError(
                    f"checkpoint tensor {key!r} has shape {tuple(value.shape)}, this space "
                    f"needs {tuple(own[key].shape)}"
                )
            loaded[key] = value
        with torch.no_grad():
            for key, value in loaded.items():
                own[key].copy_(value)
            for block in self.blocks:
                for task_mlp in block.task_mlps.values():
                    task_mlp.load_state_dict(block.mlp.state_dict())
        return sorted(set(state_dict) - set(wanted))


def _is_trunk_key(key: str) -> bool:
    """Block keys present in a timm ViT: norms, attention and the shared MLP."""
    part = key.split(".")[2]
    return part in {"norm1", "attn", "norm2", "mlp"}
