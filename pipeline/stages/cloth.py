"""Cloth masks from a parsing store, under a label scheme chosen per parsing label set in config.

A scheme names, in the parsing store's own label names: `cloth` (DeSKPro's cloth pixels), `erase` (what
CRE zeroes) and `merge7` (CRE's 7-part merge: every foreground label must go to one of MERGE7's parts).
Fields: `cloth_png`, `erase_png`, `body_png` (foreground, BSGA's body-shape mask), `merged_png`.
"""
from __future__ import annotations

import json

import cv2
import numpy as np

from ..errors import InputError
from .backends import Backend, Item, Names, register
from .store import decode_png, encode_png

MERGE7 = ("background", "head", "tops", "bottoms", "dress", "arms", "lower_limbs")


def attention_target(keep: np.ndarray, size: tuple[int, int] | None = None, epsilon: float = 0.1) -> np.ndarray:
    """DeSKPro's CSA target (KimbingNg/DeskPro model/deskpro/deskpro.py, NoClothNet.forward; paper eq. (3)) from
    its cloth-irrelevant mask `keep` (H×W in [0, 1], 0 on cloth): resized bilinearly by cv2.resize to `size`
    (h, w) — the attention map's size — when given, then every pixel that is exactly 0 set to ε. Pixels that
    bilinear resizing leaves between 0 and 1 (the cloth's border) keep their value, as in the official code."""
    keep = np.asarray(keep, np.float32)
    if keep.ndim != 2 or keep.size == 0:
        raise InputError(f"attention target: expected a non-empty H×W mask, got shape {keep.shape}")
    if size is not None:
        keep = cv2.resize(keep, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
    return np.where(keep == 0, np.float32(epsilon), keep).astype(np.float32)


def deskpro_target(cloth: np.ndarray, epsilon: float = 0.1) -> np.ndarray:
    """The CSA target at the mask's own size (docs/preprocessing.md#cloth-masks): ε on cloth pixels, 1
    elsewhere."""
    return attention_target((np.asarray(cloth) == 0).astype(np.float32), None, epsilon)


@register
class ClothFromParsing(Backend):
    stage, name = "cloth_masks", "parsing"
    defaults = {"label_set": "", "cloth": [], "erase": [], "merge7": {}}
    limits = {"cloth": Names(), "erase": Names(), "merge7": Names(keyed=True)}
    input_stages = ("parsing",)

    @property
    def version(self) -> str:
        return "ccreid cloth masks from parsing labels"

    def bind(self, input_attrs: dict[str, dict]) -> None:
        labels = json.loads(input_attrs["parsing"]["labels"])
        index = {name: i for i, name in enumerate(labels)}
        named = (list(self.params["cloth"]) + list(self.params["erase"])
                 + [n for v in self.params["merge7"].values() for n in v])
        unknown = sorted(set(named) - set(index))
        if unknown:
            raise InputError(f"cloth scheme names {unknown}, which the parsing store's label set "
                             f"{self.params['label_set'] or ''} {labels} does not have")
        bad_parts = sorted(set(self.params["merge7"]) - set(MERGE7))
        if bad_parts:
            raise InputError(f"merge7 parts {bad_parts} are not among {MERGE7}")
        self.cloth, self.erase = np.zeros(256, bool), np.zeros(256, bool)
        self.cloth[[index[n] for n in self.params["cloth"]]] = True
        self.erase[[index[n] for n in self.params["erase"]]] = True
        self.merge = np.zeros(256, np.uint8)
        for part, names in self.params["merge7"].items():
            self.merge[[index[n] for n in names]] = MERGE7.index(part)
        unmapped = [labels[i] for i in range(1, len(labels)) if self.merge[i] == 0]
        if unmapped:
            raise InputError(f"merge7 leaves parsing labels {unmapped} unassigned; give each foreground label a part")

    def store_attrs(self) -> dict:
        return {"merged_labels": json.dumps(MERGE7), "scheme": json.dumps(self.params, sort_keys=True)}

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        parsing = item.inputs["parsing"]
        labels = decode_png(parsing["labels_png"])
        return {"cloth_png": encode_png(self.cloth[labels]), "erase_png": encode_png(self.erase[labels]),
                "body_png": encode_png(labels > 0), "merged_png": encode_png(self.merge[labels]),
                "found": np.bool_(parsing["found"])}
