"""How much each cue the methods read says about identity, measured on a synthetic dataset's ground truth.

Every image gets one descriptor per cue, computed from the ground truth beside the images (part maps, keypoints,
face boxes) and the pixels — no detector, so a figure here is a property of the data, not of a backend:

- ``body``: height (over the image's), head size, shoulder width, hip width and leg length (over the person's
  height): the body shape 3DSL learns from keypoints and silhouettes (Chen et al., CVPR 2021, sec. 3.2) and
  CRE+BSGA's shape attention attends to (sec. 3.2);
- ``face``: the true face box at 8×8 RGB: what DeSKPro's facial stream reads (Wu et al., ICASSP 2022, sec. 2.2);
- ``hair_skin``: mean colour of the hair and of the skin (head, arms, legs) pixels;
- ``clothes``: mean colour of the top, bottom and shoe pixels: what CRE erases (sec. 3.1) and DeSKPro's
  cloth masks hide (sec. 2.1).

Each descriptor is standardised over the images, and identity is retrieved with it by one nearest neighbour:
camera-B images (same outfit as camera A) and camera-C images (the second outfit) as queries against camera A,
rank-1 against the chance rate 1 / identities. A cue that survives the outfit change keeps its C → A rank-1; the
clothes cue should fall to chance there. Raw pixels and a Euclidean 1-NN are a floor on what a trained network
can read, not a ceiling: they say a cue is present, not how well a method uses it.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np

from ..errors import InputError
from ..progress import progress as show_progress
from .figure import PART_LABELS

CUES = ("body", "face", "hair_skin", "clothes")
FACE_SIDE = 8
_L = PART_LABELS


def _extent(mask: np.ndarray) -> tuple[int, int] | None:
    rows = np.flatnonzero(mask.any(1))
    return (int(rows[0]), int(rows[-1]) + 1) if len(rows) else None


def _mean_colour(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return image[mask].mean(0) if mask.any() else np.full(3, np.nan)


def body_descriptor(parts: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Height (over the image's height), then head size, shoulder width, hip width and leg length over the
    person's height; NaN where the joints it needs are not visible. keypoints: 17×3 COCO (x, y, visible)."""
    if keypoints.shape != (17, 3):
        raise InputError(f"keypoints must be 17×3 (COCO), got {keypoints.shape}")
    person = _extent(parts > 0)
    if person is None:
        return np.full(5, np.nan)
    height = person[1] - person[0]
    head = _extent(np.isin(parts, (_L["head"], _L["hair"])))
    head_size = (head[1] - head[0]) / height if head else np.nan

    def width(a: int, b: int) -> float:
        if keypoints[a, 2] > 0 and keypoints[b, 2] > 0:
            return float(abs(keypoints[a, 0] - keypoints[b, 0]) / height)
        return np.nan

    hips = keypoints[[11, 12]]
    ankles = keypoints[[15, 16]]
    legs = np.nan
    if (hips[:, 2] > 0).any() and (ankles[:, 2] > 0).any():
        legs = float((ankles[ankles[:, 2] > 0, 1].mean() - hips[hips[:, 2] > 0, 1].mean()) / height)
    return np.array([height / parts.shape[0], head_size, width(5, 6), width(11, 12), legs])


