"""A contact sheet: a few images, each beside what every stage made of it, as one PNG a person can check.

Columns, for the stores given: the image with its keypoint skeleton, the silhouette, the parsing in
colour, the cloth mask, the aligned face crop and the restored face (a grey tile where nothing was found),
each headed by its stage and backend; above each row, the image's path in images.h5.
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


FONT, FONT_SCALE, LINE_H, PAD = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 18, 6
GAP = 4  # white pixels between tiles and between rows


def text_width(text: str) -> int:
    return cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0][0]


def fit(text: str, width: int) -> str:
    """text, its start cut off to fit `width` pixels: the end of a path names the image."""
    if text_width(text) <= width - 2 * PAD:
        return text
    while len(text) > 1 and text_width("..." + text) > width - 2 * PAD:
        text = text[1:]
    return "..." + text


def text_strip(lines: list[str], width: int, centre: bool = False) -> np.ndarray:
    """White strip `width` wide with one line of black text per entry (centred, or from the left)."""
    strip = np.full((len(lines) * LINE_H + PAD, width, 3), 255, np.uint8)
    for k, line in enumerate(lines):
        line = fit(line, width)
        x = (width - text_width(line)) // 2 if centre else PAD
        cv2.putText(strip, line, (x, (k + 1) * LINE_H - 4), FONT, FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def column_labels(stores: dict[str, Store]) -> list[list[str]]:
    """Each column's heading (stage, backend) in the order `render` draws them."""
    kp = stores.get("keypoints")
    labels = [["image", f"keypoints/{kp.attrs['backend']}"] if kp is not None else ["image", ""]]
    return labels + [[stage, str(stores[stage].attrs["backend"])] for stage in TILES if stage in stores]


# the columns after the image, in order: stage -> (field, how it is drawn)
TILES = {"silhouettes": ("mask_png", "mask"), "parsing": ("labels_png", "labels"), "cloth_masks": ("cloth_png", "mask"),
         "faces": ("crop_png", "rgb"), "faces_restored": ("restored_png", "rgb")}


def _centred(tile: np.ndarray, width: int) -> np.ndarray:
    left = (width - tile.shape[1]) // 2
    return np.pad(tile, ((0, 0), (left, width - tile.shape[1] - left), (0, 0)), constant_values=255)


def render(pack: ImagePack, stores: dict[str, Store], indices: list[int]) -> np.ndarray:
    """The sheet: a heading per column (stage and backend), then per image its path above its tiles; every
    column as wide as its widest tile or heading, tiles centred in it."""
    labels = column_labels(stores)
    rows = []
    for i in indices:
        image = pack.image(i)
        kp = stores.get("keypoints")
        tiles = [_tile(_skeleton(image, kp["keypoints"][i]) if kp is not None and kp["found"][i] else image)]
        for stage, (field, kind) in TILES.items():
            if stage not in stores:
                continue
            if kind == "rgb":
                found = stores[stage]["found"][i]
                tiles.append(_tile(decode_rgb(stores[stage][field][i])) if found else _empty())
            else:
                m = stores[stage].png(field, i)
                tiles.append(_tile(PALETTE[m % len(PALETTE)] if kind == "labels" else (m > 0).astype(np.uint8) * 255))
        rows.append(tiles)
    widths = [max([text_width(line) + 2 * PAD for line in label]
                  + [row[c].shape[1] for row in rows]) for c, label in enumerate(labels)]
    width = sum(widths) + GAP * len(widths)

    def line_up(parts):
        return np.hstack([np.pad(_centred(t, w), ((0, 0), (0, GAP), (0, 0)), constant_values=255)
                          for t, w in zip(parts, widths, strict=True)])

    out = [line_up([text_strip(label, w, centre=True) for label, w in zip(labels, widths, strict=True)])]
    for i, tiles in zip(indices, rows, strict=True):
        out += [text_strip([pack.paths[i]], width), line_up(tiles), np.full((GAP, width, 3), 255, np.uint8)]
    return np.vstack(out)


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
