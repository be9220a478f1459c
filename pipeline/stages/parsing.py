"""Human-parsing backends: a per-pixel label map per image (`labels_png`), the label set in the store.

- `schp-lip`, `schp-atr`, `schp-pascal`: Self-Correction Human Parsing with the official checkpoints
  (pipeline.stages.schp), label sets and input sizes as SCHP's simple_extractor defines them.
- `keypoint-geometry`: the offline default, and named for what it is — not a learned parser. Coarse parts
  (head, torso, arms, legs, shoes) drawn from the keypoints store's joints, then every pixel of the
  silhouettes store's mask takes the label of the nearest drawn part.
- `groundtruth`: the synthetic dataset's part maps as they are, labels named as its ground truth names them
  (background, head, hair, skin, top, bottom, shoes); for the benchmark and for testing downstream logic.
"""
from __future__ import annotations

import json

import cv2
import numpy as np

from ..errors import InputError
from .backends import DEVICE, FRACTION, UNIT, Backend, GroundTruthBackend, Item, Range, part_label_names, register
from .store import decode_png, encode_png

GEOMETRY_LABELS = ("background", "head", "torso", "arms", "legs", "shoes")
_HEAD, _TORSO, _ARMS, _LEGS, _SHOES = range(1, 6)
_ARM_LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10))
_LEG_LIMBS = ((11, 13), (13, 15), (12, 14), (14, 16))


def not_found(shape) -> dict:
    return {"labels_png": encode_png(np.zeros(shape, np.uint8)), "found": np.bool_(False)}


def nearest_part(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Every pixel of `mask` gets the label of its nearest seed pixel (seeds: 0 = none, else a part)."""
    if not seeds.any():
        return np.zeros_like(seeds)
    # distanceTransformWithLabels numbers each zero pixel; map those numbers back to the seeds' parts
    _, index = cv2.distanceTransformWithLabels((seeds == 0).astype(np.uint8), cv2.DIST_L2, 5,
                                               labelType=cv2.DIST_LABEL_PIXEL)
    lookup = np.zeros(index.max() + 1, np.uint8)
    zero_y, zero_x = np.nonzero(seeds)
    lookup[index[zero_y, zero_x]] = seeds[zero_y, zero_x]
    return np.where(mask, lookup[index], 0).astype(np.uint8)


@register
class KeypointGeometry(Backend):
    stage, name = "parsing", "keypoint-geometry"
    defaults = {"min_score": 0.3, "limb_width": 0.06}
    limits = {"min_score": UNIT, "limb_width": FRACTION}
    input_stages = ("keypoints", "silhouettes")

    @property
    def version(self) -> str:
        return "ccreid keypoint geometry (not a learned parser)"

    def store_attrs(self) -> dict:
        return {"labels": json.dumps(GEOMETRY_LABELS)}

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        h, w = image.shape[:2]
        kp, sil = item.inputs["keypoints"], item.inputs["silhouettes"]
        if not (kp["found"] and sil["found"]):
            return not_found((h, w))
        mask = decode_png(sil["mask_png"]) > 0
        joints = kp["keypoints"]
        ok = joints[:, 2] >= self.params["min_score"]
        pt = {j: tuple(int(v) for v in np.round(joints[j, :2])) for j in np.flatnonzero(ok)}
        width = max(2, round(self.params["limb_width"] * h))
        seeds = np.zeros((h, w), np.uint8)
        torso = [pt[j] for j in (5, 6, 12, 11) if j in pt]
        if len(torso) >= 3:
            cv2.fillPoly(seeds, [np.array(torso, np.int32)], _TORSO)
        for limbs, part in ((_LEG_LIMBS, _LEGS), (_ARM_LIMBS, _ARMS)):
            for a, b in limbs:
                if a in pt and b in pt:
                    cv2.line(seeds, pt[a], pt[b], part, width)
        for ankle in (15, 16):
            if ankle in pt:
                x, y = pt[ankle]
                cv2.ellipse(seeds, (x, y + width // 2), (width, max(1, width // 2)), 0, 0, 360, _SHOES, -1)
        face = [pt[j] for j in range(5) if j in pt]
        if face:
            centre = np.mean(face, axis=0)
            shoulders = [pt[j] for j in (5, 6) if j in pt]
            # head radius from the shoulder span when both shoulders are seen (side views: a share of the height)
            span = abs(shoulders[0][0] - shoulders[1][0]) if len(shoulders) == 2 else 0
            radius = max(0.35 * span, 0.05 * h)
            cv2.circle(seeds, tuple(int(v) for v in centre), max(2, round(radius)), _HEAD, -1)
        labels = nearest_part(mask, seeds)
        return {"labels_png": encode_png(labels), "found": np.bool_(labels.any())}


@register
class GroundTruthParsing(GroundTruthBackend):
    stage, name = "parsing", "groundtruth"

    def __init__(self, params=None, model_file=None):
        super().__init__(params, model_file)
        self.labels = part_label_names(self.truth.file, self.model_file)

    def store_attrs(self) -> dict:
        return {"labels": json.dumps(self.labels)}

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        labels = decode_png(self.truth["parts_png", item.path])
        if labels.shape != image.shape[:2] or labels.max() >= len(self.labels):
            raise InputError(f"{self.model_file}: the part map of {item.path} ({labels.shape}, labels up to "
                             f"{labels.max()}) does not fit its image {image.shape[:2]} and labels {self.labels}")
        return {"labels_png": encode_png(labels), "found": np.bool_(labels.any())}


class SCHP(Backend):
    stage = "parsing"
    label_set = ""
    defaults = {"input_size": 0, "device": "auto"}  # input_size 0: SCHP's own for the label set
    limits = {"input_size": Range(0), "device": DEVICE}
    needs_file = True  # exp-schp-201908261155-lip.pth / ...-atr.pth / ...-pascal-person-part.pth

    def __init__(self, params=None, model_file=None):
        super().__init__(params, model_file)
        from .backends import load_state_strictly, load_weights, resolve_device
        from .schp import INPUT_SIZES, LABEL_SETS, SCHPNet

        self.labels = LABEL_SETS[self.label_set]
        self.size = self.params["input_size"] or INPUT_SIZES[self.label_set]
        what = f"an SCHP ResNet-101 {self.label_set} checkpoint ({len(self.labels)} classes)"
        state = load_weights(self, self.model_file, what)  # a bad file fails before the network is built
        self.device = resolve_device(self.params["device"])
        model = load_state_strictly(SCHPNet(len(self.labels)), state, self.model_file, what, self.weights_hint())
        self.model = model.to(self.device).eval()

    @property
    def version(self) -> str:
        return f"ccreid SCHP ResNet-101 ({self.label_set}, {self.size}x{self.size})"

    def store_attrs(self) -> dict:
        return {"labels": json.dumps(self.labels)}

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        return self.batch([image], [item])[0]

    def batch(self, images: list[np.ndarray], items: list[Item]) -> list[dict]:
        """One network pass for the batch (schp.parse_batch)."""
        from .schp import parse_batch

        maps = parse_batch(self.model, images, self.size, self.device)
        return [{"labels_png": encode_png(labels), "found": np.bool_(labels.any())} for labels in maps]


SCHP_MODELS = {"lip": "LIP", "atr": "ATR", "pascal": "Pascal-Person-Part"}
for _set, _model in SCHP_MODELS.items():
    register(type(f"SCHP_{_set}", (SCHP,), {
        "name": f"schp-{_set}", "label_set": _set,
        "weights_source": f"the SCHP README (GoGoDuck912/Self-Correction-Human-Parsing), {_model} model"}))
