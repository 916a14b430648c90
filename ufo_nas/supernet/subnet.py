"""SubnetViT: the static, standalone module of one arch for one or several tasks.

Several tasks share one trunk ("tasks freely combined"): tasks whose FFN paths agree up to
a layer share one stream of activations; where their paths differ the stream splits after
that layer's attention, each child running its own FFN. A `StreamPlan` records this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from timm.layers import Attention, Mlp, PatchEmbed
from torch import Tensor, nn

from ufo_nas.errors import ArchError
from ufo_nas.space import Arch, SearchSpace
from ufo_nas.spec import SpaceSpec
from ufo_nas.supernet.vit import layer_norm


@dataclass(frozen=True)
class Branch:
    """One stream leaving a layer: which incoming stream it continues and its FFN."""

    parent: int
    path: str  # shared / task / mix
    task: str | None  # owner of a task or mix FFN; None for the shared FFN


@dataclass(frozen=True)
class StreamPlan:
    """Per layer the branches leaving it; per task the stream it reads at the end."""

    layers: tuple[tuple[Branch, ...], ...]
    outputs: tuple[int, ...]

    @classmethod
    def build(cls, arch: Arch, tasks: Sequence[str]) -> StreamPlan:
        groups: list[list[str]] = [list(tasks)]
        layers = []
        for i in range(arch.depth):
            branches: list[Branch] = []
            next_groups: list[list[str]] = []
            for parent, group in enumerate(groups):
                by_ffn: dict[tuple[str, str | None], list[str]] = {}
                for task in group:
                    path = arch.task_paths(task)[i]
                    by_ffn.setdefault((path, None if path == "shared" else task), []).append(task)
                for (path, owner), members in by_ffn.items():
                    branches.append(Branch(parent, path, owner))
                    next_groups.append(members)
            layers.append(tuple(branches))
            groups = next_groups
        outputs = tuple(next(k for k, g in enumerate(groups) if task in g) for task in tasks)
        return cls(tuple(layers), outputs)


def task_mlp_key(task: str) -> str:
    return f"task_{task}"


class SubnetLayer(nn.Module):
    """One static block: attention once per incoming stream, an FFN per outgoing branch."""

    def __init__(self, spec: SpaceSpec, heads: int, hidden: int, branches: tuple[Branch, ...]):
        super().__init__()
        dim = spec.embed_dim
        self.branches = branches
        self.norm1 = layer_norm(dim)
        self.attn = Attention(
            dim, num_heads=heads, attn_head_dim=spec.head_dim, qkv_bias=spec.qkv_bias
        )
        self.norm2 = layer_norm(dim)
        keys = []
        for b in branches:
            if b.path in ("shared", "mix"):
                keys.append("shared")
            if b.path in ("task", "mix"):
                keys.append(task_mlp_key(b.task))
        self.mlps = nn.ModuleDict({k: Mlp(dim, hidden) for k in dict.fromkeys(keys)})
        for b in branches:
            if b.path == "mix":  # fixed (shared, task) weights: the router's softmax
                self.register_buffer(f"mix_{b.task}", torch.full((2,), 0.5))

    def forward(self, streams: list[Tensor]) -> list[Tensor]:
        attended: dict[int, tuple[Tensor, Tensor]] = {}
        out = []
        for b in self.branches:
            if b.parent not in attended:
                x = streams[b.parent]
                x = x + self.attn(self.norm1(x))
                attended[b.parent] = (x, self.norm2(x))
            x, y = attended[b.parent]
            if b.path == "shared":
                f = self.mlps["shared"](y)
            elif b.path == "task":
                f = self.mlps[task_mlp_key(b.task)](y)
            else:
                w = getattr(self, f"mix_{b.task}")
                f = w[0] * self.mlps["shared"](y) + w[1] * self.mlps[task_mlp_key(b.task)](y)
            out.append(x + f)
        return out


class SubnetViT(nn.Module):
    """A deployable subnet; forward returns the embedding, or a tuple over `tasks`."""

    def __init__(self, spec: SpaceSpec, arch: Arch, tasks: Sequence[str]):
        super().__init__()
        space = SearchSpace(spec)
        space.check(arch)
        tasks = tuple(tasks)
        if not tasks or len(set(tasks)) != len(tasks):
            raise ArchError(f"extract needs distinct tasks, got {list(tasks)}")
        for task in tasks:
            spec.task(task)
        self.spec, self.arch, self.tasks = spec, arch, tasks
        self.plan = StreamPlan.build(arch, tasks)
        dim = spec.embed_dim
        self.patch_embed = PatchEmbed(spec.image_size, spec.patch_size, spec.in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, spec.num_tokens, dim))
        self.layers = nn.ModuleList(
            SubnetLayer(spec, arch.num_heads[i], spec.hidden_dim(arch.mlp_ratio[i]), branches)
            for i, branches in enumerate(self.plan.layers)
        )
        self.norm = layer_norm(dim)
        self.necks = nn.ModuleDict({t: nn.Linear(dim, spec.task(t).embed_dim) for t in tasks})

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, ...]:
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        streams = [x]
        for layer in self.layers:
            streams = layer(streams)
        normed: dict[int, Tensor] = {}
        outs = []
        for task, stream in zip(self.tasks, self.plan.outputs):
            if stream not in normed:
                normed[stream] = self.norm(streams[stream])
            outs.append(self.necks[task](normed[stream][:, 0]))
        return outs[0] if len(outs) == 1 else tuple(outs)
