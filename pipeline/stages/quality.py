"""Quality of a store: against the synthetic dataset's ground truth (`quality`), and, for every store without
any truth, what its outputs look like (`cue_quality`, computed when a store is merged).

Against the ground truth:

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

Without truth, on the found images only (a found rate counts an image as found however poor its output: a
selfie segmenter "finds" a sliver of 2 % of the image), per stage: the share of the image a mask covers
(silhouettes, parsing foreground, cloth masks) and how many are under 5 % or over 95 %; the joints scoring
at least 0.3 (what the geometry parser, the face search and the contact sheet use) and how many images have
fewer than 6; the joint scores; the face box height in pixels and how many are under 16 px (a 224 px crop
of such a face is mostly interpolation); the detection score; the restored face's contrast (a flat output
is a failed generator) and how far it is from the plain bicubic upsampling of the crop (0: no restoration).
Quantiles 5, 25, 50, 75, 95 %; a row of PNG is decoded per found image.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import cv2
import h5py
import numpy as np

from ..errors import InputError
from ..imagepack import ImagePack
from .backends import open_groundtruth, part_label_names
from .store import Store, decode_png, store_rebuild


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


# --- without truth: what a merged store's outputs look like ---------------------------------------------------

PERCENTS = (5, 25, 50, 75, 95)
CONFIDENT_SCORE = 0.3  # the joint score the geometry parser, the face search region and the contact sheet use
MIN_JOINTS = 6  # fewer confident joints than this: no torso and limbs to seed, fit or parse
SMALL_SHARE, LARGE_SHARE = 0.05, 0.95  # a mask on under 5 % of a person crop misses the person; over 95 %, the crop
SMALL_FACE_PX = 16
FLAT_STD = 2.0  # grey levels: a restored face with less contrast is one colour
ROWS_READ = 256  # rows read from the store at once: bounded memory whatever the store's size


def distribution(what: str, unit: str, over: str, values, below: float | None = None,
                 above: float | None = None) -> dict:
    """One measure: its quantiles over `values` (n of them, each one of `over`) and how many lie strictly below
    `below` / above `above`. unit: share (a fraction of the image), px, joints, score or grey (levels)."""
    values = np.asarray(values, np.float64)
    quantiles = np.percentile(values, PERCENTS) if len(values) else []
    return {"what": what, "unit": unit, "over": over, "n": int(len(values)),
            "quantiles": {str(p): round(float(v), 4) for p, v in zip(PERCENTS, quantiles, strict=False)},
            "flags": ([{"below": below, "count": int((values < below).sum())}] if below is not None else [])
            + ([{"above": above, "count": int((values > above).sum())}] if above is not None else [])}


def _found_rows(store: Store) -> np.ndarray:
    return np.flatnonzero(store["found"][:])


def _decoded(store: Store, field: str, rows: np.ndarray) -> Iterator[np.ndarray]:
    """The decoded PNG of `field` at each of `rows` (ascending), read a span of rows at a time."""
    for start in range(0, len(rows), ROWS_READ):
        block = rows[start : start + ROWS_READ]
        span = store[field][block[0] : block[-1] + 1]  # one contiguous read: far faster than a row each
        for r in block:
            image = decode_png(span[r - block[0]])
            if image is None:
                raise InputError(f"{store.path}: {field} of row {r} is not a PNG; {_rebuild(store)}")
            yield image


def _rebuild(store: Store) -> str:
    return store_rebuild(store.path)


def _mask_share(what: str, field: str, name: str) -> Callable[[Store], dict]:
    def measure(store: Store) -> dict:
        shares = [np.count_nonzero(m) / m.size for m in _decoded(store, field, _found_rows(store))]
        return {name: distribution(what, "share", "found images", shares, below=SMALL_SHARE, above=LARGE_SHARE)}
    return measure


def keypoints_cue_quality(store: Store) -> dict:
    scores = store["keypoints"][:][_found_rows(store)][:, :, 2]
    confident = (scores >= CONFIDENT_SCORE).sum(1)
    return {"confident_joints": distribution(f"joints scoring >= {CONFIDENT_SCORE} (of {scores.shape[1]})",
                                             "joints", "found images", confident, below=MIN_JOINTS),
            "joint_score": distribution("joint score", "score", "joints of found images", scores.ravel())}


def faces_cue_quality(store: Store) -> dict:
    rows = _found_rows(store)
    boxes = store["box"][:][rows]
    heights = boxes[:, 3] - boxes[:, 1]
    bad = ~np.isfinite(heights) | (heights < 0)
    if bad.any():  # a backend bug: a detection without a box must be stored as not found
        raise InputError(f"{store.path}: {int(bad.sum())} found face(s) without a valid box (e.g. row "
                         f"{int(rows[bad][0])}: {boxes[bad][0].tolist()}); {_rebuild(store)}")
    return {"box_height": distribution("face box height", "px", "found images", heights, below=SMALL_FACE_PX),
            "score": distribution("detection score", "score", "found images", store["score"][:][rows])}


def faces_restored_cue_quality(store: Store) -> dict:
    rows = _found_rows(store)
    contrast, change = [], []
    for lr, restored in zip(_decoded(store, "lr_png", rows), _decoded(store, "restored_png", rows), strict=True):
        grey = cv2.cvtColor(restored, cv2.COLOR_BGR2GRAY).astype(np.float32)
        contrast.append(float(grey.std()))
        size = (restored.shape[1], restored.shape[0])
        upsampled = cv2.resize(lr, size, interpolation=cv2.INTER_CUBIC)
        change.append(float(np.abs(restored.astype(np.float32) - upsampled).mean()))
    return {"contrast": distribution("restored face contrast (std)", "grey", "found images", contrast,
                                     below=FLAT_STD),
            "change": distribution("mean change from the bicubic upsampling", "grey", "found images", change)}


# stage -> its measures of a merged store (each a name -> distribution)
CUE_QUALITY: dict[str, Callable[[Store], dict]] = {
    "keypoints": keypoints_cue_quality,
    "silhouettes": _mask_share("mask share of the image", "mask_png", "mask_share"),
    "parsing": _mask_share("foreground share of the image", "labels_png", "foreground_share"),
    "cloth_masks": _mask_share("cloth share of the image", "cloth_png", "cloth_share"),
    "faces": faces_cue_quality,
    "faces_restored": faces_restored_cue_quality,
}


def cue_quality(store: Store) -> dict:
    """What a merged store's outputs look like (see the module's docstring); {} for a stage without measures."""
    measure = CUE_QUALITY.get(str(store.attrs["stage"]))
    return measure(store) if measure and len(store) else {}  # a store of no images has no fields to measure


def format_value(value: float, unit: str) -> str:
    if unit == "share":
        return f"{100 * value:.1f}%"
    if unit == "px":
        return f"{value:.0f} px"
    if unit == "score":
        return f"{value:.2f}"
    return f"{value:g}" if unit == "joints" else f"{value:.1f}"


def format_flag(flag: dict, unit: str) -> str:
    side = "below" if "below" in flag else "above"
    if unit == "share":
        return f"{flag['count']} {side} {100 * flag[side]:g}%"
    return f"{flag['count']} {side} {flag[side]:g}" + {"px": " px", "joints": " joints"}.get(unit, "")


def describe(measure: dict) -> str:
    """One line for a log: what, over how many, its quantiles and flags."""
    head = f"{measure['what']}, {measure['n']} {measure['over']}"
    if not measure["n"]:
        return f"{measure['what']}: no {measure['over']}"
    unit = measure["unit"]
    quantiles = ", ".join(f"{'median' if p == '50' else p + '%'} {format_value(v, unit)}"
                          for p, v in measure["quantiles"].items())
    flags = ", ".join(format_flag(f, unit) for f in measure["flags"])
    return f"{head}: {quantiles}" + (f"; {flags}" if flags else "")
