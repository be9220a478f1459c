"""Silhouette backends: one binary person mask per image, stored PNG-encoded (`mask_png`, 0/1).

- `grabcut`: OpenCV GrabCut as the 3DSL paper uses it (reference.md §5.6): a rectangle inset by `margin`
  from the crop's border (ReID images are person crops), optionally seeded with the keypoints stage's
  confident limbs as sure foreground; `iterations` GrabCut rounds.
- `mediapipe`: the selfie/person segmentation model bundled in the mediapipe wheel, thresholded.
- `parsing`: the foreground (label > 0) of a human-parsing store (the parsing stage, issue 5).
- `groundtruth`: the synthetic dataset's part maps > 0, for testing downstream logic.
"""
from __future__ import annotations

import cv2
import h5py
import numpy as np

from .backends import Backend, Item, register
from .keypoints import SKELETON
from .store import decode_png, encode_png


def record(mask: np.ndarray) -> dict:
    mask = (mask > 0).astype(np.uint8)
    return {"mask_png": encode_png(mask), "found": np.bool_(mask.any()),
            "area": np.float32(mask.mean() if mask.size else 0.0)}


def limb_seeds(shape: tuple[int, int], keypoints: np.ndarray, min_score: float, thickness: float) -> np.ndarray:
    """Sure-foreground pixels: lines along limbs whose two joints are confident, and the confident joints."""
    h, w = shape
    seeds = np.zeros((h, w), np.uint8)
    width = max(1, round(thickness * w))
    ok = keypoints[:, 2] >= min_score
    pts = np.round(keypoints[:, :2]).astype(np.int32)
    for a, b in SKELETON:
        if ok[a] and ok[b]:
            cv2.line(seeds, tuple(map(int, pts[a])), tuple(map(int, pts[b])), 1, width)
    for j in np.flatnonzero(ok):
        cv2.circle(seeds, tuple(map(int, pts[j])), width, 1, -1)
    return seeds


@register
class GrabCut(Backend):
    stage, name = "silhouettes", "grabcut"
    defaults = {"iterations": 5, "margin": 0.05, "seed_keypoints": True, "min_score": 0.5, "limb_thickness": 0.04}
    input_stages = optional_inputs = ("keypoints",)

    @property
    def version(self) -> str:
        return f"opencv {cv2.__version__} grabCut"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        h, w = image.shape[:2]
        mx, my = round(self.params["margin"] * w), round(self.params["margin"] * h)
        rect = (mx, my, max(1, w - 2 * mx), max(1, h - 2 * my))
        mask = np.full((h, w), cv2.GC_BGD, np.uint8)
        mask[rect[1]: rect[1] + rect[3], rect[0]: rect[0] + rect[2]] = cv2.GC_PR_FGD
        kp = item.inputs.get("keypoints")
        if self.params["seed_keypoints"] and kp is not None and kp["found"]:
            seeds = limb_seeds((h, w), kp["keypoints"], self.params["min_score"], self.params["limb_thickness"])
            mask[seeds > 0] = cv2.GC_FGD
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        bgr = np.ascontiguousarray(image[..., ::-1])
        try:
            cv2.grabCut(bgr, mask, rect, bgd, fgd, self.params["iterations"], cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            # GrabCut needs both classes present in its initial mask; a crop too small for that is not found
            return record(np.zeros((h, w), np.uint8))
        return record(np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)))


@register
class MediaPipeSegmentation(Backend):
    stage, name = "silhouettes", "mediapipe"
    defaults = {"model_selection": 0, "threshold": 0.5}

    def __init__(self, params=None, model_file=None):
        super().__init__(params, model_file)
        from mediapipe.python.solutions import selfie_segmentation

        self.segmenter = selfie_segmentation.SelfieSegmentation(model_selection=self.params["model_selection"])

    @property
    def version(self) -> str:
        import mediapipe

        return f"mediapipe {mediapipe.__version__} selfie segmentation (model {self.params['model_selection']})"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        probability = self.segmenter.process(np.ascontiguousarray(image)).segmentation_mask
        return record(probability >= self.params["threshold"])

    def close(self) -> None:
        self.segmenter.close()


@register
class ParsingForeground(Backend):
    """Everything a human-parsing map labels as not background (label 0)."""

    stage, name = "silhouettes", "parsing"
    input_stages = ("parsing",)

    @property
    def version(self) -> str:
        return "ccreid parsing foreground"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        parsing = item.inputs.get("parsing")
        if parsing is None:
            raise ValueError("silhouettes backend 'parsing' needs a parsing store (--input-store)")
        if not parsing["found"]:
            return record(np.zeros(image.shape[:2], np.uint8))
        return record(decode_png(parsing["labels_png"]) > 0)


@register
class GroundTruthSilhouettes(Backend):
    stage, name = "silhouettes", "groundtruth"
    needs_file = True  # <synthetic root>/groundtruth/groundtruth.h5

    def __init__(self, params=None, model_file=None):
        super().__init__(params, model_file)
        self.file = h5py.File(self.model_file, "r")
        self.row = {p.decode() if isinstance(p, bytes) else p: i for i, p in enumerate(self.file["path"][:])}

    @property
    def version(self) -> str:
        return "ccreid synthetic ground truth"

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        if item.path not in self.row:
            raise KeyError(f"{self.model_file}: no ground truth for {item.path}")
        return record(decode_png(self.file["parts_png"][self.row[item.path]]) > 0)

    def close(self) -> None:
        self.file.close()
