import pytest
import torch

from ufo_nas.latency.operator_modules import build_operator, chainable
from ufo_nas.latency.operator_set import space_operators


def test_tiny_operators_cover_the_space(tiny):
    keys = [op.key for op in space_operators(tiny.spec)]
    assert keys == [
        "stem", "attn.h2", "attn.h3", "attn.h4",
        "ffn.m256.x1", "ffn.m384.x1", "ffn.m512.x1",
        "ffn.m256.x2", "ffn.m384.x2", "ffn.m512.x2",
        "head.face", "head.object", "head.digits",
    ]  # fmt: skip


def test_operators_run_and_chain(tiny):
    spec = tiny.spec
    for op in space_operators(spec):
        module, example = build_operator(spec, op, batch=2)
        with torch.no_grad():
            out = module(example)
        if op.kind == "head":
            assert out.shape == (2, spec.task(op.task).embed_dim)
        else:
            assert out.shape == (2, spec.num_tokens, spec.embed_dim)
        if chainable(op):
            chain, _ = build_operator(spec, op, copies=3)
            assert len(chain) == 3
            assert chain[0].state_dict().keys() == chain[1].state_dict().keys()
        else:
            with pytest.raises(ValueError, match="cannot be chained"):
                build_operator(spec, op, copies=2)
