"""Quality of a keypoints or silhouettes store against the synthetic dataset's ground truth.

- silhouettes: per-image IoU with the true silhouette (part map > 0); an image with no mask scores 0.
- keypoints: PCK@α — a joint the truth marks as inside the image is correct when the prediction lies
  within α × the person's height (the true silhouette's vertical extent); joints of images where nothing
  was found count as misses, so PCK already pays for a low found rate.
"""
from __future__ import annotations

import h5py
import numpy as np

from ..imagepack import ImagePack
from .store import Store, decode_png


def _truth_rows(gt: h5py.File, pack: ImagePack) -> np.ndarray:
    row = {p.decode() if isinstance(p, bytes) else p: i for i, p in enumerate(gt["path"][:])}
    missing = [p for p in pack.paths if p not in row]
    if missing:
        raise KeyError(f"{gt.filename}: no ground truth for {len(missing)} packed images, e.g. {missing[0]}")
    return np.array([row[p] for p in pack.paths])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def silhouette_quality(store: Store, pack: ImagePack, groundtruth: str) -> dict:
    with h5py.File(groundtruth, "r") as gt:
        rows = _truth_rows(gt, pack)
        scores = np.array([iou(store.png("mask_png", i) > 0, decode_png(gt["parts_png"][r]) > 0)
                           for i, r in enumerate(rows)])
    found = store["found"][:]
    return {"images": len(scores), "found_rate": float(found.mean()), "mean_iou": float(scores.mean()),
            "mean_iou_found": float(scores[found].mean()) if found.any() else 0.0}


def keypoint_quality(store: Store, pack: ImagePack, groundtruth: str, alpha: float = 0.1) -> dict:
    with h5py.File(groundtruth, "r") as gt:
        rows = _truth_rows(gt, pack)
        truth = gt["keypoints"][:][rows]
        heights = np.array([_height(decode_png(gt["parts_png"][r]) > 0) for r in rows], np.float32)
    pred, found = store["keypoints"][:], store["found"][:]
    visible = truth[:, :, 2] > 0
    distance = np.linalg.norm(pred[:, :, :2] - truth[:, :, :2], axis=2)
    correct = (distance <= alpha * heights[:, None]) & found[:, None] & visible
    per_joint = correct.sum(0) / np.maximum(visible.sum(0), 1)
    return {"images": len(found), "found_rate": float(found.mean()), f"pck@{alpha}": float(correct.sum() / visible.sum()),
            f"pck@{alpha}_found": float(correct[found].sum() / max(visible[found].sum(), 1)),
            "pck_per_joint": [round(float(v), 4) for v in per_joint]}


def _height(silhouette: np.ndarray) -> float:
    rows = np.flatnonzero(silhouette.any(1))
    return float(rows[-1] - rows[0] + 1) if len(rows) else 0.0


def quality(store_path: str, images: str, groundtruth: str) -> dict:
    pack = ImagePack(images)
    with Store(store_path, pack.manifest_sha256) as store:
        stage = store.attrs["stage"]
        if stage == "silhouettes":
            return silhouette_quality(store, pack, groundtruth)
        if stage == "keypoints":
            return keypoint_quality(store, pack, groundtruth)
        raise ValueError(f"{store_path}: no ground-truth comparison for a {stage} store")
