"""3DSL's network (3DSL paper §3, §4.2; docs/methods.md#3dsl): E_rgb, E_3D, E_pose, E_shape with MGS, and
the HMR discriminator D.

- E_3D: a ResNet up to res_conv4 (stem, layer1, layer2).
- E_pose: res_conv4 & conv5 (layer3, layer4) + GAP, then HMR's iterative regressor (3 iterations from
  the mean parameters) for the pose θ (6-D rotations per joint) and the camera ψ = (s, tx, ty).
- E_shape: its own res_conv4 & conv5 (ImageNet-initialised, last stride 1) -> F_shape.
- MGS: E_global (two 1×1 convs, GAP, two FCs) gives F_global (first FC) and β (second FC); E_part (two
  1×1 convs, then horizontal stripes, each GAP and two FCs) gives F_part^i and the displacements δ_i of
  vertex part i. Without MGS one head gives F_global, β and all of δ.
- E_rgb: a full ResNet (last stride 1) + GAP.
Every ReID feature (F_rgb, F_global, each F_part^i) has a BN neck and a classifier. The test feature
concatenates the L2-normalised RGB and shape features (or one of them: Table 4's † rows).

Without the shape branch (`second_rgb`), the network is the paper's *Baseline* (§4.3, Table 4's first
row): two plain ResNets, each with its own BN neck, classifier and losses and no shared parameter (so
training them in one run is training them separately), their features concatenated at test time.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import InputError

from ..body.geometry import rot6d_to_rotmat, rotmat_to_rot6d
from .backbones import build_resnet, set_first_stride_one
from .reid import FeatureNet, LinearClassifier

TEST_FEATURES = ("concat", "rgb", "shape")


class BNNeck(nn.Module):
    """BatchNorm1d feature + linear classifier: returns (feature, logits)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        nn.init.normal_(self.bn.weight, 1.0, 0.02)
        nn.init.zeros_(self.bn.bias)
        self.classifier = LinearClassifier(dim, num_classes)

    def forward(self, x):
        f = self.bn(x)
        return f, self.classifier(f)


def _shallow_convs(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, 512, 1, bias=False), nn.BatchNorm2d(512), nn.ReLU(inplace=True),
                         nn.Conv2d(512, 256, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU(inplace=True))


def _feature_fc(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(256, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True))


def _displacement_fc(dim: int, vertices: int) -> nn.Linear:
    fc = nn.Linear(dim, vertices * 3, bias=False)
    nn.init.xavier_uniform_(fc.weight, gain=1e-4)  # δ starts near 0 (3DSL dev code)
    return fc


class PoseRegressor(nn.Module):
    """HMR's iterative error feedback: [feature, θ, ψ] -> FC1024 -> FC1024 -> Δθ, Δψ, three times.
    Returns every iteration's (rotation matrices T×B×24×3×3, camera T×B×3): HMR's discriminator sees them all."""

    def __init__(self, channels: int, init_pose6d: torch.Tensor, init_cam: torch.Tensor, iterations: int = 3):
        super().__init__()
        self.register_buffer("init_pose6d", init_pose6d.reshape(-1).float().clone())
        self.register_buffer("init_cam", init_cam.float().clone())
        n = self.init_pose6d.numel()
        self.iterations = iterations
        self.fc = nn.Sequential(nn.Linear(channels + n + 3, 1024), nn.ReLU(inplace=True), nn.Dropout(0.5),
                                nn.Linear(1024, 1024), nn.ReLU(inplace=True), nn.Dropout(0.5))
        self.dec_pose, self.dec_cam = nn.Linear(1024, n), nn.Linear(1024, 3)
        for layer in (self.dec_pose, self.dec_cam):
            nn.init.xavier_uniform_(layer.weight, gain=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, feature):
        b = feature.shape[0]
        pose, cam = self.init_pose6d.expand(b, -1), self.init_cam.expand(b, -1)
        poses, cams = [], []
        for _ in range(self.iterations):
            x = self.fc(torch.cat([feature, pose, cam], 1))
            pose, cam = pose + self.dec_pose(x), cam + self.dec_cam(x)
            poses.append(pose)
            cams.append(cam)
        return rot6d_to_rotmat(torch.stack(poses)).view(self.iterations, b, -1, 3, 3), torch.stack(cams)


