"""3DSL (Chen et al., CVPR 2021; 3DSL paper §3, docs/methods.md#3dsl): ReID on RGB and 3D shape features,
with the shape branch regularised by ASSP — keypoint and silhouette reprojection of M(β, θ, δ) and an LSGAN
discriminator on (θ, β) against real SMPL parameters.

One step: the encoders, heads and classifiers take one Adam step on
  Σ ID + Σ triplet (RGB: clothes-aware positives) + w_key·L_key + w_sil·L_sil + w_δ·‖δ‖₂ + w_smooth·L_smooth
  + w_adv·L_adv(E),
then D takes one step on L_adv(D) with the step's parameters detached (the dev code's order).

L_key and L_sil use the regressor's last iteration; L_adv(E) and L_adv(D) see the pose of every
iteration (HMR's trainer.py: `e_loss_kp = loss_kps[-1]`, while the discriminator gets all stages'
rotations and a real batch as large). L_smooth (ccreid's addition, not the paper's): the squared
uniform-Laplacian of δ summed over vertices — eq. (5)'s ‖δ‖₂ bounds δ's total size but not single
vertices, which L_sil and the face-vertex keypoints of L_key then pull into spikes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.errors import InputError

from ..body.geometry import axis_angle_to_rotmat, project, rotmat_to_rot6d, to_pixels, upright_root
from ..body.mocap import MocapSampler
from ..body.model import BodyModel
from ..body.picture import reconstruction_sheet
from ..body.render import render_silhouettes
from ..data import PackedImagesWithBodyCues
from ..distributed import average_gradients, broadcast_parameters
from ..losses import TripletLoss, build_identity_loss, lsgan_discriminator_loss, lsgan_generator_loss
from ..models.threedsl import Discriminator, ThreeDSLNet
from ..optim import build_optimizer, build_scheduler
from ..precision import Precision
from ..transforms import TestTransform
from .base import Method, register, train_transform


def keypoint_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. (4), confidence-weighted: Σ c·‖K − K̂‖² / Σ c over the batch; joints with c = 0 do not count."""
    conf = target[..., 2]
    err = ((pred - target[..., :2]) ** 2).sum(-1)
    return (conf * err).sum() / conf.sum().clamp(min=1.0)


