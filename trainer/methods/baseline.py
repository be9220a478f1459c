"""Baseline: ResNet (last stride 1) + GMP⊕GAP + BN, label-smoothed CE, optional triplet
(docs/methods.md#baseline)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..losses import TripletLoss, build_identity_loss
from ..models import FeatureNet, ReIDModel
from ..optim import build_optimizer, build_scheduler
from ..precision import Precision
from .base import Method, register


@register("baseline")
class Baseline(Method):
    def __init__(self, cfg: dict, num_pids: int, pid2clothes: np.ndarray | None, device: torch.device,
                 resources: dict | None = None):
        m = cfg["model"]
        self.model = ReIDModel(FeatureNet(m["backbone"], m["pretrained"], m["last_stride"], m["pooling"]),
                               num_pids).to(device)
        self.cfg_model = m
        self.net: nn.Module = self.model  # DDP-wrapped view used for training
        self.id_loss = build_identity_loss(cfg["loss"]["id"])
        self.triplet_weight = cfg["loss"]["triplet"]["weight"]
        self.triplet = TripletLoss(cfg["loss"]["triplet"]["margin"])
        optim = cfg["optim"]
        self.optimizer = build_optimizer(self.model.parameters(), optim)
        self.modules = {"model": self.model}
        self.optimizers = {"optimizer": self.optimizer}
        self.schedulers = {"scheduler": build_scheduler(self.optimizer, optim)}

    def feature_net(self) -> FeatureNet:
        return self.model.features

    def feature_net_spec(self) -> dict:
        m = self.cfg_model
        return {"kind": "featurenet", "kwargs": {"backbone": m["backbone"], "last_stride": m["last_stride"],
                                                 "pooling": m["pooling"]}}

    def wrap_distributed(self, device: torch.device) -> None:
        self.net = self.ddp(self.model, device)

    def identity_losses(self, f, logits, pids) -> tuple[torch.Tensor, dict[str, float]]:
        loss_id = self.id_loss(logits, pids)
        stats = {"loss_id": loss_id.item(), "acc_id": (logits.argmax(1) == pids).float().mean().item()}
        loss = loss_id
        if self.triplet_weight > 0:
            loss_tri = self.triplet(f, pids)
            loss = loss + self.triplet_weight * loss_tri
            stats["loss_triplet"] = loss_tri.item()
        return loss, stats

    def train_step(self, images, pids, camids, clothes, epoch: int, precision: Precision) -> dict[str, float]:
        with precision.autocast():
            f, logits = self.net(images)
            loss, stats = self.identity_losses(f.float(), logits.float(), pids)
        self.optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.step(self.optimizer)
        precision.update()
        return stats
