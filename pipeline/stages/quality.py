"""Quality of a keypoints or silhouettes store against the synthetic dataset's ground truth.

- silhouettes: per-image IoU with the true silhouette (part map > 0); an image with no mask scores 0.
- keypoints: PCK@α — a joint the truth marks as inside the image is correct when the prediction lies
  within α × the person's height (the true silhouette's vertical extent); joints of images where nothing
  was found count as misses, so PCK already pays for a low found rate.
- parsing: mIoU over the classes both label sets can express — background, head (truth: head ∪ hair),
  upper body, lower body, shoes. The truth's top/bottom/skin pixels are upper above the true hip line and
  lower below it; a geometry parse maps torso ∪ arms to upper and legs to lower. Computed over the whole
  dataset's pixels per class.
- faces: on images with a visible face, the found rate and the mean IoU of found boxes with the true face
  box; on back views (no face), the rate of false detections.
"""
from __future__ import annotations

import h5py
import numpy as np

from ..errors import InputError
from ..imagepack import ImagePack
from .backends import open_groundtruth, part_label_names
from .store import Store, decode_png


def _truth_rows(gt: h5py.File, pack: ImagePack) -> np.ndarray:
    row = {p.decode() if isinstance(p, bytes) else p: i for i, p in enumerate(gt["path"][:])}
    missing = [p for p in pack.paths if p not in row]
    if missing:
        raise InputError(f"{gt.filename}: no ground truth for {len(missing)} packed images, e.g. {missing[0]}")
    return np.array([row[p] for p in pack.paths])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def silhouette_quality(store: Store, pack: ImagePack, groundtruth: str) -> dict:
    with open_groundtruth(groundtruth) as gt:
        rows = _truth_rows(gt, pack)
        scores = np.array([iou(store.png("mask_png", i) > 0, decode_png(gt["parts_png"][r]) > 0)
                           for i, r in enumerate(rows)])
    found = store["found"][:]
    return {"images": len(scores), "found_rate": float(found.mean()), "mean_iou": float(scores.mean()),
            "mean_iou_found": float(scores[found].mean()) if found.any() else 0.0}


def keypoint_quality(store: Store, pack: ImagePack, groundtruth: str, alpha: float = 0.1) -> dict:
    with open_groundtruth(groundtruth) as gt:
        rows = _truth_rows(gt, pack)
        truth = gt["keypoints"][:][rows]
        heights = np.array([_height(decode_png(gt["parts_png"][r]) > 0) for r in rows], np.float32)
    pred, found = store["keypoints"][:], store["found"][:]
    visible = truth[:, :, 2] > 0
    distance = np.linalg.norm(pred[:, :, :2] - truth[:, :, :2], axis=2)
    correct = (distance <= alpha * heights[:, None]) & found[:, None] & visible
    per_joint = correct.sum(0) / np.maximum(visible.sum(0), 1)
    return {"images": len(found), "found_rate": float(found.mean()),
            f"pck@{alpha}": float(correct.sum() / visible.sum()),
            f"pck@{alpha}_found": float(correct[found].sum() / max(visible[found].sum(), 1)),
            "pck_per_joint": [round(float(v), 4) for v in per_joint]}


def _height(silhouette: np.ndarray) -> float:
    rows = np.flatnonzero(silhouette.any(1))
    return float(rows[-1] - rows[0] + 1) if len(rows) else 0.0


COARSE = ("background", "head", "upper", "lower", "shoes")
_PRED_TO_COARSE = {"background": 0, "head": 1, "torso": 2, "arms": 2, "legs": 3, "shoes": 4}


def _truth_coarse(parts: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    hips = keypoints[[11, 12]]
    hip_y = hips[hips[:, 2] > 0, 1].mean() if (hips[:, 2] > 0).any() else parts.shape[0] / 2
    rows = np.arange(parts.shape[0])[:, None]
    body = np.isin(parts, (3, 4, 5))  # skin, top, bottom
    out = np.where(body, np.where(rows < hip_y, 2, 3), 0)
    out[np.isin(parts, (1, 2))] = 1
    out[parts == 6] = 4
    return out.astype(np.uint8)


def parsing_quality(store: Store, pack: ImagePack, groundtruth: str) -> dict:
    import json

    labels = json.loads(store.attrs["labels"])
    with open_groundtruth(groundtruth) as gt:
        # a store of the truth's own labels (the groundtruth backend) is coarsened as the truth is
        same_as_truth = labels == part_label_names(gt, groundtruth)
        missing = [] if same_as_truth else sorted(set(labels) - set(_PRED_TO_COARSE))
        if missing:
            raise InputError(f"no coarse mapping for parsing labels {missing}")
        lut = None if same_as_truth else np.array([_PRED_TO_COARSE[n] for n in labels], np.uint8)
        inter, union = np.zeros(len(COARSE)), np.zeros(len(COARSE))
        rows = _truth_rows(gt, pack)
        for i, r in enumerate(rows):
            keypoints = gt["keypoints"][r]
            truth = _truth_coarse(decode_png(gt["parts_png"][r]), keypoints)
            predicted = store.png("labels_png", i)
            pred = _truth_coarse(predicted, keypoints) if same_as_truth else lut[predicted]
            for c in range(len(COARSE)):
                p, t = pred == c, truth == c
                inter[c] += np.logical_and(p, t).sum()
                union[c] += np.logical_or(p, t).sum()
    per_class = inter / np.maximum(union, 1)
    return {"images": len(rows), "found_rate": float(store["found"][:].mean()), "miou": float(per_class.mean()),
            "iou_per_class": {c: round(float(v), 4) for c, v in zip(COARSE, per_class, strict=True)}}


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0


def face_quality(store: Store, pack: ImagePack, groundtruth: str) -> dict:
    with open_groundtruth(groundtruth) as gt:
        truth = gt["face_box"][:][_truth_rows(gt, pack)]
    found, boxes = store["found"][:], store["box"][:]
    visible = ~np.isnan(truth).any(1)
    hits = found & visible
    ious = [box_iou(boxes[i], truth[i]) for i in np.flatnonzero(hits)]
    return {"images": len(found), "with_face": int(visible.sum()),
            "found_rate": float(hits.sum() / max(visible.sum(), 1)),
            "mean_box_iou": float(np.mean(ious)) if ious else 0.0,
            "false_detection_rate_back_views": float((found & ~visible).sum() / max((~visible).sum(), 1))}


def quality(store_path: str, images: str, groundtruth: str) -> dict:
    pack = ImagePack(images)
    with Store(store_path, pack.manifest_sha256) as store:
        stage = store.attrs["stage"]
        if stage == "silhouettes":
            return silhouette_quality(store, pack, groundtruth)
        if stage == "keypoints":
            return keypoint_quality(store, pack, groundtruth)
        if stage == "parsing":
            return parsing_quality(store, pack, groundtruth)
        if stage == "faces":
            return face_quality(store, pack, groundtruth)
        raise InputError(f"{store_path}: no ground-truth comparison for a {stage} store")
