"""CAL's image model (Simple-CCReID's models/img_resnet.py; docs/methods.md#image-model): trunk -> pooling
-> BatchNorm1d; identity/clothes classifiers."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.registry import Registry

from .backbones import build_backbone


class GeMPooling(nn.Module):
    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x):
        return F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(self.p), 1).pow(1.0 / self.p)


class MaxAvgPooling(nn.Module):
    """cat[global max, global average], in that order."""

    def forward(self, x):
        return torch.cat([F.adaptive_max_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1)], dim=1)


# name -> () -> (pooling module, output channels per trunk channel)
POOLINGS: Registry[Callable[[], tuple[nn.Module, int]]] = Registry("pooling")
POOLINGS.add("avg", lambda: (nn.AdaptiveAvgPool2d(1), 1))
POOLINGS.add("max", lambda: (nn.AdaptiveMaxPool2d(1), 1))
POOLINGS.add("gem", lambda: (GeMPooling(), 1))
POOLINGS.add("maxavg", lambda: (MaxAvgPooling(), 2))


def build_pooling(name: str) -> tuple[nn.Module, int]:
    return POOLINGS.get(name)()


class FeatureNet(nn.Module):
    """Image -> BN feature f (the feature used by classifiers, triplet loss and testing).

    A clip (B×T×C×H×W) runs through the same 2-D trunk frame by frame; the pooled frame features are
    averaged over time before the BN: CAL's C2D video model (Simple-CCReID's models/vid_resnet.py;
    docs/methods.md#video-model) with pooling 'max'.
    """

    def __init__(self, backbone: str = "resnet50", pretrained: str = "none", last_stride: int = 1,
                 pooling: str = "maxavg"):
        super().__init__()
        self.trunk, channels = build_backbone(backbone, pretrained, last_stride)
        self.pool, mult = build_pooling(pooling)
        self.dim = channels * mult
        self.bn = nn.BatchNorm1d(self.dim)
        nn.init.normal_(self.bn.weight, 1.0, 0.02)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x):
        if x.dim() == 5:
            b, t = x.shape[:2]
            return self.bn(self.pool(self.trunk(x.flatten(0, 1))).flatten(1).view(b, t, -1).mean(1))
        return self.bn(self.pool(self.trunk(x)).flatten(1))


class LinearClassifier(nn.Linear):
    def __init__(self, dim: int, num_classes: int):
        super().__init__(dim, num_classes)
        nn.init.normal_(self.weight, 0, 0.001)
        nn.init.zeros_(self.bias)


class NormalizedClassifier(nn.Module):
    """cos(f, w_c) for every class; unit-norm rows at init. The scale lives in the losses."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        with torch.no_grad():
            self.weight.uniform_(-1, 1).renorm_(2, 0, 1e-5).mul_(1e5)

    def forward(self, x):
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))


class ReIDModel(nn.Module):
    """A feature network (FeatureNet, BSGANet: anything with `dim`) plus the identity classifier: one module, so
    DDP wraps both at once."""

    def __init__(self, features: nn.Module, num_pids: int):
        super().__init__()
        self.features = features
        self.classifier = LinearClassifier(features.dim, num_pids)

    def forward(self, x):
        f = self.features(x)
        return f, self.classifier(f)