class MultiGranularityShape(nn.Module):
    """F_shape -> (ReID features [F_global, F_part^1..P], β, δ B×V×3). parts == 0: no MGS."""

    def __init__(self, channels: int, dim: int, num_betas: int, part_index: list[torch.Tensor], num_vertices: int):
        super().__init__()
        self.num_vertices = num_vertices
        self.global_convs, self.global_fc = _shallow_convs(channels), _feature_fc(dim)
        self.dec_shape = nn.Linear(dim, num_betas)
        nn.init.xavier_uniform_(self.dec_shape.weight, gain=0.01)
        nn.init.zeros_(self.dec_shape.bias)
        self.num_parts = len(part_index)
        if self.num_parts:
            for i, idx in enumerate(part_index):
                self.register_buffer(f"part_index_{i}", idx.long().clone())
            self.part_convs = _shallow_convs(channels)
            self.part_fc = nn.ModuleList([_feature_fc(dim) for _ in part_index])
            self.dec_part = nn.ModuleList([_displacement_fc(dim, len(idx)) for idx in part_index])
        else:
            self.dec_displacement = _displacement_fc(dim, num_vertices)

    def features(self, fmap) -> list[torch.Tensor]:
        out = [self.global_fc(F.adaptive_avg_pool2d(self.global_convs(fmap), 1).flatten(1))]
        if self.num_parts:
            stripes = F.adaptive_avg_pool2d(self.part_convs(fmap), (self.num_parts, 1)).flatten(2)
            out += [fc(stripes[:, :, i]) for i, fc in enumerate(self.part_fc)]
        return out

    def forward(self, fmap):
        feats = self.features(fmap)
        betas = self.dec_shape(feats[0])
        b = fmap.shape[0]
        if self.num_parts:
            delta = fmap.new_zeros(b, self.num_vertices, 3)
            for i, (f, dec) in enumerate(zip(feats[1:], self.dec_part, strict=True)):
                idx = getattr(self, f"part_index_{i}")
                delta = delta.index_copy(1, idx, dec(f).view(b, -1, 3))
        else:
            delta = self.dec_displacement(feats[0]).view(b, -1, 3)
        return feats, betas, delta


def _layer_channels(layer: nn.Sequential) -> int:
    last = layer[-1]
    return (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels


class ThreeDSLNet(nn.Module):
    """In training, forward(rgb, image3d) returns a dict of everything the losses need; in eval,
    forward(image) returns the test feature."""

    def __init__(self, num_pids: int, backbone: str = "resnet50", pretrained: str = "none", feature_dim: int = 256,
                 num_betas: int = 10, num_vertices: int = 6890, part_sizes: tuple[int, ...] = (),
                 init_pose6d: torch.Tensor | None = None, init_cam: torch.Tensor | None = None,
                 ief_iterations: int = 3, rgb: bool = True, shape: bool = True, test_feature: str = "concat",
                 second_rgb: bool = False):
        super().__init__()
        if not (rgb or shape):
            raise InputError("3DSL needs at least one branch: ablation.rgb and ablation.shape are both false")
        if second_rgb and (shape or not rgb):
            raise InputError("the two-ResNet baseline (second_rgb) replaces the shape branch: "
                             "it needs rgb and no shape")
        if test_feature not in TEST_FEATURES or (test_feature != "shape" and not rgb) or \
                (test_feature == "shape" and not shape) or (test_feature == "concat" and not (shape or second_rgb)):
            raise InputError(f"test_feature {test_feature!r} does not fit the branches (rgb={rgb}, shape={shape}); "
                             f"supported: {', '.join(TEST_FEATURES)}")
        self.test_feature, self.has_rgb, self.has_shape, self.has_rgb2 = test_feature, rgb, shape, second_rgb
        if rgb:
            self.rgb = FeatureNet(backbone, pretrained, 1, "avg")
            self.rgb_head = LinearClassifier(self.rgb.dim, num_pids)
        if second_rgb:
            self.rgb2 = FeatureNet(backbone, pretrained, 1, "avg")
            self.rgb2_head = LinearClassifier(self.rgb2.dim, num_pids)
        if shape:
            net = build_resnet(backbone, pretrained, last_stride=2)
            self.e3d = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2)
            self.e_pose = nn.Sequential(net.layer3, net.layer4)
            # E_shape: its own copy of res_conv4 & conv5 from the same initialisation, last stride 1 so
            # the part stripes keep spatial resolution
            self.e_shape = nn.Sequential(copy.deepcopy(net.layer3), copy.deepcopy(net.layer4))
            set_first_stride_one(self.e_shape[1])
            channels = _layer_channels(net.layer4)
            if init_pose6d is None:
                init_pose6d = rotmat_to_rot6d(torch.eye(3).expand(24, 3, 3))
            if init_cam is None:
                init_cam = torch.tensor([0.9, 0.0, 0.0])
            self.regressor = PoseRegressor(channels, init_pose6d, init_cam, ief_iterations)
            part_index = [torch.zeros(n, dtype=torch.long) for n in part_sizes]  # filled by set_part_index
            self.mgs = MultiGranularityShape(channels, feature_dim, num_betas, part_index, num_vertices)
            self.shape_heads = nn.ModuleList([BNNeck(feature_dim, num_pids) for _ in range(1 + len(part_sizes))])

    def set_part_index(self, part_index: list[torch.Tensor]) -> None:
        for i, idx in enumerate(part_index):
            getattr(self.mgs, f"part_index_{i}").copy_(idx)

    def _shape_map(self, x):
        return self.e_shape(self.e3d(x))

    def forward(self, x, image3d=None):
        if not self.training:
            return self.feature(x)
        out = {}
        if self.has_rgb:
            f = self.rgb(x)
            out["rgb"] = (f, self.rgb_head(f))
        if self.has_rgb2:
            f = self.rgb2(x)
            out["rgb2"] = (f, self.rgb2_head(f))
        if self.has_shape:
            shared = self.e3d(image3d)
            feats, betas, delta = self.mgs(self.e_shape(shared))
            out["shape"] = [head(f) for head, f in zip(self.shape_heads, feats, strict=True)]
            rotmats, cams = self.regressor(F.adaptive_avg_pool2d(self.e_pose(shared), 1).flatten(1))
            # the projections use the last iteration (HMR's e_loss_kp); the discriminator all of them
            out.update(betas=betas, displacement=delta, rotmats=rotmats[-1], cam=cams[-1], rotmats_iterations=rotmats)
        return out

    def feature(self, x):
        parts = []
        if self.test_feature in ("concat", "rgb"):
            parts.append(F.normalize(self.rgb(x), dim=1))
        if self.test_feature == "concat" and self.has_rgb2:
            parts.append(F.normalize(self.rgb2(x), dim=1))
        if self.test_feature in ("concat", "shape") and self.has_shape:
            feats = self.mgs.features(self._shape_map(x))
            shape = torch.cat([head.bn(f) for head, f in zip(self.shape_heads, feats, strict=True)], 1)
            parts.append(F.normalize(shape, dim=1))
        return torch.cat(parts, 1)

    @torch.no_grad()
    def reconstruct(self, image3d):
        """(β, δ, rotmats, ψ) for images, in eval mode (the picture and the reconstruction checks)."""
        shared = self.e3d(image3d)
        _, betas, delta = self.mgs(self.e_shape(shared))
        rotmats, cams = self.regressor(F.adaptive_avg_pool2d(self.e_pose(shared), 1).flatten(1))
        return betas, delta, rotmats[-1], cams[-1]


