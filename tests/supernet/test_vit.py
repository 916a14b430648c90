import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import randomise_routers
from ufo_nas.errors import CheckpointError
from ufo_nas.spec import space_spec_from_dict
from ufo_nas.supernet import StreamPlan, SuperViT
from ufo_nas.supernet.vit import SuperBlock


def test_one_heterogeneous_pass_equals_each_task_alone(tiny):
    """UFO's heterogeneous batch: tasks on different paths share one trunk pass."""
    torch.manual_seed(0)
    supernet = SuperViT(tiny.spec).eval()
    randomise_routers(supernet, seed=1)
    with torch.no_grad():  # task MLPs unlike the shared one, so a wrong path shows
        for block in supernet.blocks:
            for mlp in block.task_mlps.values():
                mlp.fc1.weight.mul_(3.0)
    arch = tiny.parse("d5-h2,4,3,2,4-m4,2,3,4,2-face:smtst-object:ttmss-digits:mmsst")
    generator = torch.Generator().manual_seed(0)
    images = {t: torch.randn(n, 3, 64, 64, generator=generator) for t, n in
              (("face", 3), ("object", 2), ("digits", 4))}  # fmt: skip
    with torch.no_grad():
        joint = supernet.forward_tasks(images, arch)
        for task, x in images.items():
            alone = supernet.forward_features(x, arch, task)
            assert torch.allclose(joint[task], alone, atol=1e-5), task
        assert not torch.allclose(
            joint["face"][:, 0],
            supernet.forward_features(
                images["face"], tiny.parse("d5-h2,4,3,2,4-m4,2,3,4,2-face:sssss"), "face"
            )[:, 0],
        )


def test_hard_gumbel_mix_is_one_hot_with_gradients_to_the_router(tiny):
    supernet = SuperViT(tiny.spec).train()
    supernet.set_gumbel(5.0, hard=True)
    block = supernet.blocks[0]
    torch.manual_seed(0)
    draws = torch.stack([block.mix_weights("face") for _ in range(200)])
    assert set(draws.detach().flatten().tolist()) == {0.0, 1.0}
    assert 0.3 < draws[:, 0].mean() < 0.7  # logits 0: a fair coin
    (draws[:, 1] * 2.0).sum().backward()
    assert block.router_logits.grad[0].abs().sum() > 0
    supernet.eval()
    assert torch.allclose(block.mix_weights("face"), torch.tensor([0.5, 0.5]))


def spec_with(tiny, **changes):
    """The tiny spec with backbone keys (and `paths` of task face) changed."""
    data = copy.deepcopy(tiny.spec.to_dict())
    face_paths = changes.pop("face_paths", None)
    data["backbone"].update(changes)
    if face_paths is not None:
        data["tasks"]["face"]["paths"] = face_paths
    return space_spec_from_dict(data)


def randomised_timm_vit(tiny):
    """A timm ViT of the tiny space's largest subnet, every parameter random."""
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=64, patch_size=16, num_heads=4,
        depth=6, embed_dim=128, mlp_ratio=4.0, qkv_bias=True, num_classes=10,
    ).eval()  # fmt: skip
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in vit.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=generator))
    return vit


def test_the_largest_tiny_subnet_reproduces_a_random_timm_vit(tiny):
    vit = randomised_timm_vit(tiny)
    supernet = SuperViT(tiny.spec).eval()
    unused = supernet.load_timm_state_dict(vit.state_dict())
    assert unused == ["head.bias", "head.weight"]
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = vit.forward_features(images)
        for letter in "stm":  # task MLPs start as copies of the shared one
            arch = tiny.parse("d6-h4,4,4,4,4,4-m4,4,4,4,4,4-face:" + letter * 6)
            got = supernet.forward_features(images, arch, "face")
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_a_timm_state_dict_that_does_not_fit_is_refused_naming_the_key(tiny):
    supernet = SuperViT(tiny.spec)
    state = randomised_timm_vit(tiny).state_dict()
    short = {k: v for k, v in state.items() if k not in ("blocks.0.norm1.bias", "norm.weight")}
    with pytest.raises(CheckpointError) as info:
        supernet.load_timm_state_dict(short)
    assert str(info.value) == (
        "not a timm ViT state dict for this space: missing 2 keys, e.g. 'blocks.0.norm1.bias'"
    )
    state["blocks.1.attn.qkv.weight"] = torch.zeros(3 * 96, 128)
    with pytest.raises(CheckpointError) as info:
        supernet.load_timm_state_dict(state)
    assert str(info.value) == (
        "checkpoint tensor 'blocks.1.attn.qkv.weight' has shape (288, 128), "
        "this space needs (384, 128)"
    )


