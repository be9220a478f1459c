"""OSNet x1.0 (Zhou et al., "Omni-Scale Feature Learning for Person Re-Identification", ICCV 2019) in plain
PyTorch, with the module names of torchreid (`KaiyangZhou/deep-person-reid: torchreid/models/osnet.py`), so that
torchreid's released ImageNet state dict `osnet_x1_0_imagenet.pth` loads by name.

Structure (torchreid's `osnet_x1_0`: blocks OSBlock ×3, layers [2, 2, 2], channels [64, 256, 384, 512]):
conv1 (7×7/2 conv + BN + ReLU) → maxpool (3×3/2) → conv2 (2 OSBlocks + transition) → conv3 (2 OSBlocks +
transition) → conv4 (2 OSBlocks, no transition) → conv5 (1×1 conv + BN + ReLU) → global average pool → fc
(Linear 512→512 + BN1d + ReLU) → classifier (Linear 512→num_classes, with bias). A transition is
Sequential(Conv1x1, AvgPool2d(2, 2)): the output stride is 16, so a 384×128 image gives a 512×24×8 map.

Weights are never downloaded: `pretrained` is "none", "imagenet" (torchreid's cache file
`$TORCH_HOME/checkpoints/osnet_x1_0_imagenet.pth`, where `torchreid.models.osnet.init_pretrained_weights`
keeps it: trainer.pretrained.torchreid_cache_file) or a path. A missing file stops with its path and torchreid's
download URL.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import InputError, MissingInputError
from pipeline.weights import load_state_dict_file

from ..pretrained import OSNET, OSNET_X1_0_FILE, OSNET_X1_0_URL, backbone_weights

IMAGENET_CLASSES = 1000
# How the four OSBlock streams are summed. "torchreid": gate(2a) + gate(2b) + gate(2c) + gate(2d), as torchreid's
# OSBlock.forward and LightMBN's model/osnet.py. "deskpro": DeSKPro's own copy (`KimbingNg/DeskPro:
# model/osnet.py`, OSBlock.forward) sums gate(conv2a(x)) twice and never calls conv2b (its weights stay loaded
# but unused, and get no gradient).
OSBLOCK_FORWARDS = ("torchreid", "deskpro")


def _check_osblock_forward(value: str) -> str:
    if value not in OSBLOCK_FORWARDS:
        raise InputError(f"osblock_forward must be one of {', '.join(OSBLOCK_FORWARDS)}, got {value!r}")
    return value


class ConvLayer(nn.Module):
    """conv (no bias) + BN + ReLU: torchreid's ConvLayer with IN=False (the stem of osnet_x1_0)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class Conv1x1(ConvLayer):
    """1×1 conv + BN + ReLU (torchreid's Conv1x1: same keys conv.weight, bn.*)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 1)


class Conv1x1Linear(nn.Module):
    """1×1 conv + BN, no non-linearity (torchreid's Conv1x1Linear: OSBlock's conv3 and downsample)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return self.bn(self.conv(x))


