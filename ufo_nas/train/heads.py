"""Training-only task heads: the losses that shape each task's embedding.

CosFace (pytorch-metric-learning's CosFaceLoss, with its own class weights) for every task;
re-identification and retrieval add a batch-hard soft-margin triplet loss
(TripletMarginLoss over BatchHardMiner's triplets). A classification task's CosFace runs on
the trunk's class token, and its normalised class weights become the task's neck, so the
supernet's output for it are logits whose arg-max is CosFace's decision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import CosFaceLoss, TripletMarginLoss
from pytorch_metric_learning.miners import BatchHardMiner
from torch import Tensor, nn

from ufo_nas.train.recipe import TaskRecipe


class TaskHead(nn.Module):
    """The loss of one task over its embeddings (or, classifying, its class tokens)."""

    def __init__(self, task: TaskRecipe, embedding_size: int, num_classes: int, classify: bool):
        super().__init__()
        self.task, self.classify = task, classify
        self.cosface = CosFaceLoss(
            num_classes=num_classes,
            embedding_size=embedding_size,
            margin=task.margin,
            scale=task.scale,
        )
        self.triplet: TripletMarginLoss | None = None
        if "triplet" in task.loss:
            soft = task.triplet_margin == 0
            self.triplet = TripletMarginLoss(margin=task.triplet_margin, smooth_loss=soft)
            self.miner = BatchHardMiner()

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The task's label loss."""
        embeddings = embeddings.float()
        loss = self.cosface(embeddings, labels)
        if self.triplet is not None:
            triplets = self.miner(embeddings, labels)
            loss = loss + self.task.triplet_weight * self.triplet(embeddings, labels, triplets)
        return loss

    def logits(self, embeddings: Tensor) -> Tensor:
        """Scaled cosine logits over the classes (no margin): what distillation matches."""
        return self.cosface.get_logits(embeddings.float())

    @torch.no_grad()
    def write_classifier(self, neck: nn.Linear) -> None:
        """Make `neck` the cosine classifier of this head: unit class weights, no bias."""
        weight = F.normalize(self.cosface.W.t(), dim=1)
        if neck.weight.shape != weight.shape:
            raise ValueError(
                f"neck {tuple(neck.weight.shape)} cannot hold {weight.shape[0]} classes"
            )
        neck.weight.copy_(weight)
        if neck.bias is not None:
            neck.bias.zero_()


def distillation_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL(teacher || student) of softened class distributions, times T^2 (Hinton et al.)."""
    t = temperature
    target = F.softmax(teacher.detach() / t, dim=1)
    return F.kl_div(F.log_softmax(student / t, dim=1), target, reduction="batchmean") * t * t
