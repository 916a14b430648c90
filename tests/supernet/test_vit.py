import torch

from tests.conftest import randomise_routers
from ufo_nas.supernet import SuperViT


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
