"""Self-Correction Human Parsing (SCHP, GoGoDuck912/Self-Correction-Human-Parsing; docs/preprocessing.md#schp):
its ResNet-101 + PSP + edge + decoder + fusion network, written here in plain PyTorch because the official
code needs InPlaceABN, a compiled op.

InPlaceABN at inference is batch norm followed by an activation (leaky ReLU, slope 0.01, or none), so the
`ABN` module below computes exactly that and holds the same four tensors (weight, bias, running_mean,
running_var — no num_batches_tracked), which makes the official checkpoints load strictly.
Inference follows SCHP's simple_extractor: the whole image as the box, widened to the input's aspect
ratio, an affine warp to the input size, BGR normalised with SCHP's statistics, the fusion logits
upsampled (bilinear, align_corners) and warped back to the image per class, then argmax.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LABEL_SETS = {
    "lip": ("background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat", "socks", "pants",
            "jumpsuits", "scarf", "skirt", "face", "left-arm", "right-arm", "left-leg", "right-leg", "left-shoe",
            "right-shoe"),
    "atr": ("background", "hat", "hair", "sunglasses", "upper-clothes", "skirt", "pants", "dress", "belt", "left-shoe",
            "right-shoe", "face", "left-leg", "right-leg", "left-arm", "right-arm", "bag", "scarf"),
    "pascal": ("background", "head", "torso", "upper-arms", "lower-arms", "upper-legs", "lower-legs"),
}
INPUT_SIZES = {"lip": 473, "atr": 512, "pascal": 512}
BGR_MEAN, BGR_STD = (0.406, 0.456, 0.485), (0.225, 0.224, 0.229)


class ABN(nn.Module):
    """Batch norm + optional leaky ReLU with InPlaceABN's parameter names."""

    def __init__(self, channels: int, activation: bool = True, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.activation, self.eps, self.momentum = activation, eps, momentum

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training, self.momentum,
                         self.eps)
        return F.leaky_relu(x, 0.01) if self.activation else x


def conv_abn(cin: int, cout: int, kernel: int = 1, padding: int = 0) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=padding, bias=False), ABN(cout))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), ABN(planes, activation=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = ABN(planes, activation=False)
        self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), ABN(planes * 4, activation=False)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class PSP(nn.Module):
    def __init__(self, cin: int = 2048, cout: int = 512, sizes=(1, 2, 3, 6)):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), nn.Conv2d(cin, cout, 1, bias=False), ABN(cout)) for s in sizes)
        self.bottleneck = conv_abn(cin + len(sizes) * cout, cout, 3, 1)

    def forward(self, x):
        h, w = x.shape[2:]
        pooled = [F.interpolate(s(x), size=(h, w), mode="bilinear", align_corners=True) for s in self.stages]
        return self.bottleneck(torch.cat(pooled + [x], 1))


class Edge(nn.Module):
    def __init__(self, cins=(256, 512, 1024), mid: int = 256, out: int = 2):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = (conv_abn(c, mid) for c in cins)
        self.conv4 = nn.Conv2d(mid, out, 3, padding=1)
        self.conv5 = nn.Conv2d(out * 3, out, 1)

    def forward(self, x1, x2, x3):
        size = x1.shape[2:]
        up = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=True)  # noqa: E731
        feats = [self.conv1(x1), self.conv2(x2), self.conv3(x3)]
        edges = [self.conv4(f) for f in feats]
        return self.conv5(torch.cat([edges[0], up(edges[1]), up(edges[2])], 1)), \
            torch.cat([feats[0], up(feats[1]), up(feats[2])], 1)


