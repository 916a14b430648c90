"""extract(): copy the chosen weights of a supernet into a standalone SubnetViT."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ufo_nas.space import Arch
from ufo_nas.supernet.subnet import Branch, SubnetLayer, SubnetViT
from ufo_nas.supernet.vit import SuperViT


@torch.no_grad()
def extract(supernet: SuperViT, arch: Arch, tasks: str | Sequence[str]) -> SubnetViT:
    """The static subnet of `arch` for one task or several tasks on one trunk.

    Each layer is its supernet block's `get_active_subnet`, holding copies of only the
    active weights; the embedding, final norm and necks are copied as they are. Its outputs
    equal `supernet.eval()(images, arch, task)` for each task. Returned in eval mode.
    """

    def active_layer(i: int, heads: int, hidden: int, branches: tuple[Branch, ...]) -> SubnetLayer:
        return supernet.blocks[i].get_active_subnet(heads, hidden, branches)

    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    subnet = SubnetViT(supernet.spec, arch, tasks, make_layer=active_layer)
    for name in ("patch_embed", "norm"):
        getattr(subnet, name).load_state_dict(getattr(supernet, name).state_dict())
    subnet.cls_token.copy_(supernet.cls_token)
    subnet.pos_embed.copy_(supernet.pos_embed)
    for task in tasks:
        subnet.necks[task].load_state_dict(supernet.necks[task].state_dict())
    return subnet.eval()
