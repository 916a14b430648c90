"""extract(): copy the chosen weights of a supernet into a standalone SubnetViT."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ufo_nas.space import Arch
from ufo_nas.supernet.elastic import copy_into
from ufo_nas.supernet.subnet import SubnetViT, task_mlp_key
from ufo_nas.supernet.vit import SuperViT


@torch.no_grad()
def extract(supernet: SuperViT, arch: Arch, tasks: str | Sequence[str]) -> SubnetViT:
    """The static subnet of `arch` for one task or several tasks on one trunk.

    It holds copies of only the active weights, and its outputs equal
    `supernet.eval()(images, arch, task)` for each task. Returned in eval mode.
    """
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    spec = supernet.spec
    subnet = SubnetViT(spec, arch, tasks)
    subnet.patch_embed.load_state_dict(supernet.patch_embed.state_dict())
    subnet.cls_token.copy_(supernet.cls_token)
    subnet.pos_embed.copy_(supernet.pos_embed)
    subnet.norm.load_state_dict(supernet.norm.state_dict())
    for task in tasks:
        subnet.necks[task].load_state_dict(supernet.necks[task].state_dict())
    for i, layer in enumerate(subnet.layers):
        block = supernet.blocks[i]
        layer.norm1.load_state_dict(block.norm1.state_dict())
        layer.norm2.load_state_dict(block.norm2.state_dict())
        qkv_w, qkv_b, proj_w, proj_b = block.attn.active_weights(arch.num_heads[i])
        copy_into(layer.attn.qkv, qkv_w, qkv_b)
        copy_into(layer.attn.proj, proj_w, proj_b)
        hidden = spec.hidden_dim(arch.mlp_ratio[i])
        for key, mlp in layer.mlps.items():
            source = block.mlp
            if key != "shared":
                source = block.task_mlps[key.removeprefix(task_mlp_key(""))]
            fc1_w, fc1_b, fc2_w, fc2_b = source.active_weights(hidden)
            copy_into(mlp.fc1, fc1_w, fc1_b)
            copy_into(mlp.fc2, fc2_w, fc2_b)
        for branch in layer.branches:
            if branch.path == "mix":
                weights = block.router_logits[spec.task_names.index(branch.task)].softmax(-1)
                getattr(layer, f"mix_{branch.task}").copy_(weights)
    return subnet.eval()
