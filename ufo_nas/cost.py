"""Analytic parameter and MAC counts of extracted subnets, vectorised over archs.

The counts equal those of the module `extract()` builds (tests check it): parameters are
the module's unique tensors; MACs are the multiply-accumulates of its linear layers,
patch-embedding convolution and attention matmuls for one image. Norms, activations and
element-wise ops are not counted.

For several tasks on one trunk, tasks whose FFN paths agree up to a layer share one stream
of activations there; a stream splits where their paths differ (see `subnet.StreamPlan`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ufo_nas.space import Arch, SearchSpace

SHARED, TASK, MIX = 0, 1, 2
_PATH_CODE = {"shared": SHARED, "task": TASK, "mix": MIX}


@dataclass(frozen=True)
class LayerStructure:
    """Per-layer arrays (n archs, L layers) of the extracted subnets."""

    active: np.ndarray  # bool: the layer runs
    heads: np.ndarray  # attention heads
    hidden: np.ndarray  # MLP hidden width
    streams_in: np.ndarray  # streams entering: attention runs once per stream
    single: np.ndarray  # branches leaving with one FFN (shared or task path)
    mixed: np.ndarray  # branches leaving with a mix of two FFNs
    ffns_held: np.ndarray  # distinct FFN modules the layer holds


class CostModel:
    """Params and MACs of subnets of one space; `archs` may be Archs or a gene matrix."""

    def __init__(self, space: SearchSpace):
        self.space = space
        s = space.spec
        layers = space.layers
        width = max(len(c) for _, c in space.variables)
        self._heads = np.zeros((layers, width), dtype=np.int64)
        self._hidden = np.zeros((layers, width), dtype=np.int64)
        for i in range(layers):
            self._heads[i, : len(s.num_heads[i])] = s.num_heads[i]
            hidden = [s.hidden_dim(r) for r in s.mlp_ratios[i]]
            self._hidden[i, : len(hidden)] = hidden
        self._path_kind = np.zeros((len(s.tasks), layers, width), dtype=np.int64)
        for t, task in enumerate(s.tasks):
            for i in range(layers):
                codes = [_PATH_CODE[p] for p in task.paths[i]]
                self._path_kind[t, i, : len(codes)] = codes

    def _genes(self, archs: Sequence[Arch] | np.ndarray) -> np.ndarray:
        if isinstance(archs, np.ndarray):
            return self.space.canonical_genes(archs)
        return self.space.encode_batch(archs)

    def _task_indices(self, tasks: str | Sequence[str]) -> list[int]:
        return [self.space.tasks.index(n) for n in self.space.spec.check_tasks(tasks)]

    def structure(self, archs: Sequence[Arch] | np.ndarray, tasks: str | Sequence[str]):
        """Per-layer arrays (n, L) of each arch's subnet for `tasks` (see LayerStructure)."""
        return self._layers(self._genes(archs), self._task_indices(tasks))

    def _layers(self, genes: np.ndarray, tasks: list[int]) -> LayerStructure:
        space, L = self.space, self.space.layers
        n = genes.shape[0]
        depth = np.asarray(space.spec.depths)[genes[:, 0]]
        layer = np.arange(L)
        active = layer[None, :] < depth[:, None]
        heads = self._heads[layer[None, :], genes[:, 1 : 1 + L]]
        hidden = self._hidden[layer[None, :], genes[:, 1 + L : 1 + 2 * L]]
        kinds = np.stack(
            [
                self._path_kind[t, layer[None, :], genes[:, 1 + (2 + t) * L : 1 + (3 + t) * L]]
                for t in tasks
            ],
            axis=1,
        )  # (n, T, L)
        task_ids = np.asarray(tasks)[None, :, None]
        token = np.where(kinds == SHARED, -1, 2 * task_ids + kinds)  # equal token = same FFN
        earlier = np.tril(np.ones((len(tasks), len(tasks)), dtype=bool), k=-1)
        same_prefix = np.ones((n, len(tasks), len(tasks)), dtype=bool)
        streams_in = np.zeros((n, L), dtype=np.int64)
        single = np.zeros((n, L), dtype=np.int64)
        mixed = np.zeros((n, L), dtype=np.int64)
        for i in range(L):
            streams_in[:, i] = (~(same_prefix & earlier).any(axis=2)).sum(axis=1)
            same_prefix &= token[:, :, None, i] == token[:, None, :, i]
            leads = ~(same_prefix & earlier).any(axis=2)  # first task of each new stream
            is_mix = kinds[:, :, i] == MIX
            mixed[:, i] = (leads & is_mix).sum(axis=1)
            single[:, i] = (leads & ~is_mix).sum(axis=1)
        ffns_held = (kinds != TASK).any(axis=1) + (kinds != SHARED).sum(axis=1)
        return LayerStructure(active, heads, hidden, streams_in, single, mixed, ffns_held)

    def params(self, archs: Sequence[Arch] | np.ndarray, tasks: str | Sequence[str]) -> np.ndarray:
        """Parameter count of each arch's subnet extracted for `tasks`; int64 (n,)."""
        return self.params_of(self.structure(archs, tasks), tasks)

    def params_of(self, layers: LayerStructure, tasks: str | Sequence[str]) -> np.ndarray:
        """`params` of the subnets whose `structure(archs, tasks)` is `layers`."""
        s = self.space.spec
        task_idx = self._task_indices(tasks)
        active, heads, hidden, ffns_held = (
            layers.active,
            layers.heads,
            layers.hidden,
            layers.ffns_held,
        )
        E, hd = s.embed_dim, s.head_dim
        attn_dim = heads * hd
        attn = 3 * E * attn_dim + (3 * attn_dim if s.qkv_bias else 0) + attn_dim * E + E
        norms = 4 * E
        ffn = 2 * E * hidden + hidden + E
        blocks = ((attn + norms + ffn * ffns_held) * active).sum(axis=1)
        stem = E * s.in_chans * s.patch_size**2 + E + E + s.num_tokens * E
        necks = sum(E * s.tasks[t].embed_dim + s.tasks[t].embed_dim for t in task_idx)
        return stem + blocks + 2 * E + necks

    def macs(self, archs: Sequence[Arch] | np.ndarray, tasks: str | Sequence[str]) -> np.ndarray:
        """Multiply-accumulates for one image through each arch's subnet; int64 (n,)."""
        s = self.space.spec
        task_idx = self._task_indices(tasks)
        layers = self._layers(self._genes(archs), task_idx)
        active, heads, hidden = layers.active, layers.heads, layers.hidden
        streams_in, ffn_evals = layers.streams_in, layers.single + 2 * layers.mixed
        E, N = s.embed_dim, s.num_tokens
        attn_dim = heads * s.head_dim
        attn = N * E * 3 * attn_dim + N * attn_dim * E + 2 * N * N * attn_dim
        ffn = 2 * N * E * hidden
        blocks = ((attn * streams_in + ffn * ffn_evals) * active).sum(axis=1)
        stem = s.num_patches * E * s.in_chans * s.patch_size**2
        necks = sum(E * s.tasks[t].embed_dim for t in task_idx)
        return stem + blocks + necks
