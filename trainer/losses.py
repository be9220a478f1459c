"""The methods' losses. From CAL's code (Simple-CCReID's losses/*.py; CAL paper eqs. (2)–(5);
docs/methods.md#losses): label-smoothed CE, cosine batch-hard triplet, CosFace, CAL. Besides: CRE+BSGA's cross-clothes
triplet, DeSKPro's knowledge distillation and 3DSL's LSGAN terms (docs/methods.md)."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import InputError
from pipeline.registry import Registry

from .distributed import gather_with_local_grad


class CrossEntropyLabelSmooth(nn.Module):
    def __init__(self, epsilon: float = 0.1):
        super().__init__()
        self.epsilon = epsilon

    def forward(self, logits, targets):
        log_probs = F.log_softmax(logits, dim=1)
        k = logits.size(1)
        q = torch.full_like(log_probs, self.epsilon / k)
        q.scatter_(1, targets[:, None], 1 - self.epsilon + self.epsilon / k)
        return (-q * log_probs).sum(1).mean()


class TripletLoss(nn.Module):
    """Batch-hard triplet; the other side is gathered over processes.

    distance "cosine": 1 - cos of L2-normalised features (Simple-CCReID's losses/triplet_loss.py);
    "euclidean": the Euclidean distance of the raw features, as torchreid's TripletLoss and DeSKPro's
    loss/triplet.py compute it (sqrt of the squared distance clamped at 1e-12)."""

    def __init__(self, margin: float = 0.3, distance: str = "cosine"):
        super().__init__()
        if distance not in ("cosine", "euclidean"):
            raise InputError(f"triplet distance must be cosine or euclidean, got {distance!r}")
        self.margin, self.distance = margin, distance

    def _distances(self, features):
        if self.distance == "cosine":
            f = F.normalize(features, dim=1)
            return 1 - f @ gather_with_local_grad(f).t()
        others = gather_with_local_grad(features)
        d2 = (features.pow(2).sum(1, keepdim=True) + others.pow(2).sum(1)[None, :] - 2 * features @ others.t())
        return d2.clamp(min=1e-12).sqrt()

    def forward(self, features, targets, clothes=None, valid=None):
        """clothes given: 3DSL's clothes-aware sampling (paper §3.3) — an anchor's positives are its
        identity in *other* clothes; an anchor with none of those in the batch falls back to its identity.
        valid given (B booleans): only those rows are anchors, positives and negatives (DeSKPro's face losses
        with data.missing_faces: mask); rows are masked rather than dropped so that every process gathers
        the same number of them. No valid anchor: 0, still connected to the graph."""
        dist = self._distances(features)
        all_t = gather_with_local_grad(targets)
        same = (targets[:, None] == all_t[None, :]).float()
        is_pos = same
        if clothes is not None:
            cross = same * (clothes[:, None] != gather_with_local_grad(clothes)[None, :]).float()
            is_pos = torch.where(cross.sum(1, keepdim=True) > 0, cross, same)
        usable = torch.ones_like(same)
        if valid is not None:
            usable = gather_with_local_grad(valid.float())[None, :].expand_as(same)
        excluded = (same + (1 - usable)).clamp(max=1)  # = same when every row is usable
        hardest_pos = (dist * is_pos * usable).max(1).values
        hardest_neg = (dist * (1 - excluded) + excluded * 1e8).min(1).values
        per_anchor = F.relu(hardest_pos - hardest_neg + self.margin)
        if valid is None:
            return per_anchor.mean()
        w = valid.float()
        return (per_anchor * w).sum() / w.sum().clamp(min=1.0)


class CrossClothesTripletLoss(nn.Module):
    """CRE+BSGA's batch cross-clothes triplet (Mu et al. §3.3, eq. (7)): for every anchor, one triplet per
    positive of its identity in *other* clothes in the batch, each with the anchor's hardest negative (closest
    other identity); cosine distance of L2-normalised features, hinge at `margin`. An anchor with no such
    positive gives no triplet. The paper sums an anchor's triplets and does not say how anchors combine:
    `average` "triplets" is the mean over every triplet of the batch, "anchors" the mean over anchors (that have
    one) of each anchor's sum. The other side is gathered over processes as in TripletLoss.

    forward → (loss, fraction of anchors without a cross-clothes positive)."""

    AVERAGES = ("triplets", "anchors")

    def __init__(self, margin: float = 0.3, average: str = "triplets"):
        super().__init__()
        if average not in self.AVERAGES:
            raise InputError(f"loss.triplet.average must be one of {', '.join(self.AVERAGES)}, got {average!r}")
        self.margin, self.average = margin, average

    def forward(self, features, targets, clothes):
        f = F.normalize(features, dim=1)
        dist = 1 - f @ gather_with_local_grad(f).t()
        same = targets[:, None] == gather_with_local_grad(targets)[None, :]
        cross = same & (clothes[:, None] != gather_with_local_grad(clothes)[None, :])
        hardest_neg = (dist + same.float() * 1e8).min(1).values
        hinge = F.relu(self.margin + dist - hardest_neg[:, None]) * cross.float()
        per_anchor = cross.sum(1)
        has = per_anchor > 0
        without = 1.0 - has.float().mean().item()
        if not has.any():  # no identity in other clothes in this batch: zero, still connected to the graph
            return features.sum() * 0.0, without
        if self.average == "triplets":
            return hinge.sum() / per_anchor.sum(), without
        return hinge.sum(1)[has].mean(), without


def knowledge_distillation_loss(student_logits: list[torch.Tensor], teacher_logits: list[torch.Tensor],
                                temperature: float) -> torch.Tensor:
    """DeSKPro's L_KD (its loss/kd_loss.py; paper eq. (6)): over the logit pairs, KL(softmax(t/T) ‖
    softmax(s/T)) averaged over the batch (KLDivLoss 'batchmean'), × T²; the teacher is not trained by it."""
    if len(student_logits) != len(teacher_logits):
        raise ValueError(f"{len(student_logits)} student and {len(teacher_logits)} teacher logit sets")
    t2 = temperature * temperature
    return sum(F.kl_div(F.log_softmax(s / temperature, dim=1), F.softmax(t.detach() / temperature, dim=1),
                        reduction="batchmean") * t2 for s, t in zip(student_logits, teacher_logits, strict=True))


class CosFaceLoss(nn.Module):
    """CE over s·(cos - m·onehot); with m = 0 this is CAL's clothes classification loss."""

    def __init__(self, scale: float = 16.0, margin: float = 0.0):
        super().__init__()
        self.scale, self.margin = scale, margin

    def forward(self, cosine, targets):
        onehot = F.one_hot(targets, cosine.size(1)).to(cosine.dtype)
        return F.cross_entropy(self.scale * (cosine - self.margin * onehot), targets)


