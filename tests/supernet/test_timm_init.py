import timm
import torch
from safetensors.torch import save_file

from ufo_nas.checkpoint import load_timm_checkpoint
from ufo_nas.supernet import SuperViT


def test_largest_subnet_reproduces_timm_vit(base, tmp_path):
    torch.manual_seed(0)
    vit = timm.create_model("vit_base_patch16_224", pretrained=False).eval()
    path = tmp_path / "vit_base_patch16_224.safetensors"
    save_file(vit.state_dict(), str(path))
    supernet = SuperViT(base.spec).eval()
    unused = load_timm_checkpoint(supernet, path)
    assert unused == ["head.bias", "head.weight"]
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want = vit.forward_features(images)
        for path_letter in "stm":  # task MLPs start as copies of the shared one
            arch = base.parse(
                "d12-h"
                + ",".join(["12"] * 12)
                + "-m"
                + ",".join(["4"] * 12)
                + "".join(f"-{t}:" + path_letter * 12 for t in base.tasks)
            )
            got = supernet.forward_features(images, arch, "face")
            assert (got - want).abs().max().item() <= 1e-5


def test_pos_embed_is_resampled_for_another_grid(tiny, tmp_path):
    vit = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=16,
        num_heads=4,
        depth=6,
        embed_dim=128,
    )
    path = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), path)
    supernet = SuperViT(tiny.spec)
    load_timm_checkpoint(supernet, path)  # 2x2 grid -> 4x4 grid
    assert torch.equal(supernet.cls_token, vit.cls_token)
    assert supernet.pos_embed.shape == (1, 17, 128)
