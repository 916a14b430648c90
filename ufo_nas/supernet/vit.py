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
        self.gumbel_hard = False

    def mix_weights(self, task: str, exact: bool = False) -> Tensor:
        """(shared, task) weights of the Task-MoE mix for `task`: Gumbel-sampled in
        training unless `exact` (one-hot with straight-through gradients if `gumbel_hard`),
        else the router's softmax."""
        logits = self.router_logits[self.tasks.index(task)]
        if self.training and not exact:
            return F.gumbel_softmax(logits, tau=self.gumbel_tau, hard=self.gumbel_hard)
        return logits.softmax(-1)

    def owned_mlp(self, owner: str | None) -> ElasticMlp:
        """The shared MLP (owner None) or the task MLP of `owner`."""
        return self.mlp if owner is None else self.task_mlps[owner]

    def ffn(
        self, y: Tensor, sizes: list[int], tasks: list[str], hidden: int, paths: list[str]
    ) -> Tensor:
        """The FFN of rows `y` that hold `sizes[i]` rows of `tasks[i]` in turn, each task on
        its path; the shared MLP runs once over every row that needs it."""
        chunks = y.split(sizes)
        need = [i for i, path in enumerate(paths) if path != "task"]
        shared = {}
        if need:
            rows = chunks[need[0]] if len(need) == 1 else torch.cat([chunks[i] for i in need])
            out = self.mlp.forward_active(rows, hidden).split([sizes[i] for i in need])
            shared = dict(zip(need, out))
        outs = []
        for i, (task, path) in enumerate(zip(tasks, paths)):
            if path == "shared":
                outs.append(shared[i])
                continue
            task_out = self.task_mlps[task].forward_active(chunks[i], hidden)
            if path == "task":
                outs.append(task_out)
            else:
                w = self.mix_weights(task)
                outs.append(w[0] * shared[i] + w[1] * task_out)
        return outs[0] if len(outs) == 1 else torch.cat(outs)

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

    def forward(
        self,
        x: Tensor,
        heads: int,
        hidden: int,
        paths: list[str],
        tasks: list[str],
        sizes: list[int] | None = None,
    ) -> Tensor:
        """Rows of x hold `sizes[i]` images of `tasks[i]` in turn (all rows if one task);
        attention runs over all of them at once, the FFN on each task's path."""
        sizes = sizes or [len(x)]
        x = x + self.drop_path(self.attn.forward_active(self.norm1(x), heads))
        return x + self.drop_path(self.ffn(self.norm2(x), sizes, tasks, hidden, paths))


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

    def set_gumbel(self, tau: float, hard: bool = False) -> None:
        """Temperature of the router's Gumbel-softmax in training, and whether it draws
        one-hot weights with straight-through gradients (UFO) or soft ones."""
        for block in self.blocks:
            block.gumbel_tau, block.gumbel_hard = tau, hard

    def forward_tasks(self, images: dict[str, Tensor], arch: Arch) -> dict[str, Tensor]:
        """UFO's heterogeneous batch: one trunk pass over every task's images, each task on
        its own FFN paths; the normalised tokens (B_task, 1 + patches, embed_dim) per task."""
        self.space.check(arch)
        tasks = list(images)
        sizes = [len(images[t]) for t in tasks]
        x = self.embed(images[tasks[0]] if len(tasks) == 1 else torch.cat(list(images.values())))
        paths = [arch.task_paths(t) for t in tasks]
        for i in range(arch.depth):
            hidden = self.spec.hidden_dim(arch.mlp_ratio[i])
            x = self.blocks[i](x, arch.num_heads[i], hidden, [p[i] for p in paths], tasks, sizes)
        return dict(zip(tasks, self.norm(x).split(sizes)))

    def forward_features(self, images: Tensor, arch: Arch, task: str) -> Tensor:
        """Normalised tokens (B, 1 + patches, embed_dim) of `arch` for `task`."""
        return self.forward_tasks({task: images}, arch)[task]

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
