"""CRE+BSGA's network (Mu et al., "Clothes-Changing Person Re-identification with Clothes-Relevant Information
Erasure and Body Shape-Guided Attention", §3.2; no public code; docs/methods.md#crebsga): a ResNet (last stride
1) whose stage-2 map is re-weighted by the body shape-guided attention (BSGA) before stage 3, then global pooling
and a BN neck; the BN feature feeds the identity classifier, the triplet loss and testing (§3.3).

BSGA, eqs. (2)–(5): X_r = a channel reduction of the stage-2 map X; M_d = the binary body mask bilinearly
resized to X's size; X_c = [X_r, M_d]; A_s = f7×7(X_c); A_f = σ(A_s ⊙ f7×7(M_d)); X_out = X ⊙ A_f.
The paper's text (an OCR'd copy) gives X_c three channels, so X_r has two: ccreid reads the reduction as
CBAM's channel-wise mean and max (`reduction: meanmax`, the default); `reduction: conv` is a learned 1×1
convolution to two channels instead. The 7×7 convolutions have no bias (not stated; CBAM's have none).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import InputError

from .backbones import build_resnet
from .reid import build_pooling

REDUCTIONS = ("meanmax", "conv")


class BSGA(nn.Module):
    """forward(X: B×C×H×W, mask: B×1×h×w in [0, 1]) → (X ⊙ A_f, A_f: B×1×H×W)."""

    def __init__(self, channels: int, reduction: str = "meanmax", kernel_size: int = 7):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise InputError(f"BSGA: model.bsga_reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise InputError(f"BSGA: kernel_size must be odd and positive, got {kernel_size}")
        self.reduction = reduction
        self.reduce = nn.Conv2d(channels, 2, 1, bias=False) if reduction == "conv" else None
        pad = kernel_size // 2
        self.conv_joint = nn.Conv2d(3, 1, kernel_size, padding=pad, bias=False)  # f7×7 over X_c (eq. 3)
        self.conv_mask = nn.Conv2d(1, 1, kernel_size, padding=pad, bias=False)   # f7×7 over M_d (eq. 4)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = F.interpolate(mask.to(x.dtype), size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.reduce is not None:
            reduced = self.reduce(x)
        else:
            reduced = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        a_s = self.conv_joint(torch.cat([reduced, m], 1))
        a_f = torch.sigmoid(a_s * self.conv_mask(m))
        return x * a_f, a_f


class BSGANet(nn.Module):
    """Image (and body mask) → BN feature.

    forward(x) with x a B×3×H×W tensor or a dict {"image", "body_mask"}: with `bsga` the mask is required in
    training; at test it is used when `bsga_at_test` (the config's test.bsga; else the stage-2 map passes
    unweighted, so inference needs no parsing — the attention the network was trained with is then missing, which
    the metrics show).
    """

    def __init__(self, backbone: str = "resnet50", pretrained: str = "none", last_stride: int = 1,
                 pooling: str = "avg", bsga: bool = True, bsga_reduction: str = "meanmax", bsga_at_test: bool = True):
        super().__init__()
        net = build_resnet(backbone, pretrained, last_stride)
        self.stage12 = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2)
        channels = net.layer3[0].conv1.in_channels  # stage 2's output, Bottleneck or BasicBlock
        self.bsga = BSGA(channels, bsga_reduction) if bsga else None
        self.bsga_at_test = bsga_at_test
        self.stage34 = nn.Sequential(net.layer3, net.layer4)
        self.pool, mult = build_pooling(pooling)
        self.dim = net.fc.in_features * mult
        self.bn = nn.BatchNorm1d(self.dim)
        nn.init.normal_(self.bn.weight, 1.0, 0.02)
        nn.init.zeros_(self.bn.bias)

    def uses_mask(self) -> bool:
        return self.bsga is not None and (self.training or self.bsga_at_test)

    def forward(self, x):
        image = x["image"] if isinstance(x, dict) else x
        fmap = self.stage12(image)
        if self.uses_mask():
            if not isinstance(x, dict) or "body_mask" not in x:
                raise InputError("BSGA needs the body mask with the image (items {'image', 'body_mask'})")
            fmap, _ = self.bsga(fmap, x["body_mask"])
        return self.bn(self.pool(self.stage34(fmap)).flatten(1))