def silhouette_loss(rendered: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Eq. (5)'s ‖M − M̂‖²: the mean squared pixel difference, over images whose silhouette was found."""
    per_image = ((rendered - target) ** 2).flatten(1).mean(1)
    return (valid * per_image).sum() / valid.sum().clamp(min=1.0)


def displacement_norm(delta: torch.Tensor) -> torch.Tensor:
    """Eq. (5)'s ‖δ‖₂ per mesh, averaged (eps keeps the gradient finite at δ = 0)."""
    return (delta.pow(2).flatten(1).sum(1) + 1e-12).sqrt().mean()


def displacement_smoothness(body: BodyModel, delta: torch.Tensor) -> torch.Tensor:
    """Σ_v ‖(Lδ)_v‖² per mesh (m²), averaged over the batch; L the body mesh's uniform Laplacian. Zero for
    any δ that moves a vertex with its neighbours (a constant δ), large for a vertex pulled away alone."""
    return body.laplacian(delta).pow(2).sum((1, 2)).mean()


def initial_pose6d(mean_pose: torch.Tensor) -> torch.Tensor:
    """The regressor's starting pose: the prior's mean per joint, root upright for the image frame."""
    aa = mean_pose.clone()
    aa[0] = upright_root()
    return rotmat_to_rot6d(axis_angle_to_rotmat(aa))


@register("3dsl")
class ThreeDSL(Method):
    def __init__(self, cfg: dict, num_pids: int, pid2clothes: np.ndarray | None, device: torch.device,
                 resources: dict | None = None):
        resources = resources or {}
        for key in ("body_model", "mocap"):
            if not resources.get(key):
                raise InputError(f"3DSL needs --{key.replace('_', '-')} (config.yaml: body.{key})")
        ab, m, loss = cfg["ablation"], cfg["model"], cfg["loss"]
        if ab["sampling"] not in ("clothes", "random"):
            raise InputError(f"ablation.sampling must be clothes or random, got {ab['sampling']!r}")
        if ab["sampling"] == "clothes" and pid2clothes is None:
            raise InputError("ablation.sampling: clothes needs clothes labels, and this dataset has none; use random")
        self.cfg, self.device = cfg, device
        self.body = BodyModel(resources["body_model"]).to(device)
        self.mocap = MocapSampler(resources["mocap"])
        parts = self.body.vertex_parts(m["parts"]) if ab["mgs"] and ab["shape"] else []
        self.net = ThreeDSLNet(num_pids, m["backbone"], m["pretrained"], m["feature_dim"], self.body.num_betas,
                               self.body.num_vertices, tuple(len(p) for p in parts),
                               initial_pose6d(self.mocap.mean_pose()), torch.tensor([0.9, 0.0, 0.0]),
                               m["ief_iterations"], ab["rgb"], ab["shape"], cfg["test_feature"],
                               second_rgb=not ab["shape"])
        if parts:
            self.net.set_part_index(parts)
        self.net.to(device)
        self.feature_kwargs = {"num_pids": num_pids, "backbone": m["backbone"], "feature_dim": m["feature_dim"],
                               "num_betas": self.body.num_betas, "num_vertices": self.body.num_vertices,
                               "part_sizes": [len(p) for p in parts], "ief_iterations": m["ief_iterations"],
                               "rgb": ab["rgb"], "shape": ab["shape"], "test_feature": cfg["test_feature"],
                               "second_rgb": not ab["shape"]}
        self.parts = [p.to(device) for p in parts]
        self.train_net: nn.Module = self.net
        self.discriminator = Discriminator(num_betas=self.body.num_betas).to(device)
        self.id_loss = build_identity_loss(loss["id"])
        self.triplet = TripletLoss(loss["triplet"]["margin"])
        self.clothes_aware = ab["sampling"] == "clothes"
        self.weights = {k: float(loss[k]["weight"]) * bool(ab.get(k, True)) for k in ("key", "sil", "adv")}
        self.weights["displacement"] = float(loss["displacement"]["weight"]) * bool(ab["sil"])
        # δ enters L_key too (the face keypoints are vertices), so it is kept smooth whenever either is on
        self.weights["smooth"] = float(loss["smooth"]["weight"]) * bool(ab["sil"] or ab["key"])
        self.weights["triplet"] = float(loss["triplet"]["weight"])
        o = cfg["optim"]
        slow = [p for name, p in self.net.named_parameters() if name.startswith(("e3d.", "e_pose.", "regressor."))]
        slow_ids = {id(p) for p in slow}
        fast = [p for p in self.net.parameters() if id(p) not in slow_ids]
        groups = [{"params": fast, "lr": o["lr"]}] + ([{"params": slow, "lr": o["lr_3d"]}] if slow else [])
        self.optimizer = build_optimizer(groups, o)
        self.optimizer_d = build_optimizer(self.discriminator.parameters(), o)
        self.modules = {"net": self.net, "discriminator": self.discriminator}
        self.optimizers = {"optimizer": self.optimizer, "optimizer_d": self.optimizer_d}
        self.schedulers = {k: build_scheduler(opt, o)
                           for k, opt in (("scheduler", self.optimizer), ("scheduler_d", self.optimizer_d))}
        r = cfg["render"]
        self.render_size, self.render_backend, self.sigma = (r["height"], r["width"]), r["backend"], r["sigma"]
        self.camera = cfg["camera"]

    # --- data --------------------------------------------------------------------------------------

    @classmethod
    def training_dataset(cls, pack, samples, cfg: dict, stores: dict, video: bool):
        if video:
            raise InputError("3DSL is an image method; this dataset is video (tracklets)")
        for stage in ("keypoints", "silhouettes"):
            if stage not in stores:
                raise InputError(f"3DSL needs the {stage} store (--store {stage}=PATH)")
        d, r = cfg["data"], cfg["render"]
        return PackedImagesWithBodyCues(
            pack, samples, train_transform(cfg), TestTransform(d["height"], d["width"]),
            stores["keypoints"]["keypoints"][:], stores["silhouettes"]["mask_png"][:],
            stores["silhouettes"]["found"][:], (r["height"], r["width"]))

    def write_report(self, out_dir, dataset) -> dict:
        """reconstructions.png over 8 training images and their mean silhouette IoU, for model.pt."""
        return write_reconstruction_report(self, out_dir, dataset)

    @classmethod
    def sampler_clothes(cls, cfg: dict, dataset):
        return dataset.clothes if cfg["ablation"]["sampling"] == "clothes" else None

    # --- the method --------------------------------------------------------------------------------

    def feature_net(self) -> nn.Module:
        return self.net

    def feature_net_spec(self) -> dict:
        return {"kind": "threedsl", "kwargs": self.feature_kwargs}

    def wrap_distributed(self, device: torch.device) -> None:
        # ablations leave heads unused (e.g. the pose regressor without L_key, L_sil and L_adv)
        self.train_net = nn.parallel.DistributedDataParallel(
            self.net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
        broadcast_parameters(self.discriminator)

    def project(self, points: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
        return project(points, cam, self.camera["model"], self.camera["focal"], self.cfg["data"]["height"])

    def render(self, vertices: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
        h, w = self.render_size
        xy = to_pixels(self.project(vertices, cam), h, w)
        return render_silhouettes(xy.float(), self.body.faces, h, w, self.render_backend, self.sigma)

    def reid_losses(self, out: dict, pids, clothes, stats: dict) -> torch.Tensor:
        loss = 0.0
        # the baseline's second ResNet (rgb2) is trained as the first one is
        heads = [(name, out[name], self.clothes_aware) for name in ("rgb", "rgb2") if name in out] + \
                [(f"shape{i}", fl, False) for i, fl in enumerate(out.get("shape", []))]
        for name, (f, logits), clothes_aware in heads:
            f, logits = f.float(), logits.float()
            loss_id = self.id_loss(logits, pids)
            loss_tri = self.triplet(f, pids, clothes if clothes_aware else None)
            loss = loss + loss_id + self.weights["triplet"] * loss_tri
            stats[f"loss_id_{name}"] = loss_id.item()
            stats[f"loss_tri_{name}"] = loss_tri.item()
            if name == "rgb":
                stats["acc_rgb"] = (logits.argmax(1) == pids).float().mean().item()
        return loss

    def assp_losses(self, out: dict, cues: dict, stats: dict) -> torch.Tensor:
        w = self.weights
        betas, rotmats, cam, delta = (out["betas"].float(), out["rotmats"].float(), out["cam"].float(),
                                      out["displacement"].float())
        vertices, _, coco = self.body(betas, rotmats, delta)
        loss = 0.0
        if w["key"]:
            l_key = keypoint_loss(self.project(coco, cam), cues["keypoints"])
            loss = loss + w["key"] * l_key
            stats["loss_key"] = l_key.item()
        if w["sil"]:
            rendered = self.render(vertices, cam)
            l_sil = silhouette_loss(rendered, cues["silhouette"], cues["sil_valid"])
            l_delta = displacement_norm(delta)
            loss = loss + w["sil"] * l_sil + w["displacement"] * l_delta
            stats.update(loss_sil=l_sil.item(), delta_norm=l_delta.item(),
                         sil_iou=silhouette_iou(rendered.detach(), cues["silhouette"]))
        if w["smooth"]:
            l_smooth = displacement_smoothness(self.body, delta)
            loss = loss + w["smooth"] * l_smooth
            stats["loss_smooth"] = l_smooth.item()
        if w["adv"]:
            fake_rot, fake_betas = self.fake_parameters(out)
            l_adv = lsgan_generator_loss(self.discriminator(fake_rot, fake_betas))
            loss = loss + w["adv"] * l_adv
            stats["loss_adv_e"] = l_adv.item()
        stats.update(self.displacement_stats(betas.detach(), delta.detach()))
        return loss

    def fake_parameters(self, out: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(T·B)×23×3×3 non-root rotations of every regressor iteration and β repeated to match: D's fakes."""
        rot = out["rotmats_iterations"].float()
        return rot[:, :, 1:].flatten(0, 1), out["betas"].float().repeat(rot.shape[0], 1)

    @torch.no_grad()
    def displacement_stats(self, betas: torch.Tensor, delta: torch.Tensor) -> dict[str, float]:
        """The batch's largest |δ| (metres) overall and per MGS part, and its largest edge stretch of the
        rest shape (length with δ over length without): what a spike shows up in."""
        size = delta.norm(dim=-1)
        stats = {"delta_max": size.max().item()}
        for i, idx in enumerate(self.parts):
            stats[f"delta_max_part{i}"] = size[:, idx].max().item()
        rest = self.body.rest_shape(betas)
        ratio = self.body.edge_lengths(rest + delta) / self.body.edge_lengths(rest).clamp(min=1e-9)
        stats["edge_stretch_max"] = ratio.max().item()
        return stats

    def train_step(self, images, pids, camids, clothes, epoch: int, precision: Precision) -> dict[str, float]:
        stats: dict[str, float] = {}
        with precision.autocast():
            out = self.train_net(images["rgb"], images["image3d"])
            loss = self.reid_losses(out, pids, clothes, stats)
        if "betas" in out:
            loss = loss + self.assp_losses(out, images, stats)  # geometry in float32, outside autocast
        self.optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.step(self.optimizer)
        precision.update()
        if self.weights["adv"] and "betas" in out:
            fake_rot, fake_betas = self.fake_parameters(out)
            stats["loss_d"] = self.discriminator_step(fake_rot.detach(), fake_betas.detach(), precision)
        return stats

    def discriminator_step(self, fake_rotmats: torch.Tensor, fake_betas: torch.Tensor, precision: Precision) -> float:
        """fake_rotmats N×23×3×3 (non-root), fake_betas N×10; as many real samples as fakes (HMR)."""
        real_pose, real_betas = self.mocap.sample(fake_betas.shape[0])
        real_rot = axis_angle_to_rotmat(real_pose.to(self.device))[:, 1:]
        loss = lsgan_discriminator_loss(self.discriminator(real_rot, real_betas.to(self.device)),
                                        self.discriminator(fake_rotmats, fake_betas))
        self.optimizer_d.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.discriminator.parameters())  # not DDP-wrapped: average by hand
        precision.step_unscaled(self.optimizer_d)  # taken only with finite gradients
        return loss.item()


def silhouette_iou(rendered: torch.Tensor, target: torch.Tensor) -> float:
    """Mean IoU of the rendered and target silhouettes, both thresholded at 0.5."""
    r, t = rendered > 0.5, target > 0.5
    inter = (r & t).flatten(1).sum(1).float()
    union = (r | t).flatten(1).sum(1).float().clamp(min=1)
    return (inter / union).mean().item()


@torch.no_grad()
def reconstruct_items(method: ThreeDSL, dataset: PackedImagesWithBodyCues, indices) -> dict:
    """Eval-mode reconstructions of some training items: meshes, projections, rendered silhouettes, IoUs."""
    was_training = method.net.training
    method.net.eval()
    items = [dataset[int(i)][0] for i in indices]
    cues = {k: torch.stack([it[k] for it in items]).to(method.device) for k in ("image3d", "keypoints", "silhouette")}
    betas, delta, rotmats, cam = method.net.reconstruct(cues["image3d"])
    vertices, _, coco = method.body(betas, rotmats, delta)
    rendered = method.render(vertices, cam)
    method.net.train(was_training)
    r, t = rendered > 0.5, cues["silhouette"] > 0.5
    ious = ((r & t).flatten(1).sum(1).float() / (r | t).flatten(1).sum(1).float().clamp(min=1)).cpu().numpy()
    return {"cues": cues, "vertices": vertices, "mesh_xy": method.project(vertices, cam),
            "keypoints": method.project(coco, cam), "ious": ious, "rendered": rendered}


def write_reconstruction_report(self: ThreeDSL, out_dir, dataset) -> dict:
    if not self.net.has_shape:
        return {}
    n = min(len(dataset), 8)
    indices = np.linspace(0, len(dataset) - 1, n).astype(int)
    rec = reconstruct_items(self, dataset, indices)
    kind = "stand-in body model (not SMPL)" if self.body.is_standin else "SMPL"
    cues = rec["cues"]
    path = reconstruction_sheet(Path(out_dir) / "reconstructions.png", cues["image3d"], rec["vertices"],
                                self.body.faces, rec["mesh_xy"], rec["keypoints"], cues["keypoints"], rec["ious"],
                                f"3DSL reconstructions ({kind})", cues["silhouette"], rec["rendered"])
    return {"reconstructions": str(path), "reconstruction_iou": float(rec["ious"].mean()),
            "body_model": kind}

