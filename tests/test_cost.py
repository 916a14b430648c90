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


def test_structure_of_a_hand_built_arch(tiny):
    """face t,m,s,s and object s,m,t,s: the streams split at layer 0 and stay split."""
    arch = tiny.parse("d4-h2,3,4,2-m2,3,4,2-face:tmss-object:smts")
    s = CostModel(tiny).structure([arch], ("face", "object"))
    assert s.active.tolist() == [[True] * 4 + [False] * 2]
    assert s.heads[0, :4].tolist() == [2, 3, 4, 2]
    assert s.hidden[0, :4].tolist() == [tiny.spec.hidden_dim(r) for r in (2, 3, 4, 2)]
    assert s.streams_in[0, :4].tolist() == [1, 2, 2, 2]
    assert s.single[0, :4].tolist() == [2, 0, 2, 2]
    assert s.mixed[0, :4].tolist() == [0, 2, 0, 0]
    assert s.ffns_held[0, :4].tolist() == [2, 3, 2, 1]  # shared + face's / object's own
    for counts in (s.heads, s.hidden, s.streams_in, s.single, s.mixed, s.ffns_held):
        assert counts.dtype == np.int64
    # all shared (every task of the space): one stream, one FFN evaluation per layer
    shared = CostModel(tiny).structure([tiny.parse("d4-h2,2,2,2-m2,2,2,2")], tiny.tasks)
    assert shared.streams_in[0].tolist() == [1] * 6 and shared.single[0].tolist() == [1] * 6


def test_structure_tells_one_tasks_own_ffn_from_anothers_mix(base):
    """person's task FFN and vehicle's mix at layer 0 are different FFNs: two streams."""
    trunk = "d10-h" + ",".join(["10"] * 10) + "-m" + ",".join(["3"] * 10)
    arch = base.parse(trunk + "-person:t" + "s" * 9 + "-vehicle:m" + "s" * 9)
    s = CostModel(base).structure([arch], ("person", "vehicle"))
    assert s.streams_in[0, :2].tolist() == [1, 2]
    assert (s.single[0, 0], s.mixed[0, 0], s.ffns_held[0, 0]) == (1, 1, 3)


def test_counts_are_int64(tiny):
    cost = CostModel(tiny)
    genes = tiny.sample_genes(np.random.default_rng(9), 4)
    assert cost.params(genes, tiny.tasks).dtype == np.int64
    assert cost.macs(genes, tiny.tasks).dtype == np.int64


def test_counts_without_qkv_bias_equal_extracted_module(tiny):
    from dataclasses import replace

    from ufo_nas.space import SearchSpace
    from ufo_nas.supernet import SuperViT

    space = SearchSpace(replace(tiny.spec, qkv_bias=False))
    torch.manual_seed(0)
    supernet = SuperViT(space.spec).eval()
    arch = space.parse("d4-h2,3,4,2-m2,3,4,2-face:tmss-object:smts")
    for tasks in (("face",), ("face", "object")):
        params, macs = counted(extract(supernet, arch, tasks), space.spec)
        assert (params, macs) == (
            CostModel(space).params([arch], tasks)[0],
            CostModel(space).macs([arch], tasks)[0],
        )
    with_bias = CostModel(tiny).params([arch], "face")[0]
    qkv_biases = 3 * tiny.spec.head_dim * (2 + 3 + 4 + 2)  # 3 heads x head_dim per layer
    assert with_bias - CostModel(space).params([arch], "face")[0] == qkv_biases
