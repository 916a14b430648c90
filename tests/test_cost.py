import numpy as np
import pytest
import torch
from timm.layers import Attention
from torch.utils.flop_counter import FlopCounterMode

from ufo_nas.cost import CostModel
from ufo_nas.supernet import extract


def counted(subnet, spec) -> tuple[int, int]:
    """(parameters, MACs) of a module, MACs by torch's flop counter on one image."""
    for module in subnet.modules():
        if isinstance(module, Attention):
            module.fused_attn = False  # explicit matmuls, which the flop counter sees
    images = torch.zeros(1, spec.in_chans, spec.image_size, spec.image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        subnet(images)
    return sum(p.numel() for p in subnet.parameters()), counter.get_total_flops() // 2


def test_counts_equal_extracted_module_tiny(tiny, tiny_supernet):
    cost = CostModel(tiny)
    rng = np.random.default_rng(5)
    archs = [tiny.sample(rng) for _ in range(8)] + [tiny.smallest(), tiny.largest()]
    for tasks in (("face",), ("object",), ("face", "object"), ("object", "face")):
        params, macs = cost.params(archs, tasks), cost.macs(archs, tasks)
        for k, arch in enumerate(archs):
            assert counted(extract(tiny_supernet, arch, tasks), tiny.spec) == (params[k], macs[k])


def test_counts_equal_extracted_module_base(base, base_supernet):
    cost = CostModel(base)
    arch = base.sample(np.random.default_rng(6))
    for tasks in (("person",), base.tasks):
        subnet = extract(base_supernet, arch, tasks)
        assert counted(subnet, base.spec) == (
            cost.params([arch], tasks)[0],
            cost.macs([arch], tasks)[0],
        )


def test_base_trunk_matches_vit_base(base):
    """All-shared largest trunk for one task = ViT-B/16 (86.6M with its 1000-way head)."""
    arch = base.parse(
        "d12-h"
        + ",".join(["12"] * 12)
        + "-m"
        + ",".join(["4"] * 12)
        + "".join(f"-{t}:" + "s" * 12 for t in base.tasks)
    )
    neck = 768 * 512 + 512
    vit_b_without_head = 86_567_656 - (768 * 1000 + 1000)
    assert CostModel(base).params([arch], "face")[0] == vit_b_without_head + neck


def test_vectorised_over_gene_matrix(tiny):
    cost = CostModel(tiny)
    genes = tiny.sample_genes(np.random.default_rng(7), 1000)
    archs = tiny.decode_batch(genes)
    assert np.array_equal(cost.macs(genes, tiny.tasks), cost.macs(archs, tiny.tasks))
    assert np.array_equal(cost.params(genes, "face"), cost.params(archs, "face"))


def test_more_tasks_never_cost_less(tiny):
    cost = CostModel(tiny)
    genes = tiny.sample_genes(np.random.default_rng(8), 500)
    both = cost.macs(genes, tiny.tasks)
    assert np.all(both >= cost.macs(genes, "face")) and np.all(both >= cost.macs(genes, "object"))


def test_unknown_task(tiny):
    with pytest.raises(Exception, match="unknown task 'car'"):
        CostModel(tiny).params([tiny.smallest()], "car")
