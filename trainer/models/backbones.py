"""ResNet trunks with CAL's last-stride-1 change (Simple-CCReID's models/img_resnet.py;
docs/methods.md#backbone), any torchvision ResNet depth.

`pretrained` is a torchvision weights name (e.g. "IMAGENET1K_V1", needs the cached file), a path to
a state dict, or "none"; trainer/pretrained.py resolves it to a file (for the loaders here and for the
workflow's checks and `ccreid-weights`). Offline machines and tests use "none" or a local file.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import torchvision
from torch import nn

from pipeline.errors import InputError, MissingInputError
from pipeline.registry import Registry
from pipeline.weights import load_state_dict_file

from ..pretrained import RESNET_DEPTHS, backbone_weights
from .osnet import osnet_x1_0_trunk

# torchvision constructors of the ResNet depths ccreid builds (3DSL addresses their stages directly)
RESNETS: Registry[Callable[..., torchvision.models.ResNet]] = Registry("ResNet")
for _depth in RESNET_DEPTHS:
    RESNETS.add(_depth, getattr(torchvision.models, _depth))
# every backbone a feature network can use: name -> (pretrained, last_stride) -> (trunk, output channels)
BACKBONES: Registry[Callable[[str, int], tuple[nn.Module, int]]] = Registry("backbone")


def _set_last_stride_one(net: torchvision.models.ResNet) -> None:
    set_first_stride_one(net.layer4)


def set_first_stride_one(layer: nn.Sequential) -> None:
    """Make a ResNet stage keep its input resolution."""
    block = layer[0]
    # Bottleneck strides in conv2, BasicBlock in conv1: change whichever carries the stride
    for conv in (getattr(block, "conv1", None), getattr(block, "conv2", None)):
        if conv is not None and conv.stride == (2, 2):
            conv.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)


def _load_pretrained(net: nn.Module, name: str, pretrained: str) -> None:
    spec = backbone_weights(name, pretrained)  # the file trainer.pretrained.pretrained_files lists
    if spec is None:
        return
    path = spec.path
    if spec.kind == "file":
        if not path.is_file():
            raise MissingInputError(
                f"backbone weights {path} not found: put the {name} ImageNet state dict there "
                f"(torchvision's {name} IMAGENET1K_V1 file), or set model.pretrained: none")
        state = load_state_dict_file(path, spec.what,
                                     "Use torchvision's released file for this backbone, or model.pretrained: none")
        missing, unexpected = net.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")},
                                                  strict=False)
        if [k for k in missing if not k.startswith("fc.")] or unexpected:
            raise InputError(f"{path}: not a {name} state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")
        return
    if not path.is_file():
        # never download at run time: cluster nodes are often offline, and a silent fetch is not reproducible
        raise MissingInputError(
            f"ImageNet weights for {name} ({pretrained}) not found at {path}. Download {spec.url} to that "
            f"path (ccreid-weights fetch does; or to data/models/ and set model.pretrained to the file), or set "
            f"model.pretrained: none")
    net.load_state_dict(load_state_dict_file(path, spec.what, f"Download {spec.url} again"))


def build_resnet(name: str = "resnet50", pretrained: str = "none", last_stride: int = 1) -> torchvision.models.ResNet:
    """A torchvision ResNet with its weights loaded and the last stride set (its stages stay addressable)."""
    net = RESNETS.get(name)(weights=None)
    _load_pretrained(net, name, pretrained)
    if last_stride == 1:
        _set_last_stride_one(net)
    elif last_stride != 2:
        raise InputError(f"last_stride must be 1 or 2, got {last_stride}")
    return net


def _resnet_trunk(name: str, pretrained: str, last_stride: int) -> tuple[nn.Module, int]:
    net = build_resnet(name, pretrained, last_stride)
    return nn.Sequential(*list(net.children())[:-2]), net.fc.in_features


for _depth in RESNETS:
    BACKBONES.add(_depth, functools.partial(_resnet_trunk, _depth))
# OSNet x1.0 with torchreid's key names (trainer/models/osnet.py): output stride 16 whatever last_stride (1 or 2)
# says; pretrained is "none", "imagenet" (torchreid's cached osnet_x1_0_imagenet.pth) or a path
BACKBONES.add("osnet_x1_0", osnet_x1_0_trunk)


def build_backbone(name: str = "resnet50", pretrained: str = "none", last_stride: int = 1) -> tuple[nn.Module, int]:
    """Return (trunk mapping B×3×H×W to B×C×h×w, C)."""
    return BACKBONES.get(name)(pretrained, last_stride)
