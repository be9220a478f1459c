"""A contact sheet: a few images, each beside what every stage made of it, as one PNG a person can check.

Columns, for the stores given: the image with its keypoint skeleton, the silhouette, the parsing in
colour, the cloth mask, the aligned face crop and the restored face (a grey tile where nothing was found).
"""
from __future__ import annotations

import contextlib

import cv2
import numpy as np

from ..imagepack import ImagePack
from .keypoints import SKELETON
from .store import Store, decode_rgb

TILE_H = 192
PALETTE = np.array([[0, 0, 0], [230, 160, 120], [60, 120, 220], [240, 200, 60], [60, 180, 90], [200, 60, 60],
                    [160, 80, 200], [80, 200, 200], [250, 130, 30], [120, 120, 120]], np.uint8)


def _tile(img: np.ndarray, height: int = TILE_H) -> np.ndarray:
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    scale = height / img.shape[0]
    return cv2.resize(img, (max(1, round(img.shape[1] * scale)), height), interpolation=cv2.INTER_NEAREST)


def _empty() -> np.ndarray:
    return np.full((TILE_H, TILE_H, 3), 96, np.uint8)


def _skeleton(image: np.ndarray, keypoints: np.ndarray, min_score: float = 0.3) -> np.ndarray:
    out = image.copy()
    r = max(1, image.shape[0] // 80)
    ok = keypoints[:, 2] >= min_score
    pts = np.round(keypoints[:, :2]).astype(int)
    for a, b in SKELETON:
        if ok[a] and ok[b]:
            cv2.line(out, tuple(map(int, pts[a])), tuple(map(int, pts[b])), (255, 40, 40), r)
    for j in np.flatnonzero(ok):
        cv2.circle(out, tuple(map(int, pts[j])), r + 1, (40, 255, 40), -1)
    return out


def render(pack: ImagePack, stores: dict[str, Store], indices: list[int]) -> np.ndarray:
    rows = []
    for i in indices:
        image = pack.image(i)
        kp = stores.get("keypoints")
        tiles = [_tile(_skeleton(image, kp["keypoints"][i]) if kp is not None and kp["found"][i] else image)]
        for stage, field, colour in (("silhouettes", "mask_png", False), ("parsing", "labels_png", True),
                                     ("cloth_masks", "cloth_png", False)):
            if stage in stores:
                m = stores[stage].png(field, i)
                tiles.append(_tile(PALETTE[m % len(PALETTE)] if colour else (m > 0).astype(np.uint8) * 255))
        for stage, field in (("faces", "crop_png"), ("faces_restored", "restored_png")):
            if stage in stores:
                found = stores[stage]["found"][i]
                tiles.append(_tile(decode_rgb(stores[stage][field][i])) if found else _empty())
        rows.append(np.hstack([np.pad(t, ((0, 0), (0, 4), (0, 0)), constant_values=255) for t in tiles]))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.vstack(rows)


def contact_sheet(images: str, store_paths: list[str], out: str, count: int = 8, seed: int = 0) -> None:
    from ..atomic import atomic_path

    pack = ImagePack(images)
    rng = np.random.default_rng(seed)
    indices = sorted(rng.choice(len(pack), size=min(count, len(pack)), replace=False).tolist())
    with contextlib.ExitStack() as stack:
        stores = {}
        for path in store_paths:
            store = stack.enter_context(Store(path, pack.manifest_sha256))
            stores[store.attrs["stage"]] = store
        sheet = render(pack, stores, indices)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(sheet[..., ::-1]))
    if not ok:
        raise ValueError(f"{out}: could not encode the contact sheet")
    with atomic_path(out) as tmp:
        tmp.write_bytes(png.tobytes())
