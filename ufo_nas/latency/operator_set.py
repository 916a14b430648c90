"""The distinct operators of a space, as plain data (no torch).

A subnet's latency is the sum of its operators' (then calibrated end to end):
- `stem`: patch embedding, class token and position embedding;
- `attn.h<heads>`: x + attention(norm1(x)), once per stream entering a block;
- `ffn.m<hidden>.x<arity>`: x + FFN(norm2(x)) with one MLP (shared or task path) or a mix
  of two (Task-MoE), once per branch leaving a block;
- `head.<task>`: final norm and the task's embedding neck.
"""

from __future__ import annotations

from dataclasses import dataclass

from ufo_nas.spec import SpaceSpec


@dataclass(frozen=True)
class Operator:
    key: str
    kind: str  # stem, attn, ffn, head
    heads: int = 0
    hidden: int = 0
    arity: int = 0
    task: str = ""


def space_operators(spec: SpaceSpec, tasks: tuple[str, ...] | None = None) -> list[Operator]:
    """Every distinct operator any subnet of the space (for `tasks`) can run."""
    heads = sorted({h for layer in spec.num_heads for h in layer})
    hidden = sorted({spec.hidden_dim(r) for layer in spec.mlp_ratios for r in layer})
    mixable = any("mix" in p for t in spec.tasks for p in t.paths)
    ops = [Operator("stem", "stem")]
    ops += [Operator(f"attn.h{h}", "attn", heads=h) for h in heads]
    for arity in (1, 2) if mixable else (1,):
        ops += [Operator(f"ffn.m{m}.x{arity}", "ffn", hidden=m, arity=arity) for m in hidden]
    ops += [Operator(f"head.{t}", "head", task=t) for t in tasks or spec.task_names]
    return ops