def face_descriptor(image: np.ndarray, face_box: np.ndarray) -> np.ndarray:
    """The true face box's pixels at FACE_SIDE × FACE_SIDE, flattened; NaN when no face is visible."""
    if np.isnan(face_box).any():
        return np.full(FACE_SIDE * FACE_SIDE * 3, np.nan)
    h, w = image.shape[:2]
    x1, y1 = max(0, int(np.floor(face_box[0]))), max(0, int(np.floor(face_box[1])))
    x2, y2 = min(w, int(np.ceil(face_box[2]))), min(h, int(np.ceil(face_box[3])))
    if x2 <= x1 or y2 <= y1:
        raise InputError(f"face box {face_box.tolist()} lies outside its {w}×{h} image")
    crop = cv2.resize(image[y1:y2, x1:x2], (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_AREA)
    return crop.astype(np.float64).ravel()


def colour_descriptors(image: np.ndarray, parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hair and skin mean colours, clothes' top / bottom / shoe mean colours); NaN for a part not in view."""
    hair_skin = np.concatenate([_mean_colour(image, parts == _L["hair"]),
                                _mean_colour(image, np.isin(parts, (_L["head"], _L["skin"])))])
    clothes = np.concatenate([_mean_colour(image, parts == _L[p]) for p in ("top", "bottom", "shoes")])
    return hair_skin, clothes


def describe(root: str | Path, groundtruth: str | Path, split: str = "test",
             progress: bool | None = None) -> dict:
    """Descriptors of every image of `split`: {"pid", "camid", "outfit", <cue>: N×D array (NaN rows: not seen)}."""
    root = Path(root)
    with h5py.File(groundtruth, "r") as gt:
        splits = np.array([s.decode() if isinstance(s, bytes) else s for s in gt["split"][:]])
        rows = np.flatnonzero(splits == split)
        if not len(rows):
            raise InputError(f"{groundtruth}: no images in split {split!r} (it has {sorted(set(splits))})")
        out = {"pid": gt["pid"][:][rows], "camid": gt["camid"][:][rows], "outfit": gt["outfit"][:][rows]}
        descriptors = {cue: [] for cue in CUES}
        paths, keypoints, boxes = gt["path"][:][rows], gt["keypoints"][:][rows], gt["face_box"][:][rows]
        for i, r in enumerate(show_progress(rows, "cues", enabled=progress, unit="images")):
            rel = Path(paths[i].decode() if isinstance(paths[i], bytes) else paths[i])
            if rel.is_absolute() or ".." in rel.parts:
                raise InputError(f"{groundtruth}: image path {rel} is not inside the dataset root {root}")
            path = root / rel
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise InputError(f"{path}: missing or not an image (named in {groundtruth})")
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            parts = cv2.imdecode(np.asarray(gt["parts_png"][r]), cv2.IMREAD_UNCHANGED)
            if parts.shape != image.shape[:2]:
                raise InputError(f"{path}: image {image.shape[:2]} and its part map {parts.shape} differ in size")
            descriptors["body"].append(body_descriptor(parts, keypoints[i]))
            descriptors["face"].append(face_descriptor(image, boxes[i]))
            hair_skin, clothes = colour_descriptors(image, parts)
            descriptors["hair_skin"].append(hair_skin)
            descriptors["clothes"].append(clothes)
    out.update({cue: np.stack(v) for cue, v in descriptors.items()})
    return out


def nearest_neighbour_rank1(features: np.ndarray, pids: np.ndarray, query: np.ndarray,
                            gallery: np.ndarray) -> tuple[float, int]:
    """Rank-1 of 1-NN retrieval (Euclidean, each dimension standardised over the rows used) of `query` rows
    against `gallery` rows (boolean masks); rows with a NaN are left out — (rank-1, queries used)."""
    if features.ndim != 2 or len(features) != len(pids) or query.shape != pids.shape or gallery.shape != pids.shape:
        raise InputError(f"features {features.shape}, pids {pids.shape}, masks {query.shape} / {gallery.shape} "
                         "do not line up")
    seen = ~np.isnan(features).any(1)
    q, g = query & seen, gallery & seen
    if not q.any() or not g.any():
        return float("nan"), 0
    used = features[q | g]
    std = used.std(0)
    z = (features - used.mean(0)) / np.where(std > 0, std, 1)
    zq, zg = z[q], z[g]
    d = (zq**2).sum(1)[:, None] + (zg**2).sum(1)[None, :] - 2 * zq @ zg.T  # no Q×G×D array: the train split is big
    return float((pids[g][d.argmin(1)] == pids[q]).mean()), int(q.sum())


def cue_table(descriptors: dict) -> dict:
    """Per cue: rank-1 with the same outfit (camera B → A) and after the outfit change (C → A), queries used;
    and chance (1 / identities in the gallery)."""
    pid, cam = descriptors["pid"], descriptors["camid"]
    gallery = cam == 0
    table = {}
    for cue in CUES:
        same, n_same = nearest_neighbour_rank1(descriptors[cue], pid, cam == 1, gallery)
        changed, n_changed = nearest_neighbour_rank1(descriptors[cue], pid, cam == 2, gallery)
        table[cue] = {"same_outfit_rank1": same, "same_outfit_queries": n_same,
                      "changed_outfit_rank1": changed, "changed_outfit_queries": n_changed}
    table["chance"] = 1 / len(np.unique(pid[gallery]))
    return table


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m pipeline.synthetic.cues", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="the synthetic dataset's root (holds prcc/ and groundtruth/)")
    ap.add_argument("--split", default="test", choices=("train", "test"))
    ap.add_argument("--out", help="also write the table here as JSON")
    a = ap.parse_args(argv)
    gt = Path(a.root) / "groundtruth" / "groundtruth.h5"
    if not gt.is_file():
        raise InputError(f"{gt}: not found — is {a.root} a dataset written by python -m pipeline.synthetic?")
    table = cue_table(describe(a.root, gt, a.split))
    print(f"{'cue':<10} {'same outfit R1':>15} {'changed outfit R1':>18}   (chance {table['chance']:.1%})")
    for cue in CUES:
        t = table[cue]
        print(f"{cue:<10} {t['same_outfit_rank1']:>15.1%} {t['changed_outfit_rank1']:>18.1%}   "
              f"({t['same_outfit_queries']} / {t['changed_outfit_queries']} queries)")
    if a.out:
        Path(a.out).write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    from ..cli import reports_user_errors

    raise SystemExit(reports_user_errors(main)())
