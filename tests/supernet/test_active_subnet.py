"""get_active_subnet against references built by hand, on fully randomised weights.

At initial weights LayerNorms are 1/0 and biases 0, so a norm copied from the wrong place
or a bias left out goes unnoticed; here every parameter is random.
"""

import inspect

import pytest
import torch
from timm.layers import Attention, Mlp
from torch import nn

from ufo_nas import SpecError
from ufo_nas.supernet import StreamPlan, SuperViT, extract
from ufo_nas.supernet.elastic import ElasticAttention, ElasticMlp

DIM, HEADS, HEAD_DIM, HIDDEN = 128, 4, 32, 512
ARCH = "d5-h3,2,4,3,2-m3,2,4,3,2-face:smtms-object:mtsmt"  # sub-maximal, every path kind


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter (norms, biases, router logits) drawn from N(0, 0.2^2); eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=generator))
    return module.eval()


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 17, DIM, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def random_supernet(tiny) -> SuperViT:
    return randomise(SuperViT(tiny.spec))


def reference_attention(big: Attention, heads: int) -> Attention:
    """timm Attention of `heads` heads holding, head by head, big's first `heads` heads."""
    hd, n = big.head_dim, big.num_heads
    ref = Attention(DIM, num_heads=heads, attn_head_dim=hd, qkv_bias=True)
    with torch.no_grad():
        for part in range(3):  # qkv rows: [q | k | v] x heads x head_dim
            for h in range(heads):
                src = slice((part * n + h) * hd, (part * n + h + 1) * hd)
                dst = slice((part * heads + h) * hd, (part * heads + h + 1) * hd)
                ref.qkv.weight[dst] = big.qkv.weight[src]
                ref.qkv.bias[dst] = big.qkv.bias[src]
        for h in range(heads):  # proj columns: head by head, from the start
            ref.proj.weight[:, h * hd : (h + 1) * hd] = big.proj.weight[:, h * hd : (h + 1) * hd]
        ref.proj.bias.copy_(big.proj.bias)
    return ref.eval()


def reference_mlp(big: Mlp, hidden: int) -> Mlp:
    """timm Mlp holding, unit by unit, big's first `hidden` hidden units."""
    ref = Mlp(DIM, hidden)
    with torch.no_grad():
        for u in range(hidden):
            ref.fc1.weight[u] = big.fc1.weight[u]
            ref.fc1.bias[u] = big.fc1.bias[u]
            ref.fc2.weight[:, u] = big.fc2.weight[:, u]
        ref.fc2.bias.copy_(big.fc2.bias)
    return ref.eval()


def assert_same_state(got: nn.Module, want: nn.Module) -> None:
    got_state, want_state = got.state_dict(), want.state_dict()
    assert list(got_state) == list(want_state)
    for key, value in want_state.items():
        assert torch.equal(got_state[key], value), key


@pytest.mark.parametrize("heads", [1, 2, 3])
def test_attention_active_subnet_is_the_first_heads(heads):
    big = randomise(ElasticAttention(DIM, num_heads=HEADS, attn_head_dim=HEAD_DIM, qkv_bias=True))
    ref = reference_attention(big, heads)
    active = big.get_active_subnet(heads).eval()
    assert type(active) is Attention and active.num_heads == heads
    assert_same_state(active, ref)
    x = tokens()
    with torch.no_grad():
        want = ref(x)
        assert torch.allclose(active(x), want, atol=1e-6)
        assert torch.allclose(big.forward_active(x, heads), want, atol=1e-6)


@pytest.mark.parametrize("hidden", [1, 256, 384])
def test_mlp_active_subnet_is_the_first_units(hidden):
    big = randomise(ElasticMlp(DIM, HIDDEN))
    ref = reference_mlp(big, hidden)
    active = big.get_active_subnet(hidden).eval()
    assert type(active) is Mlp and active.fc1.out_features == hidden
    assert_same_state(active, ref)
    x = tokens()
    with torch.no_grad():
        want = ref(x)
        assert torch.allclose(active(x), want, atol=1e-6)
        assert torch.allclose(big.forward_active(x, hidden), want, atol=1e-6)


def test_active_subnets_keep_the_layer_options():
    big = randomise(
        ElasticAttention(DIM, num_heads=HEADS, attn_head_dim=HEAD_DIM, proj_bias=False, dim_out=96)
    )
    active = big.get_active_subnet(2).eval()
    assert active.qkv.bias is None and active.proj.bias is None and active.head_dim == HEAD_DIM
    mlp = randomise(ElasticMlp(DIM, HIDDEN, act_layer=nn.ReLU, bias=False))
    x = tokens()
    with torch.no_grad():
        assert torch.allclose(active(x), big.forward_active(x, 2), atol=1e-6)
        assert torch.allclose(mlp.get_active_subnet(100)(x), mlp.forward_active(x, 100))


UNIMPLEMENTED = [
    (ElasticAttention, {"qk_norm": True, "norm_layer": nn.LayerNorm}, "qk_norm"),
    (ElasticAttention, {"scale_norm": True, "norm_layer": nn.LayerNorm}, "scale_norm"),
    (ElasticMlp, {"norm_layer": nn.LayerNorm}, "norm_layer"),
    (ElasticMlp, {"use_conv": True}, "use_conv"),
]
if "gated" in inspect.signature(Attention).parameters:  # newer timm only
    UNIMPLEMENTED.append((ElasticAttention, {"gated": True}, "gated"))


