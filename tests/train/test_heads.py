import math

import torch

from ufo_nas.train.heads import TaskHead, distillation_loss
from ufo_nas.train.recipe import TaskRecipe


def task(loss="cosface", **kw):
    return TaskRecipe("t", loss, margin=0.3, scale=10.0, batch_size=8, **kw)


def test_cosface_is_the_margin_softmax_of_scaled_cosines():
    torch.manual_seed(0)
    head = TaskHead(task(), embedding_size=6, num_classes=4, classify=False)
    x, y = torch.randn(8, 6), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(
        head.cosface.W, dim=0
    )
    want = torch.nn.functional.cross_entropy(10.0 * (cos - 0.3 * torch.eye(4)[y]), y)
    assert torch.allclose(head(x, y), want, atol=1e-5)
    assert torch.allclose(head.logits(x), 10.0 * cos, atol=1e-5)


def test_triplet_adds_the_batch_hard_soft_margin_loss():
    torch.manual_seed(1)
    plain = TaskHead(task(), 6, 4, classify=False)
    both = TaskHead(task("cosface+triplet", triplet_weight=2.0), 6, 4, classify=False)
    both.cosface.load_state_dict(plain.cosface.state_dict())
    x, y = torch.randn(8, 6), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    unit = torch.nn.functional.normalize(x, dim=1)
    d = torch.cdist(unit, unit)
    same = y[:, None] == y[None, :]
    hardest_pos = (d * (same & ~torch.eye(8, dtype=bool))).max(1).values
    hardest_neg = d.masked_fill(same, math.inf).min(1).values
    triplet = torch.nn.functional.softplus(hardest_pos - hardest_neg).mean()
    assert torch.allclose(both(x, y) - plain(x, y), 2.0 * triplet, atol=1e-5)


def test_a_classifier_neck_decides_as_cosface_does():
    torch.manual_seed(2)
    head = TaskHead(task(), embedding_size=6, num_classes=5, classify=True)
    neck = torch.nn.Linear(6, 5)
    head.write_classifier(neck)
    x = torch.randn(50, 6) * torch.rand(50, 1) * 4
    assert torch.equal(neck(x).argmax(1), head.logits(x).argmax(1))
    assert torch.count_nonzero(neck.bias) == 0


def test_distillation_is_zero_for_the_teacher_and_the_scaled_kl_otherwise():
    teacher = torch.tensor([[2.0, 0.0, -1.0]])
    assert distillation_loss(teacher.clone(), teacher, 2.0).abs() < 1e-6
    student = torch.tensor([[0.0, 1.0, 0.0]])
    p, q = torch.softmax(teacher / 2, 1), torch.softmax(student / 2, 1)
    kl = (p * (p / q).log()).sum() * 4
    assert torch.allclose(distillation_loss(student, teacher, 2.0), kl)