class Decoder(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.conv1, self.conv2 = conv_abn(512, 256), conv_abn(256, 48)
        self.conv3 = nn.Sequential(*conv_abn(304, 256), *conv_abn(256, 256))
        self.conv4 = nn.Conv2d(256, num_classes, 1)

    def forward(self, context, low):
        context = F.interpolate(self.conv1(context), size=low.shape[2:], mode="bilinear", align_corners=True)
        x = self.conv3(torch.cat([context, self.conv2(low)], 1))
        return self.conv4(x), x


class SCHPNet(nn.Module):
    """SCHP's ResNet-101 parsing network; forward returns the fusion logits at 1/4 of the input."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False), ABN(64, activation=False)
        self.conv2, self.bn2 = nn.Conv2d(64, 64, 3, 1, 1, bias=False), ABN(64, activation=False)
        self.conv3, self.bn3 = nn.Conv2d(64, 128, 3, 1, 1, bias=False), ABN(128, activation=False)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.inplanes = 128
        self.layer1 = self._layer(64, 3)
        self.layer2 = self._layer(128, 4, stride=2)
        self.layer3 = self._layer(256, 23, stride=2)
        self.layer4 = self._layer(512, 3, dilation=2)
        self.context_encoding = PSP()
        self.edge = Edge()
        self.decoder = Decoder(num_classes)
        self.fushion = nn.Sequential(*conv_abn(1024, 256), nn.Dropout2d(0.1), nn.Conv2d(256, num_classes, 1))  # (sic)

    def _layer(self, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                                       ABN(planes * 4, activation=False))
        layers = [Bottleneck(self.inplanes, planes, stride, dilation, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.maxpool(F.relu(self.bn3(self.conv3(x))))
        x2 = self.layer1(x)
        x3 = self.layer2(x2)
        x4 = self.layer3(x3)
        _, parsing_fea = self.decoder(self.context_encoding(self.layer4(x4)), x2)
        _, edge_fea = self.edge(x2, x3, x4)
        return self.fushion(torch.cat([parsing_fea, edge_fea], 1))


def whole_image_transform(width: int, height: int, size: int) -> np.ndarray:
    """SCHP's affine map from the image to the size×size input: the box [0, 0, w-1, h-1] widened to the
    square aspect; its centre goes to ((size-1)/2, (size-1)/2), scaled by (size-1) / box side (SCHP's
    get_affine_transform, which measures the output in pixel centres)."""
    side = max(width - 1, height - 1, 1)
    k = (size - 1) / side
    cx, cy, c = (width - 1) / 2, (height - 1) / 2, (size - 1) / 2
    return np.array([[k, 0, c - k * cx], [0, k, c - k * cy]], np.float32)


@torch.no_grad()
def parse_batch(model: SCHPNet, rgbs: list[np.ndarray], size: int, device) -> list[np.ndarray]:
    """Label maps of several images from one forward pass: each warped to size×size (SCHP's whole-image
    transform), the logits upsampled and warped back to the image's own size, argmax per pixel."""
    matrices, inputs = [], []
    for rgb in rgbs:
        h, w = rgb.shape[:2]
        matrix = whole_image_transform(w, h, size)
        warped = cv2.warpAffine(rgb[..., ::-1], matrix, (size, size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        inputs.append(torch.from_numpy(np.ascontiguousarray(warped)).permute(2, 0, 1))
        matrices.append(matrix)
    mean, std = torch.tensor(BGR_MEAN)[:, None, None], torch.tensor(BGR_STD)[:, None, None]
    x = (torch.stack(inputs).float() / 255 - mean) / std
    logits = model(x.to(device))
    logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=True).permute(0, 2, 3, 1)
    logits = logits.float().cpu().numpy()
    out = []
    for rgb, matrix, one in zip(rgbs, matrices, logits, strict=True):
        h, w = rgb.shape[:2]
        inverse = cv2.invertAffineTransform(matrix)
        # per class, as SCHP does (cv2 warps at most 4 channels at a time)
        back = np.stack([cv2.warpAffine(one[:, :, c], inverse, (w, h), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=0) for c in range(one.shape[2])], 2)
        out.append(back.argmax(2).astype(np.uint8))
    return out
