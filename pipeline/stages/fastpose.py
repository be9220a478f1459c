"""AlphaPose's FastPose (SE-ResNet-50 + PixelShuffle + DUC, 17 COCO heatmaps at 64×48 from 256×192),
written here because the PyPI `alphapose` wheel lacks `alphapose/models/layers`
(docs/environment.md#alphapose).

The module names reproduce the official checkpoint's state-dict keys (`preact.*`, `duc1.*`, `duc2.*`,
`conv_out.*`), so `fast_res50_256x192.pth` loads strictly. The trunk is torchvision's ResNet-50 (the same
key layout AlphaPose's SEResnet uses, so it could start from ImageNet weights), with a squeeze-excitation
layer after the last BN of the first block of every stage, where AlphaPose puts it.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck

from .backends import load_state_strictly, load_weights

NUM_JOINTS = 17
INPUT_SIZE = (256, 192)  # H, W
PIXEL_MEAN = (0.406, 0.457, 0.480)  # subtracted from RGB / 255; AlphaPose does not divide by a std


class SqueezeExcitation(nn.Module):
    """Channel gates from globally pooled features (AlphaPose: reduction 1, so C -> C -> C)."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(inplace=True), nn.Linear(channels, channels),
                                nn.Sigmoid())

    def forward(self, x):
        return x * self.fc(x.mean((2, 3)))[:, :, None, None]


class SEBottleneck(Bottleneck):
    """torchvision's Bottleneck with the gate applied to the residual branch before the addition."""

    se: SqueezeExcitation

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class SEResNet50(torchvision.models.ResNet):
    """The trunk up to layer4 (stride 32), gated first blocks, no pooling or classifier."""

    def __init__(self):
        super().__init__(Bottleneck, [3, 4, 6, 3])
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            first = layer[0]
            first.__class__ = SEBottleneck  # same weights, forward with the gate
            first.se = SqueezeExcitation(first.conv3.out_channels)
        del self.avgpool, self.fc

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class DUC(nn.Module):
    """Dense upsampling convolution: conv 3×3 -> BN -> ReLU -> PixelShuffle(2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pixel_shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        return self.pixel_shuffle(self.relu(self.bn(self.conv(x))))


class FastPose(nn.Module):
    def __init__(self, num_joints: int = NUM_JOINTS):
        super().__init__()
        self.preact = SEResNet50()
        self.suffle1 = nn.PixelShuffle(2)  # (sic) the official attribute name; it holds no weights
        self.duc1 = DUC(512, 1024)
        self.duc2 = DUC(256, 512)
        self.conv_out = nn.Conv2d(128, num_joints, 3, padding=1)

    def forward(self, x):
        return self.conv_out(self.duc2(self.duc1(self.suffle1(self.preact(x)))))


def load_fastpose(path: str | Path, device: torch.device | str = "cpu") -> FastPose:
    """FastPose with the weights of an official AlphaPose COCO checkpoint (DataParallel's 'module.'
    prefix accepted); an unreadable file, or one with other keys or shapes, is an error naming it."""
    from .keypoints import AlphaPose

    what = "an AlphaPose FastPose (ResNet-50, COCO-17) checkpoint"
    state = load_weights(AlphaPose, str(path), what)  # a bad file fails before the network is built
    return load_state_strictly(FastPose(), state, path, what, AlphaPose.weights_hint()).to(device).eval()