class ClothesBasedAdversarialLoss(nn.Module):
    """L_CAL: each clothes class competes only with other identities' clothes (and itself); the target
    puts 1-ε on the true clothes and spreads ε over all clothes of the same identity."""

    def __init__(self, scale: float = 16.0, epsilon: float = 0.1):
        super().__init__()
        self.scale, self.epsilon = scale, epsilon

    def forward(self, cosine, targets, positive_mask):
        z = self.scale * cosine
        negatives = torch.where(positive_mask > 0, torch.full_like(z, float("-inf")), z)
        # log(Σ_{j negative} e^{z_j} + e^{z_c}) for every class c, computed stably
        log_denominator = torch.logaddexp(torch.logsumexp(negatives, dim=1, keepdim=True), z)
        log_prob = z - log_denominator
        onehot = F.one_hot(targets, z.size(1)).to(z.dtype)
        target = (1 - self.epsilon) * onehot + self.epsilon * positive_mask / positive_mask.sum(1, keepdim=True)
        return (-target * log_prob).sum(1).mean()


def lsgan_discriminator_loss(real_scores, fake_scores):
    """Eq. (2): E[(1 − D(real))²] + E[D(fake)²], each summed over D's outputs, averaged over samples."""
    return ((real_scores - 1) ** 2).sum(1).mean() + (fake_scores**2).sum(1).mean()


def lsgan_generator_loss(fake_scores):
    """Eq. (3): E[(1 − D(fake))²], summed over D's outputs, averaged over samples."""
    return ((fake_scores - 1) ** 2).sum(1).mean()


# loss.id.type -> (loss.id config) -> identity loss module
ID_LOSSES: Registry[Callable[[dict], nn.Module]] = Registry("identity loss (loss.id.type)")
ID_LOSSES.add("crossentropy", lambda cfg: nn.CrossEntropyLoss())
ID_LOSSES.add("crossentropylabelsmooth", lambda cfg: CrossEntropyLabelSmooth(cfg["epsilon"]))


def build_identity_loss(cfg: dict) -> nn.Module:
    return ID_LOSSES.get(cfg["type"])(cfg)