@torch.no_grad()
def test_initial_weights_are_timms(tiny):
    supernet = SuperViT(tiny.spec)
    assert 0.018 < float(supernet.pos_embed.std()) < 0.022
    assert 0 < float(supernet.cls_token.std()) < 1e-5
    linears = [m for m in supernet.modules() if isinstance(m, nn.Linear)]
    assert all(m.bias is not None and not m.bias.any() for m in linears)
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert 0.0195 < float(weights.std()) < 0.0205
    norms = [m for m in supernet.modules() if isinstance(m, nn.LayerNorm)]
    assert all(m.eps == 1e-6 and (m.weight == 1).all() and not m.bias.any() for m in norms)


def test_drop_path_rises_linearly_over_the_blocks(tiny):
    assert all(isinstance(b.drop_path, nn.Identity) for b in SuperViT(tiny.spec).blocks)
    supernet = SuperViT(spec_with(tiny, drop_path_rate=0.5))
    assert isinstance(supernet.blocks[0].drop_path, nn.Identity)  # rate 0
    rates = [b.drop_path.drop_prob for b in supernet.blocks[1:]]
    assert rates == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])


def test_blocks_follow_the_spec(tiny):
    supernet = SuperViT(tiny.spec)
    attn = supernet.blocks[0].attn
    assert attn.qkv.bias is not None and attn.head_dim == 32 and attn.num_heads == 4
    assert supernet.patch_embed.num_patches == 16 and supernet.patch_embed.img_size == (64, 64)
    assert SuperViT(spec_with(tiny, qkv_bias=False)).blocks[0].attn.qkv.bias is None
    assert isinstance(SuperBlock(tiny.spec, 0).drop_path, nn.Identity)
    paths = [["shared"], ["shared", "task"], ["mix"], ["shared"], ["task"], ["shared", "mix"]]
    restricted = SuperViT(spec_with(tiny, face_paths=paths))
    has_face_mlp = ["face" in b.task_mlps for b in restricted.blocks]
    assert has_face_mlp == [False, True, True, False, True, True]
    assert all("object" in b.task_mlps for b in restricted.blocks)


def test_gumbel_defaults_soft_at_temperature_one(tiny):
    supernet = SuperViT(tiny.spec).train()
    randomise_routers(supernet, seed=2)
    block = supernet.blocks[0]
    assert block.gumbel_tau == 1.0 and block.gumbel_hard is False
    for seed, tau in ((5, 1.0), (6, 2.0)):
        supernet.set_gumbel(tau)
        assert block.gumbel_tau == tau and block.gumbel_hard is False
        torch.manual_seed(seed)
        got = block.mix_weights("object")
        torch.manual_seed(seed)
        want = F.gumbel_softmax(block.router_logits[1], tau=tau, hard=False)
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_subnet_extracted_in_training_mode_takes_the_exact_mix_and_its_own_norms(tiny):
    supernet = SuperViT(tiny.spec).train()
    randomise_routers(supernet, seed=4)
    arch = tiny.parse("d4-h2,3,2,4-m2,3,4,2-face:mmmm")
    layer = supernet.blocks[1].get_active_subnet(
        3, 384, StreamPlan.build(arch, ("face",)).layers[1]
    )
    want = supernet.blocks[1].router_logits[0].softmax(-1)
    torch.testing.assert_close(layer.mix_face, want.detach(), rtol=0, atol=0)
    with torch.no_grad():
        layer.norm1.weight.add_(1.0)
        layer.norm2.bias.add_(1.0)
    assert (supernet.blocks[1].norm1.weight == 1).all() and not supernet.blocks[1].norm2.bias.any()


def test_the_shared_mlp_runs_only_on_rows_that_need_it(tiny):
    block = SuperViT(tiny.spec).blocks[0]
    rows = []
    real = block.mlp.forward_active
    block.mlp.forward_active = lambda x, hidden: rows.append(len(x)) or real(x, hidden)
    y = torch.randn(7, 17, 128)
    block.ffn(y, [3, 4], ["face", "object"], 256, ["task", "shared"])
    block.ffn(y, [3, 4], ["face", "object"], 256, ["task", "task"])
    block.ffn(y, [3, 4], ["face", "object"], 256, ["mix", "shared"])
    assert rows == [4, 7]


def test_two_tasks_in_one_pass_equal_each_alone(tiny):
    supernet = SuperViT(tiny.spec).eval()
    randomise_routers(supernet, seed=1)
    arch = tiny.parse("d4-h2,4,3,2-m4,2,3,4-face:smtm-object:ttms")
    generator = torch.Generator().manual_seed(0)
    images = {"face": torch.randn(2, 3, 64, 64, generator=generator),
              "object": torch.randn(3, 3, 64, 64, generator=generator)}  # fmt: skip
    with torch.no_grad():
        joint = supernet.forward_tasks(images, arch)
        for task, x in images.items():
            assert joint[task].shape == (len(x), 17, 128)
            torch.testing.assert_close(joint[task], supernet.forward_features(x, arch, task))