class Discriminator(nn.Module):
    """HMR's discriminator (akanazawa/hmr src/models.py; docs/methods.md#hmr-discriminator): per-joint heads on
    the 23 non-root rotation matrices (two shared 1×1 convs of 32 channels, ReLU as in the TensorFlow
    original), a whole-pose head (736 -> 1024 -> 1024 -> 1) and a shape head (10 -> 10 -> 5 -> 1). Output N×25."""

    def __init__(self, num_joints: int = 23, num_betas: int = 10):
        super().__init__()
        self.pose_convs = nn.Sequential(nn.Conv2d(9, 32, 1), nn.ReLU(inplace=True), nn.Conv2d(32, 32, 1),
                                        nn.ReLU(inplace=True))
        self.joint_weight = nn.Parameter(torch.empty(num_joints, 32))
        self.joint_bias = nn.Parameter(torch.zeros(num_joints))
        nn.init.kaiming_uniform_(self.joint_weight, a=5**0.5)
        self.full_pose = nn.Sequential(nn.Linear(32 * num_joints, 1024), nn.ReLU(inplace=True), nn.Linear(1024, 1024),
                                       nn.ReLU(inplace=True), nn.Linear(1024, 1))
        self.shape = nn.Sequential(nn.Linear(num_betas, 10), nn.ReLU(inplace=True), nn.Linear(10, 5),
                                   nn.ReLU(inplace=True), nn.Linear(5, 1))

    def forward(self, rotmats, betas):
        n, j = rotmats.shape[:2]
        h = self.pose_convs(rotmats.reshape(n, j, 9).permute(0, 2, 1).unsqueeze(-1)).squeeze(-1)  # N×32×J
        per_joint = torch.einsum("ncj,jc->nj", h, self.joint_weight) + self.joint_bias
        return torch.cat([per_joint, self.full_pose(h.permute(0, 2, 1).flatten(1)), self.shape(betas)], 1)
