"""DeSKPro's LMBN_n head on OSNet x1.0, and its cloth-irrelevant spatial attention (CSA).

Official code (`KimbingNg/DeskPro`): `model/backbone/lmbn/LMBN.py` (LMBN, MultiBranchBase.forward_branches),
`model/backbone/lmbn/branches.py` (GlobalBranch, PartBranch, ChannelBranch), `model/attention.py`
(BatchDropTop, BatchFeatureErase_Top), `model/bnneck.py` (BNNeck, BNNeck3), `model/deskpro/cbam.py`
(SpatialAttention), `model/osnet.py`. The design is LightMBN's `LMBN_n` (`jixunbo/LightMBN: model/lmbn_n.py`)
split into one module per branch. Module names follow DeSKPro's, so a DeSKPro LMBN state dict maps onto this
one key for key (see `state_from_deskpro`).

Stem: OSNet conv1 → maxpool → conv2 → conv3[0] (384 channels, stride 8: 48×16 for 384×128). Each of the three
branches owns a deep copy of conv3[1:] + conv4 + conv5 (512 channels, stride 16: 24×8):
- global: an extra OSBlock(512, 512), then BatchDropTop; GAP of the OSBlock's map and GMP of the dropped map,
  each through a BNNeck3;
- part: GMP of the map and the upper / lower halves of AdaptiveAvgPool2d((2, 1)), each through a BNNeck3;
- channel: GAP, the 512 channels cut into 2 × 256, both through one shared 1×1 conv 256→feats + BN + ReLU,
  then a BNNeck each.
Embedding order (DeSKPro's forward_branches concatenates the branches): global-avg, global-drop, part-max,
part-upper, part-lower, channel-0, channel-1.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .osnet import OSBlock, OSNet, build_osnet_x1_0

NUM_EMBEDDINGS = 7


class BatchDropTop(nn.Module):
    """Top DropBlock (DeSKPro's model/attention.py BatchDropTop, from Top-DB-Net): in training, per sample, the
    round(h_ratio · H) rows whose strongest activation (max over W of the channel-summed squared map) is highest
    are zeroed in every channel; in eval mode the input passes unchanged.

    The official code L2-normalises the activation per sample first, which does not change the order within a
    sample, so it is left out. It also computes the activation in the input's dtype; here it is computed in
    float32 so that fp16 under autocast cannot overflow to inf (same rows in float32)."""

    def __init__(self, h_ratio: float = 0.33):
        super().__init__()
        self.h_ratio = h_ratio

    def forward(self, x):
        if not self.training:
            return x
        b, _, h, _ = x.shape
        rh = round(self.h_ratio * h)
        row_activation = x.detach().float().pow(2).sum(1).amax(2)  # B×H
        top_rows = torch.argsort(row_activation, dim=1)[:, h - rh:]  # ascending order: the last rh are the top
        keep = x.new_ones(b, h).scatter_(1, top_rows, 0)
        return x * keep[:, None, :, None]


class BatchFeatureErase_Top(nn.Module):  # DeSKPro's name
    """OSBlock(channels, 512) then BatchDropTop (DeSKPro's model/attention.py, drop_top=True as GlobalBranch
    calls it). Returns (dropped map, the OSBlock's un-dropped map)."""

    def __init__(self, channels: int = 512, h_ratio: float = 0.33, osblock_forward: str = "deskpro"):
        super().__init__()
        # built outside OSNet, so PyTorch's default initialisation, as in the official code
        self.drop_batch_bottleneck = OSBlock(channels, 512, osblock_forward)
        self.drop_batch_drop_top = BatchDropTop(h_ratio)

    def forward(self, x):
        features = self.drop_batch_bottleneck(x)
        return self.drop_batch_drop_top(features), features


class BNNeck(nn.Module):
    """BN1d with a frozen (zero) bias → Linear without bias (DeSKPro's model/bnneck.py BNNeck, return_f=True).
    forward(B×C×1×1) → (after-BN feature, logits, before-BN feature)."""

    def __init__(self, input_dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(input_dim)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(input_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, x):
        before = x.flatten(1)
        after = self.bn(before)
        return after, self.classifier(after), before


class BNNeck3(BNNeck):
    """1×1 conv input_dim→feat_dim without bias, then BNNeck (DeSKPro's model/bnneck.py BNNeck3, return_f=True).
    The official code initialises only the BN and the classifier: the conv keeps PyTorch's default."""

    def __init__(self, input_dim: int, num_classes: int, feat_dim: int):
        super().__init__(feat_dim, num_classes)
        self.reduction = nn.Conv2d(input_dim, feat_dim, 1, bias=False)

    def forward(self, x):
        return super().forward(self.reduction(x))


def _branch_trunk(osnet: OSNet) -> nn.Sequential:
    """A deep copy of conv3[1:] + conv4 + conv5: each branch's own weights (LMBN_BaseBranch.backbone2)."""
    return nn.Sequential(copy.deepcopy(osnet.conv3[1:]), copy.deepcopy(osnet.conv4), copy.deepcopy(osnet.conv5))


class GlobalBranch(nn.Module):
    """DeSKPro's branches.py GlobalBranch. forward → [(after, logits, before)] for global-avg, global-drop."""

    def __init__(self, osnet: OSNet, num_classes: int, feats: int, osblock_forward: str):
        super().__init__()
        self.backbone2 = _branch_trunk(osnet)
        # one neck deep-copied: the copies start with identical weights, as in the official code
        neck = BNNeck3(512, num_classes, feats)
        self.reduction_1 = copy.deepcopy(neck)
        self.reduction_2 = copy.deepcopy(neck)
        self.batch_drop_block = BatchFeatureErase_Top(512, osblock_forward=osblock_forward)

    def forward(self, x):
        dropped, features = self.batch_drop_block(self.backbone2(x))
        return [self.reduction_1(F.adaptive_avg_pool2d(features, 1)),
                self.reduction_2(F.adaptive_max_pool2d(dropped, 1))]


class PartBranch(nn.Module):
    """DeSKPro's branches.py PartBranch. forward → [(after, logits, before)] for whole-map max, upper, lower."""

    def __init__(self, osnet: OSNet, num_classes: int, feats: int):
        super().__init__()
        self.backbone2 = _branch_trunk(osnet)
        self.partial_pooling = nn.AdaptiveAvgPool2d((2, 1))
        neck = BNNeck3(512, num_classes, feats)
        self.reduction_1 = copy.deepcopy(neck)
        self.reduction_2 = copy.deepcopy(neck)
        self.reduction_3 = copy.deepcopy(neck)

    def forward(self, x):
        fmap = self.backbone2(x)
        stripes = self.partial_pooling(fmap)
        return [self.reduction_1(F.adaptive_max_pool2d(fmap, 1)),
                self.reduction_2(stripes[:, :, 0:1]), self.reduction_3(stripes[:, :, 1:2])]


class ChannelBranch(nn.Module):
    """DeSKPro's branches.py ChannelBranch. forward → [(after, logits, before)] for channel halves 0, 1.

    The official code calls weights_init_kaiming on the `shared` Sequential itself, which matches none of the
    class names that function looks for, so `shared` keeps PyTorch's default initialisation; so here."""

    def __init__(self, osnet: OSNet, num_classes: int, feats: int):
        super().__init__()
        self.backbone2 = _branch_trunk(osnet)
        self.chs = 512 // 2
        self.shared = nn.Sequential(nn.Conv2d(self.chs, feats, 1, bias=False), nn.BatchNorm2d(feats),
                                    nn.ReLU(inplace=True))
        self.reduction_ch_0 = BNNeck(feats, num_classes)
        self.reduction_ch_1 = BNNeck(feats, num_classes)

    def forward(self, x):
        pooled = F.adaptive_avg_pool2d(self.backbone2(x), 1)
        return [self.reduction_ch_0(self.shared(pooled[:, :self.chs])),
                self.reduction_ch_1(self.shared(pooled[:, self.chs:]))]


class LMBN(nn.Module):
    """DeSKPro's LMBN (model/backbone/lmbn/LMBN.py) on OSNet x1.0.

    num_classes: identities; feats: embedding width (DeSKPro's args.feats, 512); pretrained: OSNet weights,
    "none", "imagenet" or a path (see osnet.build_osnet_x1_0); osblock_forward: "deskpro" (default, DeSKPro's
    OSBlock that sums conv2a twice and leaves conv2b unused) or "torchreid" (every stream, as torchreid).

    forward(x) = branches(stem(x)); a caller may put an attention module between the two (DeSKPro's
    NoClothNet multiplies the stem map by SpatialAttention's map).
    - training: (logits, features): 7 logits B×num_classes in the embedding order above, and the 3 before-BN
      B×feats features DeSKPro's triplet loss uses: global-avg, global-drop, part-max;
    - eval: the 7 after-BN features stacked, B×feats×7.
    """

    def __init__(self, num_classes: int, feats: int = 512, pretrained: str = "none",
                 osblock_forward: str = "deskpro"):
        super().__init__()
        osnet = build_osnet_x1_0(pretrained, osblock_forward=osblock_forward)
        # shares the modules of osnet (not copies): only the branches copy
        self.backbone = nn.Sequential(osnet.conv1, osnet.maxpool, osnet.conv2, osnet.conv3[0])
        self.global_branch = GlobalBranch(osnet, num_classes, feats, osblock_forward)
        self.part_branch = PartBranch(osnet, num_classes, feats)
        self.channel_branch = ChannelBranch(osnet, num_classes, feats)

    def stem(self, x):
        """B×3×H×W → B×384×H/8×W/8."""
        return self.backbone(x)

    def _embeddings(self, fmap):
        return self.global_branch(fmap) + self.part_branch(fmap) + self.channel_branch(fmap)

    def branches(self, fmap):
        """The stem's map (possibly re-weighted) → the outputs described in the class docstring."""
        outs = self._embeddings(fmap)
        if not self.training:
            return torch.stack([after for after, _, _ in outs], dim=2)
        return [logits for _, logits, _ in outs], [outs[0][2], outs[1][2], outs[2][2]]

    def forward(self, x):
        return self.branches(self.stem(x))

    def logits(self, x):
        """The 7 logits in either mode: DeSKPro's teacher gives its distillation targets in train mode (the
        official code's) or in eval mode (teacher_mode: eval)."""
        return [logits for _, logits, _ in self._embeddings(self.stem(x))]


class SpatialAttention(nn.Module):
    """DeSKPro's CSA (model/deskpro/cbam.py SpatialAttention, built with kernel_size=1, in_channel=384): conv
    in→in (no bias) → ReLU → conv in→1 (no bias) → sigmoid; Kaiming-normal (fan_in) convs. Returns the B×1×H×W
    map in (0, 1); the caller multiplies the feature map by it."""

    def __init__(self, in_channels: int = 384, kernel_size: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.conv2 = nn.Conv2d(in_channels, 1, kernel_size, padding=kernel_size // 2, bias=False)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")

    def forward(self, x):
        return torch.sigmoid(self.conv2(F.relu(self.conv1(x))))


def state_from_deskpro(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """The LMBN keys of a DeSKPro state dict (e.g. prefix "face_net." for its teacher) in this module's layout:
    the prefix removed, and DeSKPro's `branches.{0,1,2}.*` dropped (its ModuleList holding the same three
    branch modules as global_branch / part_branch / channel_branch, so the same tensors under a second name)."""
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in out.items() if not k.startswith("branches.")}
