"""SubnetViT: the static, standalone module of one arch for one or several tasks.

Several tasks share one trunk ("tasks freely combined"): tasks whose FFN paths agree up to
a layer share one stream of activations; where their paths differ the stream splits after
that layer's attention, each child running its own FFN. A `StreamPlan` records this.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from timm.layers import Attention, Mlp
from torch import Tensor, nn

from ufo_nas.space import Arch, SearchSpace
from ufo_nas.spec import SpaceSpec
from ufo_nas.supernet.layers import TokenEmbedding, layer_norm


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


def mlp_owners(branches: Sequence[Branch]) -> list[str | None]:
    """The MLPs `branches` run, in order of first use: None (the shared MLP) or the owner."""
    owners: list[str | None] = []
    for b in branches:
        if b.path in ("shared", "mix"):
            owners.append(None)
        if b.path in ("task", "mix"):
            owners.append(b.task)
    return list(dict.fromkeys(owners))


def mlp_key(owner: str | None) -> str:
    """Key in `SubnetLayer.mlps` of the MLP of `owner` (None: the shared MLP)."""
    return "shared" if owner is None else f"task_{owner}"


class SubnetLayer(nn.Module):
    """One static block: attention once per incoming stream, an FFN per outgoing branch.

    `mlps` maps `mlp_key(owner)` to each MLP of `mlp_owners(branches)`; `mix` maps each
    mix branch's task to its fixed (shared, task) weights, the router's softmax.
    """

    def __init__(
        self,
        branches: tuple[Branch, ...],
        norm1: nn.LayerNorm,
        attn: Attention,
        norm2: nn.LayerNorm,
        mlps: dict[str, Mlp],
        mix: dict[str, Tensor],
    ):
        super().__init__()
        self.branches = branches
        self.norm1, self.attn, self.norm2 = norm1, attn, norm2
        self.mlps = nn.ModuleDict(mlps)
        for task, weights in mix.items():
            self.register_buffer(f"mix_{task}", weights)

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
                f = self.mlps[mlp_key(None)](y)
            elif b.path == "task":
                f = self.mlps[mlp_key(b.task)](y)
            else:
                w = getattr(self, f"mix_{b.task}")
                f = w[0] * self.mlps[mlp_key(None)](y) + w[1] * self.mlps[mlp_key(b.task)](y)
            out.append(x + f)
        return out


# (layer index, heads, hidden units, branches) -> the layer
LayerMaker = Callable[[int, int, int, tuple[Branch, ...]], SubnetLayer]


def fresh_layer(
    spec: SpaceSpec, i: int, heads: int, hidden: int, branches: tuple[Branch, ...]
) -> SubnetLayer:
    """A freshly initialised layer i, to load weights into (a `LayerMaker` once `spec` is
    bound; every layer is built alike, so `i` is unused)."""
    dim = spec.embed_dim
    attn = Attention(dim, num_heads=heads, attn_head_dim=spec.head_dim, qkv_bias=spec.qkv_bias)
    mlps = {mlp_key(owner): Mlp(dim, hidden) for owner in mlp_owners(branches)}
    mix = {b.task: torch.full((2,), 0.5) for b in branches if b.path == "mix"}
    return SubnetLayer(branches, layer_norm(dim), attn, layer_norm(dim), mlps, mix)


class SubnetViT(TokenEmbedding):
    """A deployable subnet; forward returns the embedding, or a tuple over `tasks`.

    `make_layer(i, heads, hidden, branches)` builds layer i (default: freshly initialised).
    """

    def __init__(
        self,
        spec: SpaceSpec,
        arch: Arch,
        tasks: Sequence[str],
        make_layer: LayerMaker | None = None,
    ):
        SearchSpace(spec).check(arch)
        tasks = spec.check_tasks(tasks)
        super().__init__(spec)
        self.spec, self.arch, self.tasks = spec, arch, tasks
        self.plan = StreamPlan.build(arch, tasks)
        if make_layer is None:
            make_layer = partial(fresh_layer, spec)
        self.layers = nn.ModuleList(
            make_layer(i, arch.num_heads[i], spec.hidden_dim(arch.mlp_ratio[i]), branches)
            for i, branches in enumerate(self.plan.layers)
        )
        dim = spec.embed_dim
        self.norm = layer_norm(dim)
        self.necks = nn.ModuleDict({t: nn.Linear(dim, spec.task(t).embed_dim) for t in tasks})

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, ...]:
        streams = [self.embed(images)]
        for layer in self.layers:
            streams = layer(streams)
        normed: dict[int, Tensor] = {}
        outs = []
        for task, stream in zip(self.tasks, self.plan.outputs):
            if stream not in normed:
                normed[stream] = self.norm(streams[stream])
            outs.append(self.necks[task](normed[stream][:, 0]))
        return outs[0] if len(outs) == 1 else tuple(outs)