@pytest.mark.parametrize(("layer", "options", "option"), UNIMPLEMENTED)
def test_elastic_layers_refuse_options_they_do_not_implement(layer, options, option):
    with pytest.raises(SpecError, match=f"does not implement timm's {option} "):
        layer(DIM, HEADS if layer is ElasticAttention else HIDDEN, **options)


def test_block_active_subnet_runs_each_path_like_the_block(tiny, random_supernet):
    arch = tiny.parse(ARCH)
    i, heads, hidden = 1, 2, tiny.spec.hidden_dim(2)
    block = random_supernet.blocks[i]
    branches = StreamPlan.build(arch, ("face", "object")).layers[i]  # face mix, object task
    layer = block.get_active_subnet(heads, hidden, branches).eval()
    assert_same_state(layer.norm1, block.norm1)
    assert_same_state(layer.norm2, block.norm2)
    assert torch.equal(layer.mix_face, block.router_logits[0].softmax(-1))
    x = tokens()
    with torch.no_grad():
        outs = layer([x, x + 1])
        assert torch.allclose(outs[0], block(x, heads, hidden, ["mix"], ["face"]), atol=1e-6)
        assert torch.allclose(outs[1], block(x + 1, heads, hidden, ["task"], ["object"]), atol=1e-6)


def test_extracted_equals_supernet_on_random_weights(tiny, random_supernet):
    arch = tiny.parse(ARCH)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    subnet = extract(random_supernet, arch, tiny.tasks)
    with torch.no_grad():
        for out, task in zip(subnet(images), tiny.tasks):
            want = random_supernet(images, arch, task)
            assert want.abs().mean() > 0.1  # not washed out by the small weights
            assert torch.allclose(out, want, atol=1e-5), task


def test_a_fresh_subnet_has_the_extracted_ones_shapes_and_runs_like_it(tiny, random_supernet):
    """SubnetViT built from scratch (as a subnet checkpoint is loaded) takes the extracted
    subnet's state dict key for key, shape for shape, and then computes the same."""
    from ufo_nas.supernet import SubnetViT

    arch, tasks = tiny.parse(ARCH), ("face", "object")
    extracted = extract(random_supernet, arch, tasks)
    fresh = SubnetViT(tiny.spec, arch, tasks).eval()
    want = {k: v.shape for k, v in extracted.state_dict().items()}
    assert {k: v.shape for k, v in fresh.state_dict().items()} == want
    mix = [b for name, b in fresh.named_buffers() if name.rpartition(".")[2].startswith("mix_")]
    assert mix and all(m.tolist() == [0.5, 0.5] for m in mix)  # before loading
    fresh.load_state_dict(extracted.state_dict())
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        for a, b in zip(fresh(images), extracted(images)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(("layer", "options", "option"), UNIMPLEMENTED[:1] + UNIMPLEMENTED[2:3])
def test_the_refusal_names_the_layer_the_option_and_the_part(layer, options, option):
    with pytest.raises(SpecError) as info:
        layer(DIM, HEADS if layer is ElasticAttention else HIDDEN, **options)
    part, kind = ("q_norm", "LayerNorm") if option == "qk_norm" else ("norm", "LayerNorm")
    assert str(info.value) == (
        f"{layer.__name__} does not implement timm's {option} (its {part!r} is a {kind})"
    )


def test_a_part_without_a_known_option_is_named_by_its_attribute():
    from ufo_nas.supernet.elastic import MLP_PARTS, refuse_unimplemented

    mlp = Mlp(DIM, HIDDEN)
    mlp.extra = nn.Linear(2, 2)
    with pytest.raises(SpecError) as info:
        refuse_unimplemented(mlp, MLP_PARTS, {})
    assert str(info.value) == (
        "Mlp does not implement timm's option that adds 'extra' (its 'extra' is a Linear)"
    )


def test_attention_dropout_runs_in_training_only():
    big = ElasticAttention(
        DIM, num_heads=HEADS, attn_head_dim=HEAD_DIM, qkv_bias=True, attn_drop=0.5
    )
    big = randomise(big)
    x = tokens()
    with torch.no_grad():
        eval_out = big.forward_active(x, 3)
        torch.testing.assert_close(eval_out, big.forward_active(x, 3), rtol=0, atol=0)
        reference = reference_attention(big, 3)
        reference.attn_drop.p = 0.5
        torch.testing.assert_close(eval_out, reference.eval()(x), rtol=1e-5, atol=1e-6)
        big.train()
        torch.manual_seed(0)
        assert (big.forward_active(x, 3) - eval_out).abs().max() > 1e-2


def test_active_subnets_keep_the_dtype_of_the_supernet():
    big = randomise(ElasticAttention(DIM, num_heads=HEADS, attn_head_dim=HEAD_DIM)).double()
    assert big.get_active_subnet(2).qkv.weight.dtype == torch.float64
    mlp = randomise(ElasticMlp(DIM, HIDDEN)).double()
    assert mlp.get_active_subnet(100).fc1.weight.dtype == torch.float64
