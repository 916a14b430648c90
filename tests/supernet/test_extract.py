import numpy as np
import pytest
import torch

from ufo_nas import ArchError
from ufo_nas.supernet import StreamPlan, extract

TOLERANCE = 1e-5


def max_abs_diff(supernet, arch, tasks, images) -> float:
    subnet = extract(supernet, arch, tasks)
    with torch.no_grad():
        outs = subnet(images)
        outs = (outs,) if len(tasks) == 1 else outs
        return max(
            (out - supernet(images, arch, task)).abs().max().item()
            for out, task in zip(outs, tasks)
        )


def test_extracted_equals_supernet_tiny(tiny, tiny_supernet):
    rng = np.random.default_rng(10)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    archs = [tiny.sample(rng) for _ in range(30)] + [tiny.smallest(), tiny.largest()]
    for k, arch in enumerate(archs):
        tasks = [("face",), ("object",), tiny.tasks][k % 3]
        assert max_abs_diff(tiny_supernet, arch, tasks, images) <= TOLERANCE, str(arch)


def test_extracted_equals_supernet_base(base, base_supernet):
    rng = np.random.default_rng(11)
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    for tasks in (("face",), ("person", "vehicle", "product")):
        arch = base.sample(rng)
        assert max_abs_diff(base_supernet, arch, tasks, images) <= TOLERANCE, str(arch)


def test_extracted_holds_only_chosen_weights(tiny, tiny_supernet):
    arch = tiny.parse("d4-h2,3,4,2-m2,3,4,2-face:stms-object:ssss")
    subnet = extract(tiny_supernet, arch, ["face", "object"])
    assert [layer.attn.num_heads for layer in subnet.layers] == [2, 3, 4, 2]
    assert [layer.mlps["shared"].fc1.out_features for layer in subnet.layers] == [
        256,
        384,
        512,
        256,
    ]
    assert [sorted(layer.mlps) for layer in subnet.layers] == [
        ["shared"],
        ["shared", "task_face"],
        ["shared", "task_face"],
        ["shared"],
    ]
    source = tiny_supernet.blocks[1].attn.qkv.weight.view(3, 4, 32, 128)
    copied = subnet.layers[1].attn.qkv.weight.view(3, 3, 32, 128)
    assert torch.equal(copied, source[:, :3])
    assert copied.data_ptr() != source.data_ptr()  # a copy, not a view of the supernet


def test_stream_plan_shares_the_trunk_until_paths_differ(tiny):
    arch = tiny.parse("d4-h2,2,2,2-m2,2,2,2-face:sstt-object:ssts")
    plan = StreamPlan.build(arch, ["face", "object"])
    assert [len(branches) for branches in plan.layers] == [1, 1, 2, 2]
    assert plan.layers[2][1].path == "task" and plan.layers[2][1].task == "object"
    assert plan.outputs == (0, 1)
    same = tiny.parse("d4-h2,2,2,2-m2,2,2,2-face:ssss-object:ssss")
    assert StreamPlan.build(same, ["face", "object"]).outputs == (0, 0)


def test_mix_weights_follow_the_router(tiny, tiny_supernet):
    arch = tiny.parse("d4-h2,2,2,2-m2,2,2,2-face:mmmm-object:ssss")
    subnet = extract(tiny_supernet, arch, "face")
    expected = tiny_supernet.blocks[0].router_logits[0].softmax(-1)
    assert torch.allclose(subnet.layers[0].mix_face, expected)
    assert not torch.allclose(expected, torch.full((2,), 0.5))


def test_gumbel_routing_in_training_only(tiny, tiny_supernet):
    block = tiny_supernet.blocks[0]
    block.train()
    try:
        samples = torch.stack([block.mix_weights("face") for _ in range(20)])
    finally:
        block.eval()
    assert samples.std(0).min() > 0  # noisy in training
    assert torch.allclose(samples.sum(1), torch.ones(20))
    assert torch.equal(block.mix_weights("face"), block.mix_weights("face"))  # exact at eval


def test_extract_rejects_bad_requests(tiny, base, tiny_supernet):
    with pytest.raises(ArchError, match="not in"):
        extract(tiny_supernet, base.smallest(), "face")
    with pytest.raises(Exception, match="unknown task 'car'"):
        extract(tiny_supernet, tiny.smallest(), "car")
    with pytest.raises(ArchError, match="distinct tasks"):
        extract(tiny_supernet, tiny.smallest(), ["face", "face"])
