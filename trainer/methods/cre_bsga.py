"""CRE+BSGA (Mu et al., "Clothes-Changing Person Re-identification with Clothes-Relevant Information Erasure and
Body Shape-Guided Attention"; no public code: the paper is the specification; docs/methods.md#crebsga).

Each of the M sampled images and its clothes-erased copy (CRE) share the identity and clothes labels and go
through the network in one batch of 2M; BSGA re-weights the stage-2 map by the body mask. Loss (eq. (8)):
L = L_id over the 2M images + λ · L_ccTri, the batch cross-clothes triplet on the BN features (eq. (7)).
The ablation switches give Table 4's rows (baseline, + CRE, + BSGA, both) and Table 6's triplet variants.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.errors import InputError

from ..cre_data import CREItems
from ..losses import CrossClothesTripletLoss, TripletLoss, build_identity_loss
from ..models import ReIDModel
from ..models.bsga import BSGANet
from ..optim import build_optimizer, build_scheduler
from ..precision import Precision
from .base import Method, register

MININGS = ("cross_clothes", "batch_hard", "none")


def check_config(cfg: dict) -> None:
    ab, mining = cfg["ablation"], cfg["loss"]["triplet"]["mining"]
    if mining not in MININGS:
        raise InputError(f"CRE+BSGA: loss.triplet.mining must be one of {', '.join(MININGS)}, got {mining!r}")
    if cfg["test"]["bsga"] and not ab["bsga"]:
        raise InputError("CRE+BSGA: test.bsga needs ablation.bsga (a network trained without BSGA has none)")
    if cfg["test"]["bsga"] and "cloth_masks" not in cfg["test"]["stores"]:
        raise InputError("CRE+BSGA: BSGA at test reads each test image's body mask: test.stores must name "
                         "cloth_masks (or set test.bsga: false)")


@register("cre_bsga")
class CREBSGA(Method):
    test_keys = ("bsga", "stores")  # BSGA on or off at test: the same weights either way

    def __init__(self, cfg: dict, num_pids: int, pid2clothes: np.ndarray | None, device: torch.device,
                 resources: dict | None = None):
        check_config(cfg)
        m, ab, loss = cfg["model"], cfg["ablation"], cfg["loss"]
        self.mining = loss["triplet"]["mining"]
        if self.mining == "cross_clothes" and pid2clothes is None:
            raise InputError("CRE+BSGA's cross-clothes triplet needs clothes labels, and this dataset has none "
                             "(protocol.json: has_clothes false); use loss.triplet.mining batch_hard or none")
        self.cre, self.ab = ab["cre"], ab
        self.spec = {"backbone": m["backbone"], "last_stride": m["last_stride"], "pooling": m["pooling"],
                     "bsga": ab["bsga"], "bsga_reduction": m["bsga_reduction"]}
        self.model = ReIDModel(BSGANet(pretrained=m["pretrained"], **self.spec), num_pids).to(device)
        self.test_feature_net(self.model.features, cfg)
        self.net: nn.Module = self.model
        self.id_loss = build_identity_loss(loss["id"])
        t = loss["triplet"]
        self.triplet_weight = t["weight"]
        self.cross_clothes = CrossClothesTripletLoss(t["margin"], t["average"])
        self.batch_hard = TripletLoss(t["margin"], "cosine")
        self.optimizer = build_optimizer(self.model.parameters(), cfg["optim"])
        self.modules = {"model": self.model}
        self.optimizers = {"optimizer": self.optimizer}
        self.schedulers = {"scheduler": build_scheduler(self.optimizer, cfg["optim"])}

    @classmethod
    def _items(cls, pack, samples, cfg: dict, stores: dict, train: bool) -> CREItems:
        d, ab, cre = cfg["data"], cfg["ablation"], cfg["cre"]
        bsga = ab["bsga"] and (train or cfg["test"]["bsga"])
        return CREItems(pack, samples, stores, height=d["height"], width=d["width"], cre=ab["cre"], bsga=bsga,
                        train=train, augment=d["augment"], erase=cre["erase"], parts=tuple(cre["parts"]))

    @classmethod
    def training_dataset(cls, pack, samples, cfg: dict, stores: dict, video: bool):
        if video:
            raise InputError("CRE+BSGA is an image method; this dataset is video")
        check_config(cfg)
        return cls._items(pack, samples, cfg, stores, True)

    @classmethod
    def test_dataset(cls, pack, samples, cfg: dict, stores: dict, video: dict | None):
        return cls._items(pack, samples, cfg, stores, False)

    @classmethod
    def test_feature_net(cls, net: BSGANet, cfg: dict) -> BSGANet:
        check_config(cfg)
        net.bsga_at_test = cfg["test"]["bsga"]
        return net

    def feature_net(self) -> BSGANet:
        return self.model.features

    def feature_net_spec(self) -> dict:
        return {"kind": "bsga", "kwargs": dict(self.spec)}

    def wrap_distributed(self, device: torch.device) -> None:
        self.net = self.ddp(self.model, device)

    def train_step(self, images, pids, camids, clothes, epoch: int, precision: Precision) -> dict[str, float]:
        x = {"image": images["image"]}
        if "body_mask" in images:
            x["body_mask"] = images["body_mask"]
        if self.cre:  # eq. (6): the 2M images of the batch, the erased copies with their originals' labels
            x["image"] = torch.cat([images["image"], images["erased"]])
            if "body_mask" in x:
                x["body_mask"] = torch.cat([x["body_mask"], x["body_mask"]])
            pids, clothes = torch.cat([pids, pids]), torch.cat([clothes, clothes])
        with precision.autocast():
            f, logits = self.net(x)
            f, logits = f.float(), logits.float()
            loss = self.id_loss(logits, pids)
            stats = {"loss_id": loss.item(), "acc_id": (logits.argmax(1) == pids).float().mean().item()}
            if self.mining != "none" and self.triplet_weight > 0:
                if self.mining == "cross_clothes":
                    l_tri, without = self.cross_clothes(f, pids, clothes)
                    # how often an anchor's identity shows no other clothes in the batch (it adds no triplet)
                    stats["anchors_without_cross_clothes_positive"] = without
                else:
                    l_tri = self.batch_hard(f, pids)
                loss = loss + self.triplet_weight * l_tri
                stats["loss_triplet"] = l_tri.item()
        self.optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.step(self.optimizer)
        precision.update()
        return stats