class LightConv3x3(nn.Module):
    """1×1 conv (linear) → depth-wise 3×3 conv → BN → ReLU (torchreid's LightConv3x3)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False, groups=out_channels)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Module):
    """The aggregation gate shared by OSBlock's four streams: GAP → 1×1 conv (C→C/16, bias) → ReLU → 1×1 conv
    (C/16→C, bias) → sigmoid, multiplied onto the input (torchreid's ChannelGate with its defaults)."""

    def __init__(self, in_channels: int, reduction: int = 16):
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(in_channels, in_channels // reduction, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(in_channels // reduction, in_channels, 1, bias=True)
        self.gate_activation = nn.Sigmoid()

    def forward(self, x):
        return x * self.gate_activation(self.fc2(self.relu(self.fc1(self.global_avgpool(x)))))


class OSBlock(nn.Module):
    """Omni-scale block (torchreid's OSBlock, bottleneck_reduction 4): conv1 to C/4, four streams of 1-4
    LightConv3x3 (receptive fields 3, 5, 7, 9) gated by one shared ChannelGate and summed, conv3 back to C,
    plus the identity (through a 1×1 conv + BN `downsample` when the channel count changes), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, osblock_forward: str = "torchreid"):
        super().__init__()
        self.osblock_forward = _check_osblock_forward(osblock_forward)
        mid = out_channels // 4
        self.conv1 = Conv1x1(in_channels, mid)
        self.conv2a = LightConv3x3(mid, mid)
        self.conv2b = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(2)))
        self.conv2c = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(3)))
        self.conv2d = nn.Sequential(*(LightConv3x3(mid, mid) for _ in range(4)))
        self.gate = ChannelGate(mid)
        self.conv3 = Conv1x1Linear(mid, out_channels)
        self.downsample = Conv1x1Linear(in_channels, out_channels) if in_channels != out_channels else None

    def forward(self, x):
        x1 = self.conv1(x)
        if self.osblock_forward == "deskpro":
            # DeSKPro's model/osnet.py runs conv2a twice (so, in training, its BN statistics are updated twice
            # per step, as there) and skips conv2b
            x2 = self.gate(self.conv2a(x1)) + self.gate(self.conv2a(x1))
        else:
            x2 = self.gate(self.conv2a(x1)) + self.gate(self.conv2b(x1))
        x2 = x2 + self.gate(self.conv2c(x1)) + self.gate(self.conv2d(x1))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv3(x2) + identity)


def _make_stage(in_channels: int, out_channels: int, reduce_spatial_size: bool, osblock_forward: str):
    """torchreid's OSNet._make_layer for 2 OSBlocks: block(in, out), block(out, out) and, when the stage
    halves the resolution, a transition Sequential(Conv1x1(out, out), AvgPool2d(2, stride=2))."""
    layers = [OSBlock(in_channels, out_channels, osblock_forward), OSBlock(out_channels, out_channels, osblock_forward)]
    if reduce_spatial_size:
        layers.append(nn.Sequential(Conv1x1(out_channels, out_channels), nn.AvgPool2d(2, stride=2)))
    return nn.Sequential(*layers)


class OSNet(nn.Module):
    """torchreid's OSNet x1.0 (`osnet_x1_0`, loss 'softmax'): `featuremaps(x)` is the 512-channel map at
    stride 16; `forward(x)` gives the 512-D fc feature in eval mode and the classifier's logits in training."""

    channels = (64, 256, 384, 512)

    def __init__(self, num_classes: int = IMAGENET_CLASSES, feature_dim: int = 512,
                 osblock_forward: str = "torchreid"):
        super().__init__()
        c = self.channels
        self.conv1 = ConvLayer(3, c[0], 7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = _make_stage(c[0], c[1], True, osblock_forward)
        self.conv3 = _make_stage(c[1], c[2], True, osblock_forward)
        self.conv4 = _make_stage(c[2], c[3], False, osblock_forward)
        self.conv5 = Conv1x1(c[3], c[3])
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        # torchreid's _construct_fc_layer(512, 512, dropout_p=None)
        self.fc = nn.Sequential(nn.Linear(c[3], feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self._init_params()

    def _init_params(self):
        """torchreid's OSNet._init_params: Kaiming-normal (fan_out, relu) convs, BN 1/0, Linear N(0, 0.01)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def featuremaps(self, x):
        return self.conv5(self.conv4(self.conv3(self.conv2(self.maxpool(self.conv1(x))))))

    def forward(self, x):
        v = self.fc(self.global_avgpool(self.featuremaps(x)).flatten(1))
        return self.classifier(v) if self.training else v

    def trunk(self) -> nn.Sequential:
        """conv1 … conv5 as one module (B×3×H×W → B×512×H/16×W/16) that keeps torchreid's key names
        (conv1.conv.weight, conv2.0.conv1.conv.weight, …) and shares this network's modules."""
        return nn.Sequential(OrderedDict((name, getattr(self, name))
                                         for name in ("conv1", "maxpool", "conv2", "conv3", "conv4", "conv5")))


def _how_to_get() -> str:
    return (f"Download torchreid's {OSNET_X1_0_FILE} ({OSNET_X1_0_URL}, torchreid/models/osnet.py "
            f"pretrained_urls['osnet_x1_0']) and name that file, or use pretrained: none")


def check_and_load_osnet_state(model: OSNet, state: dict[str, torch.Tensor], path) -> list[str]:
    """Load a state dict in torchreid's OSNet layout into `model`, strictly, except for two things: the
    `classifier.*` keys are dropped when their shapes differ from the model's (ImageNet's 1000 classes into a
    model built for another number; torchreid's init_pretrained_weights drops layers by shape mismatch the
    same way), and `*.num_batches_tracked` may be absent (files saved before PyTorch 0.4.1 lack it; PyTorch's
    BatchNorm fills it in itself for such files). Any other missing, unexpected or wrong-shaped key is an
    error naming the file and the keys. Returns the keys of the file that were dropped."""
    expected = model.state_dict()
    dropped = sorted(k for k in state if k.startswith("classifier.") and k in expected
                     and tuple(state[k].shape) != tuple(expected[k].shape))
    state = {k: v for k, v in state.items() if k not in dropped}
    missing = sorted(k for k in set(expected) - set(state)
                     if not k.endswith("num_batches_tracked") and not (dropped and k.startswith("classifier.")))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k} {tuple(state[k].shape)} (model {tuple(expected[k].shape)})"
                   for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        raise InputError(f"{path}: not an OSNet x1.0 state dict in torchreid's layout: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}, wrong shapes {wrong[:3]} ({len(missing)}/{len(unexpected)}/"
                         f"{len(wrong)} in all). {_how_to_get()}")
    model.load_state_dict(state, strict=False)  # only the tolerated keys above can be absent
    return dropped


def load_osnet_weights(model: OSNet, path: str | Path) -> list[str]:
    """Load torchreid's released OSNet x1.0 file (or any state dict in its layout, bare, under 'state_dict',
    with or without DataParallel's 'module.' prefix) through the checked, weights-only reader. Returns the
    dropped `classifier.*` keys (see check_and_load_osnet_state)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: OSNet x1.0 ImageNet weights not found. {_how_to_get()}")
    state = load_state_dict_file(path, "OSNet x1.0 ImageNet weights", _how_to_get())
    return check_and_load_osnet_state(model, state, path)


def build_osnet_x1_0(pretrained: str | Path | None = "none", num_classes: int = IMAGENET_CLASSES,
                     osblock_forward: str = "torchreid") -> OSNet:
    """OSNet x1.0 with torchreid's initialisation, then the weights `pretrained` names: "none" (keep the
    initialisation), "imagenet" (torchreid's cache file, see torchreid_cache_file) or a path."""
    net = OSNet(num_classes, osblock_forward=osblock_forward)
    if pretrained in (None, "", "none"):
        return net
    load_osnet_weights(net, backbone_weights(OSNET, str(pretrained)).path)  # what pretrained_files lists
    return net


def osnet_x1_0_trunk(pretrained: str = "none", last_stride: int = 1) -> tuple[nn.Module, int]:
    """The BACKBONES contract (trainer/models/backbones.py): (trunk B×3×H×W → B×512×H/16×W/16, 512).
    OSNet has no last-stride switch: its last stage (conv4) never reduces the resolution, so its output stride is
    always 16 (what a ResNet gives with last stride 1); last_stride 1 and 2 are both accepted and change nothing,
    any other value is refused as for the ResNets."""
    if last_stride not in (1, 2):
        raise InputError(f"last_stride must be 1 or 2, got {last_stride}")
    return build_osnet_x1_0(pretrained).trunk(), OSNet.channels[-1]
