import math

import numpy as np
import pytest
import torch

from trainer.losses import ClothesBasedAdversarialLoss, CosFaceLoss, CrossEntropyLabelSmooth, TripletLoss


def test_label_smoothed_ce_matches_formula():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    eps, k = 0.1, 3
    logp = torch.log_softmax(logits, 1)[0]
    q = torch.tensor([1 - eps + eps / k, eps / k, eps / k])
    expected = -(q * logp).sum()
    assert CrossEntropyLabelSmooth(eps)(logits, torch.tensor([0])).item() == pytest.approx(expected.item())


def test_cal_loss_worked_example():
    # 1 sample, 3 clothes classes; classes 0 and 1 belong to the sample's identity, class 2 to another.
    cos = torch.tensor([[0.5, 0.1, 0.3]])
    s, eps = 16.0, 0.1
    z = [s * 0.5, s * 0.1, s * 0.3]
    # each class c is normalised against the negatives (class 2) plus itself
    logp = [z[c] - math.log(math.exp(z[2]) + math.exp(z[c])) for c in range(3)]
    target = [(1 - eps) + eps / 2, eps / 2, 0.0]
    expected = -sum(t * lp for t, lp in zip(target, logp, strict=True))
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    got = ClothesBasedAdversarialLoss(s, eps)(cos, torch.tensor([0]), mask)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_cal_loss_is_stable_for_large_scale():
    cos = torch.tensor([[1.0, -1.0, 0.99, 0.98]])
    loss = ClothesBasedAdversarialLoss(scale=200.0)(cos, torch.tensor([0]), torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    assert torch.isfinite(loss)


def test_cal_loss_favours_identity_clothes_being_indistinguishable():
    """Lower when same-identity clothes score alike and other identities' clothes score low."""
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    target = torch.tensor([0])
    cal = ClothesBasedAdversarialLoss()
    good = cal(torch.tensor([[0.8, 0.8, -0.5, -0.5]]), target, mask)
    bad = cal(torch.tensor([[0.8, 0.8, 0.7, 0.7]]), target, mask)
    assert good < bad


def test_cosface_without_margin_is_scaled_ce():
    cos = torch.tensor([[0.2, -0.1, 0.4], [0.0, 0.3, 0.1]])
    y = torch.tensor([2, 0])
    expected = torch.nn.functional.cross_entropy(16 * cos, y)
    assert CosFaceLoss(16, 0)(cos, y).item() == pytest.approx(expected.item())
    assert CosFaceLoss(16, 0.3)(cos, y) > CosFaceLoss(16, 0)(cos, y)


def test_batch_hard_triplet_on_cosine_distance():
    f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    y = torch.tensor([0, 0, 1, 1])
    d = 1 - f @ f.t()  # features already unit length
    expected = np.mean([max(0.0, d[0, 1] - min(d[0, 2], d[0, 3]) + 0.3),
                        max(0.0, d[1, 0] - min(d[1, 2], d[1, 3]) + 0.3),
                        max(0.0, d[2, 3] - min(d[2, 0], d[2, 1]) + 0.3),
                        max(0.0, d[3, 2] - min(d[3, 0], d[3, 1]) + 0.3)])
    assert TripletLoss(0.3)(f, y).item() == pytest.approx(float(expected), abs=1e-6)


def test_euclidean_batch_hard_triplet_by_hand():
    f = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([0, 0, 1, 1])
    # distances: d01 = 5, d02 = 1, d03 = 2, d12 = sqrt(20), d13 = sqrt(13), d23 = sqrt(5)
    margin = 0.7
    hardest = [(5, 1), (5, math.sqrt(13)), (math.sqrt(5), 1), (math.sqrt(5), 2)]
    expected = sum(max(0.0, p - n + margin) for p, n in hardest) / 4
    got = TripletLoss(margin, distance="euclidean")(f, t)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="cosine or euclidean"):
        TripletLoss(0.3, distance="manhattan")


def test_knowledge_distillation_loss_by_hand():
    from trainer.losses import knowledge_distillation_loss

    s = [torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]]), torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])]
    t = [torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]]), torch.tensor([[0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])]
    temperature = 4.0
    expected = 0.0
    for si, ti in zip(s, t, strict=True):
        for row in range(2):
            p = torch.softmax(ti[row] / temperature, 0)
            logq = torch.log_softmax(si[row] / temperature, 0)
            expected += float((p * (torch.log(p) - logq)).sum()) / 2 * temperature ** 2
    teacher = [x.clone().requires_grad_() for x in t]
    student = [x.clone().requires_grad_() for x in s]
    got = knowledge_distillation_loss(student, teacher, temperature)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    got.backward()
    assert all(x.grad is None for x in teacher) and all(x.grad is not None for x in student)
