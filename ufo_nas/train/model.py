"""The supernet with its training heads: one module for DDP to wrap."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ufo_nas.space import Arch
from ufo_nas.supernet import SuperViT
from ufo_nas.train.heads import TaskHead, distillation_loss


@dataclass(frozen=True)
class Objective:
    """What a subnet learns from: labels, the teacher's logits, or both (weights)."""

    label_weight: float = 1.0
    distill_weight: float = 0.0
    temperature: float = 1.0


class MultiTaskModel(nn.Module):
    """SuperViT + one TaskHead per trained task.

    `forward` runs one subnet over a heterogeneous batch (every task's images in one trunk
    pass) and returns the weighted loss, each task's loss and each task's logits. Every
    trainable parameter joins the graph (a zero-weighted term for those the subnet skips,
    as UFO does), so DDP needs no unused-parameter search and all ranks reduce alike.
    """

    def __init__(self, supernet: SuperViT, heads: dict[str, TaskHead]):
        super().__init__()
        self.supernet = supernet
        self.heads = nn.ModuleDict(heads)

    def embeddings(self, images: dict[str, Tensor], arch: Arch) -> dict[str, Tensor]:
        """Per task: the neck's embedding, or the class token for a classifying head."""
        tokens = self.supernet.forward_tasks(images, arch)
        return {
            task: cls[:, 0] if self.heads[task].classify else self.supernet.necks[task](cls[:, 0])
            for task, cls in tokens.items()
        }

    def forward(
        self,
        images: dict[str, Tensor],
        labels: dict[str, Tensor],
        arch: Arch,
        weights: dict[str, float],
        objective: Objective,
        teacher: dict[str, Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        embeddings = self.embeddings(images, arch)
        total = torch.zeros((), dtype=torch.float32, device=next(self.parameters()).device)
        losses, logits = {}, {}
        for task, emb in embeddings.items():
            head = self.heads[task]
            logits[task] = head.logits(emb)
            loss = torch.zeros_like(total)
            if objective.label_weight:
                loss = loss + objective.label_weight * head(emb, labels[task])
            if objective.distill_weight and teacher is not None:
                kd = distillation_loss(logits[task], teacher[task], objective.temperature)
                loss = loss + objective.distill_weight * kd
            losses[task] = loss
            total = total + weights[task] * loss
        touch = sum(p.reshape(-1)[0] for p in self.parameters() if p.requires_grad)
        return total + 0.0 * touch, losses, logits

    def write_classifiers(self) -> None:
        """Copy each classifying head's class weights into its task's neck."""
        for task, head in self.heads.items():
            if head.classify:
                head.write_classifier(self.supernet.necks[task])
