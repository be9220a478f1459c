"""DeSKPro (Wu et al., ICIP 2022; KimbingNg/DeskPro; docs/methods.md#deskpro): a body stream with cloth-irrelevant
spatial attention supervised by cloth masks, and a face stream whose student, on low-resolution face crops,
learns from a teacher trained on GPEN-restored faces.

Two methods:
- `deskpro_teacher`: one LMBN on restored faces (CE with label smoothing on the 7 logits, Euclidean batch-hard
  triplet on the 3 features); its model.pt is what every student run of the dataset reads (Table 3's model 6).
- `deskpro`: the two streams, trained with eq. (7):
    L = Σ_7 (1−α)·CE_face + Σ_7 CE_body + Σ_3 Tri_face + Σ_3 Tri_body + α·L_KD + λ·L_att,
  L_KD over the 7 logit pairs against the teacher on the same faces restored, L_att the MSE between the CSA map
  and the cloth-irrelevant target (KimbingNg/DeskPro loss/__init__.py and main.py:training_step). The ablation
  switches give Table 3's models 1–5 and 7; `test.face_stream: teacher` gives DeSKPro*.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from pipeline.errors import InputError

from .. import distributed as D
from ..deskpro_data import DeskproItems, drop_faceless, face_found
from ..losses import TripletLoss, build_identity_loss, knowledge_distillation_loss
from ..model_file import load_model_file
from ..models.deskpro import DeskproNet, deskpro_net
from ..optim import build_optimizer, build_scheduler
from ..precision import Precision
from .base import Method, register

MISSING_FACES = ("drop", "mask")
TEACHER_MODES = ("train", "eval")
FACE_STREAMS = ("student", "teacher")


def scaled_lr(optim: dict, batch_size: int, world_size: int) -> float:
    """DeSKPro's main.py overrides the configured lr with sqrt(batch / 20) · lr (6e-4): `lr_reference_batch` 20;
    the batch is the global one (every process's). 0: the lr as configured."""
    reference = optim["lr_reference_batch"]
    return optim["lr"] * math.sqrt(batch_size * world_size / reference) if reference else optim["lr"]


def _pick(name: str, value, allowed) -> None:
    if value not in allowed:
        raise InputError(f"DeSKPro: {name} must be one of {', '.join(allowed)}, got {value!r}")


def check_config(cfg: dict) -> None:
    """The switches' combinations, named when they cannot work together."""
    _pick("data.missing_faces", cfg["data"]["missing_faces"], MISSING_FACES)
    if cfg["method"] == "deskpro_teacher":
        if "faces_restored" not in cfg["test"]["stores"]:
            raise InputError("deskpro_teacher reads restored faces at test time: test.stores must name faces_restored")
        return
    ab, test = cfg["ablation"], cfg["test"]
    _pick("teacher_mode", cfg["teacher_mode"], TEACHER_MODES)
    _pick("test.face_stream", test["face_stream"], FACE_STREAMS)
    if not (ab["body"] or ab["face"]):
        raise InputError("DeSKPro: ablation.body and ablation.face are both false: no stream left")
    rules = [(ab["csa"] and not ab["body"], "ablation.csa needs ablation.body (CSA is in the body stream)"),
             (ab["attention_loss"] and not ab["csa"], "ablation.attention_loss needs ablation.csa"),
             (ab["kd"] and not ab["face"], "ablation.kd needs ablation.face"),
             (test["face_stream"] == "teacher" and not ab["face"], "test.face_stream teacher needs ablation.face")]
    for broken, why in rules:
        if broken:
            raise InputError(f"DeSKPro: {why}")
    needed = {"student": "faces", "teacher": "faces_restored"}[test["face_stream"]] if ab["face"] else None
    if needed and needed not in test["stores"]:
        raise InputError(f"DeSKPro: test.face_stream {test['face_stream']} reads the {needed} store at test time; "
                         f"test.stores is {test['stores']}")


def uses_teacher(cfg: dict) -> bool:
    return cfg["method"] == "deskpro" and cfg["ablation"]["face"] and (
        cfg["ablation"]["kd"] or cfg["test"]["face_stream"] == "teacher")


def lmbn_losses(outputs, pids: torch.Tensor, ce: nn.Module, triplet: TripletLoss, ce_weight: float,
                triplet_weight: float, stream: str, valid: torch.Tensor | None = None):
    """Σ CE over LMBN's 7 logits × ce_weight + Σ triplet over its 3 features × triplet_weight; valid: the rows
    that count (a face stream with data.missing_faces: mask), None for all."""
    logits, feats = outputs
    logits = [x.float() for x in logits]
    if valid is None:
        l_ce = sum(ce(x, pids) for x in logits)
        acc = (logits[0].argmax(1) == pids).float().mean().item()
    elif valid.any():
        l_ce = sum(ce(x[valid], pids[valid]) for x in logits)
        acc = (logits[0][valid].argmax(1) == pids[valid]).float().mean().item()
    else:  # no face in this batch: zero, still connected to the graph (DDP expects every rank's gradients)
        l_ce, acc = sum(x.sum() for x in logits) * 0.0, float("nan")
    l_tri = sum(triplet(f.float(), pids, valid=valid) for f in feats)
    stats = {f"loss_ce_{stream}": l_ce.item(), f"loss_triplet_{stream}": l_tri.item()}
    if not math.isnan(acc):
        stats[f"acc_{stream}"] = acc
    return ce_weight * l_ce + triplet_weight * l_tri, stats


class _LMBNMethod(Method):
    """What the teacher and the student share: losses, Adam with DeSKPro's scaled lr, the warm-up cosine
    schedule, DDP with unused parameters allowed (DeSKPro's OSBlock leaves conv2b out of the graph)."""

    def _common(self, cfg: dict, model: nn.Module, device: torch.device) -> None:
        check_config(cfg)
        self.model = model.to(device)
        self.net: nn.Module = self.model
        loss = cfg["loss"]
        self.ce = build_identity_loss(loss["id"])
        self.triplet = TripletLoss(loss["triplet"]["margin"], loss["triplet"]["distance"])
        self.triplet_weight = loss["triplet"]["weight"]
        optim = dict(cfg["optim"], lr=scaled_lr(cfg["optim"], cfg["data"]["batch_size"], D.world_size()))
        self.optimizer = build_optimizer(self.model.parameters(), optim)
        self.modules = {"model": self.model}
        self.optimizers = {"optimizer": self.optimizer}
        self.schedulers = {"scheduler": build_scheduler(self.optimizer, optim)}
        m = cfg["model"]
        self.spec_kwargs = {"feats": m["feats"], "osblock_forward": m["osblock_forward"]}

    def wrap_distributed(self, device: torch.device) -> None:
        self.net = self.ddp(self.model, device, find_unused_parameters=True)

    def step(self, loss: torch.Tensor, precision: Precision) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.step(self.optimizer)
        precision.update()


@register("deskpro_teacher")
class DeskproTeacher(_LMBNMethod):
    """LMBN on restored faces. Images without a face are always left out of its training (it sees nothing else)."""

    def __init__(self, cfg: dict, num_pids: int, pid2clothes: np.ndarray | None, device: torch.device,
                 resources: dict | None = None):
        m = cfg["model"]
        self.num_pids = num_pids
        self._common(cfg, deskpro_net(num_pids, m["feats"], m["pretrained"], m["osblock_forward"], face=True,
                                      body=False, csa=False), device)

    @classmethod
    def training_dataset(cls, pack, samples, cfg: dict, stores: dict, video: bool):
        if video:
            raise InputError("DeSKPro is an image method; this dataset is video")
        d = cfg["data"]
        samples = drop_faceless(samples, pack, face_found(stores, "hr"), "deskpro_teacher")
        return DeskproItems(pack, samples, stores, height=d["height"], width=d["width"], face_size=d["face_size"],
                            faces={"face": "hr"}, body=False, train=True, augment=d["augment"])

    @classmethod
    def test_dataset(cls, pack, samples, cfg: dict, stores: dict, video: dict | None):
        d = cfg["data"]
        return DeskproItems(pack, samples, stores, height=d["height"], width=d["width"], face_size=d["face_size"],
                            faces={"face": "hr"}, body=False)

    def feature_net(self) -> DeskproNet:
        return self.model

    def feature_net_spec(self) -> dict:
        return {"kind": "deskpro", "kwargs": {"num_classes": self.num_pids, **self.spec_kwargs, "face": True,
                                              "body": False, "csa": False}}

    def train_step(self, images, pids, camids, clothes, epoch: int, precision: Precision) -> dict[str, float]:
        with precision.autocast():
            out = self.net(images)
            loss, stats = lmbn_losses(out["face"], pids, self.ce, self.triplet, 1.0, self.triplet_weight, "face")
        self.step(loss, precision)
        return stats


def load_teacher(path: str, cfg: dict, num_pids: int, run: dict | None) -> tuple[nn.Module, dict]:
    """The teacher's face LMBN from its model.pt, refused when it cannot teach this run: another method, other
    images or lists, another number of identities (the KD pairs logits class by class), another face size or
    architecture."""
    state = load_model_file(path)
    tcfg, spec = state["config"], state.get("feature_net_spec") or {}
    hint = "retrain it: snakemake results/<dataset>/deskpro_teacher/model.pt"
    if tcfg.get("method") != "deskpro_teacher" or spec.get("kind") != "deskpro":
        raise InputError(f"{path}: a {tcfg.get('method')} model, not a deskpro_teacher one")
    for part in ("images", "lists"):
        if run is not None and state.get("run", {}).get(part) != run.get(part):
            raise InputError(f"{path}: the teacher was trained on other {part} than this run's; {hint}")
    if state["num_train_pids"] != num_pids:
        raise InputError(f"{path}: the teacher knows {state['num_train_pids']} identities, this run {num_pids}; "
                         f"{hint}")
    theirs = (tcfg["data"]["face_size"], tcfg["model"]["feats"], tcfg["model"]["osblock_forward"])
    ours = (cfg["data"]["face_size"], cfg["model"]["feats"], cfg["model"]["osblock_forward"])
    if theirs != ours:
        raise InputError(f"{path}: the teacher has (face_size, feats, osblock_forward) {theirs}, this run {ours}; "
                         f"{hint}")
    net = deskpro_net(**{**spec["kwargs"], "pretrained": "none"})
    net.load_state_dict(state["feature_net"])  # strict: every key and shape
    provenance = {"path": str(path), "config_hash": state["config_hash"], "git_commit": state["git_commit"],
                  "scale": tcfg["scale"]}
    return net.face_net, provenance


@register("deskpro")
class Deskpro(_LMBNMethod):
    def __init__(self, cfg: dict, num_pids: int, pid2clothes: np.ndarray | None, device: torch.device,
                 resources: dict | None = None):
        resources = resources or {}
        m, ab, loss = cfg["model"], cfg["ablation"], cfg["loss"]
        self.num_pids, self.ab = num_pids, ab
        self._common(cfg, deskpro_net(num_pids, m["feats"], m["pretrained"], m["osblock_forward"], face=ab["face"],
                                      body=ab["body"], csa=ab["csa"]), device)
        self.mask_faces = cfg["data"]["missing_faces"] == "mask"
        self.alpha, self.temperature = loss["kd"]["alpha"], loss["kd"]["temperature"]
        self.attention_weight = loss["attention"]["weight"]
        self.face_stream = cfg["test"]["face_stream"]
        self.teacher, self.teacher_provenance = None, None
        if uses_teacher(cfg):
            if not resources.get("teacher"):
                raise InputError("DeSKPro with knowledge distillation or test.face_stream teacher needs --teacher "
                                 "(the deskpro_teacher model.pt of this dataset)")
            self.teacher, self.teacher_provenance = load_teacher(resources["teacher"], cfg, num_pids,
                                                                 resources.get("run"))
            self.teacher.to(device).train(cfg["teacher_mode"] == "train")
            for p in self.teacher.parameters():
                p.requires_grad_(False)
            # its BN statistics move when it runs in train mode (as the official code's): checkpointed with the rest
            self.modules["teacher"] = self.teacher
        self.teacher_mode = cfg["teacher_mode"]

    @staticmethod
    def _faces(cfg: dict, train: bool) -> dict[str, str]:
        ab = cfg["ablation"]
        if not ab["face"]:
            return {}
        if train:
            return {"face": "lr", "face_hr": "hr"} if ab["kd"] else {"face": "lr"}
        return {"face": "hr" if cfg["test"]["face_stream"] == "teacher" else "lr"}

    @classmethod
    def training_dataset(cls, pack, samples, cfg: dict, stores: dict, video: bool):
        if video:
            raise InputError("DeSKPro is an image method; this dataset is video")
        check_config(cfg)
        d, ab = cfg["data"], cfg["ablation"]
        if ab["face"] and d["missing_faces"] == "drop":
            samples = drop_faceless(samples, pack, face_found(stores, "lr"), "deskpro")
        return DeskproItems(pack, samples, stores, height=d["height"], width=d["width"], face_size=d["face_size"],
                            faces=cls._faces(cfg, True), body=ab["body"], target=ab["attention_loss"], train=True,
                            augment=d["augment"], epsilon=cfg["loss"]["attention"]["epsilon"])

    @classmethod
    def test_dataset(cls, pack, samples, cfg: dict, stores: dict, video: dict | None):
        d, ab = cfg["data"], cfg["ablation"]
        return DeskproItems(pack, samples, stores, height=d["height"], width=d["width"], face_size=d["face_size"],
                            faces=cls._faces(cfg, False), body=ab["body"])

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)
        if self.teacher is not None:  # train mode as the official code's (BN statistics and BatchDropTop active)
            self.teacher.train(mode and self.teacher_mode == "train")

    def feature_net(self) -> DeskproNet:
        if self.face_stream == "teacher":  # DeSKPro*: the teacher on restored faces replaces the student
            return DeskproNet(self.teacher, self.model.body_net, self.model.attention)
        return self.model

    def feature_net_spec(self) -> dict:
        return {"kind": "deskpro", "kwargs": {"num_classes": self.num_pids, **self.spec_kwargs,
                                              "face": self.ab["face"], "body": self.ab["body"], "csa": self.ab["csa"]}}

    def write_report(self, out_dir, dataset) -> dict:
        return {"teacher": self.teacher_provenance} if self.teacher_provenance else {}

    def attention_loss(self, attention: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """nn.MSELoss over the B×1×h×w maps (the official mean over every element), over the images whose
        cloth mask was found."""
        if attention.shape != target.shape:
            raise InputError(f"DeSKPro: attention map {tuple(attention.shape)} but target {tuple(target.shape)}")
        per_image = (attention.float() - target).pow(2).flatten(1).mean(1)
        return (per_image * valid).sum() / valid.sum().clamp(min=1.0)

    def distillation(self, student_logits: list[torch.Tensor], faces_hr: torch.Tensor, valid: torch.Tensor | None,
                     stats: dict) -> torch.Tensor:
        """L_KD against the teacher on the restored faces (no gradient reaches the teacher)."""
        with torch.no_grad():
            teacher_logits = self.teacher.logits(faces_hr)
        if valid is not None:
            if not valid.any():
                return sum(x.sum() for x in student_logits) * 0.0
            student_logits = [x[valid] for x in student_logits]
            teacher_logits = [x[valid] for x in teacher_logits]
        l_kd = knowledge_distillation_loss([x.float() for x in student_logits], [x.float() for x in teacher_logits],
                                           self.temperature)
        stats["loss_kd"] = l_kd.item()
        return l_kd

    def train_step(self, images, pids, camids, clothes, epoch: int, precision: Precision) -> dict[str, float]:
        stats: dict[str, float] = {}
        with precision.autocast():
            out = self.net(images)
            loss = 0.0
            if self.ab["body"]:
                l_body, s = lmbn_losses(out["body"], pids, self.ce, self.triplet, 1.0, self.triplet_weight, "body")
                loss, stats = loss + l_body, {**stats, **s}
            if self.ab["attention_loss"]:
                l_att = self.attention_loss(out["attention"], images["target"], images["target_valid"])
                loss = loss + self.attention_weight * l_att
                stats["loss_attention"] = l_att.item()
            if self.ab["face"]:
                valid = images["face_found"].bool() if self.mask_faces else None
                kd = self.ab["kd"]
                l_face, s = lmbn_losses(out["face"], pids, self.ce, self.triplet, 1 - self.alpha if kd else 1.0,
                                        self.triplet_weight, "face", valid)
                loss, stats = loss + l_face, {**stats, **s}
                if kd:
                    loss = loss + self.alpha * self.distillation(out["face"][0], images["face_hr"], valid, stats)
        self.step(loss, precision)
        return stats
