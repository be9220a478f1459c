"""CAL: clothes classifier + clothes-based adversarial loss with the two-step update (CAL paper §3.2;
Simple-CCReID's train.py, train_cal; docs/methods.md#two-step-update)."""
from __future__ import annotations

import numpy as np
import torch

from pipeline.errors import InputError

from ..distributed import average_gradients, broadcast_parameters
from ..losses import ClothesBasedAdversarialLoss, CosFaceLoss
from ..models import NormalizedClassifier
from ..optim import build_optimizer
from ..precision import Precision
from .base import register
from .baseline import Baseline


@register("cal")
class CAL(Baseline):
    def __init__(self, cfg: dict, num_pids: int, pid2clothes: np.ndarray, device: torch.device,
                 resources: dict | None = None):
        if pid2clothes is None:
            raise InputError("CAL needs clothes labels, and this dataset has none (protocol.json: has_clothes false)")
        super().__init__(cfg, num_pids, pid2clothes, device, resources)
        if pid2clothes.shape[0] != num_pids:
            raise ValueError(f"pid2clothes has {pid2clothes.shape[0]} rows but there are {num_pids} "
                             "training identities")
        self.pid2clothes = torch.as_tensor(pid2clothes, dtype=torch.float32, device=device)
        self.clothes_classifier = NormalizedClassifier(self.model.features.dim, pid2clothes.shape[1]).to(device)
        losses = cfg["loss"]
        self.clothes_loss = CosFaceLoss(losses["clothes"]["scale"], losses["clothes"]["margin"])
        self.cal_loss = ClothesBasedAdversarialLoss(losses["cal"]["scale"], losses["cal"]["epsilon"])
        self.start_cc, self.start_adv = cfg["start_epoch_cc"], cfg["start_epoch_adv"]
        # optimizer_cc keeps a constant lr: CAL's scheduler steps only the main optimiser
        self.optimizer_cc = build_optimizer(self.clothes_classifier.parameters(), cfg["optim"])
        self.modules["clothes_classifier"] = self.clothes_classifier
        self.optimizers["optimizer_cc"] = self.optimizer_cc

    def wrap_distributed(self, device: torch.device) -> None:
        super().wrap_distributed(device)
        # seeds differ per rank, so the unwrapped clothes classifier must start from rank 0's weights
        broadcast_parameters(self.clothes_classifier)

    def train_step(self, images, pids, camids, clothes, epoch: int, precision: Precision) -> dict[str, float]:
        with precision.autocast():
            f, logits = self.net(images)
            f, logits = f.float(), logits.float()
            # step 1: the clothes classifier learns clothes from detached features
            loss_clo = self.clothes_loss(self.clothes_classifier(f.detach()), clothes)
        stats = {"loss_clothes": loss_clo.item()}
        if epoch >= self.start_cc:
            self.optimizer_cc.zero_grad(set_to_none=True)
            precision.backward(loss_clo)
            # not DDP-wrapped (it is called twice per step): average its gradients by hand
            average_gradients(self.clothes_classifier.parameters())
            precision.step(self.optimizer_cc)
        # step 2: backbone + identity classifier, adversarial against the freshly updated clothes classifier
        with precision.autocast():
            loss, id_stats = self.identity_losses(f, logits, pids)
            stats.update(id_stats)
            if epoch >= self.start_adv:
                cosine = self.clothes_classifier(f)
                loss_cal = self.cal_loss(cosine.float(), clothes, self.pid2clothes[pids])
                loss = loss + loss_cal
                stats["loss_cal"] = loss_cal.item()
        self.optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.step(self.optimizer)
        precision.update()
        return stats
