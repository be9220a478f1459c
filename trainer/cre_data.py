"""CRE+BSGA's items (Mu et al. §3.1–3.2; docs/methods.md#crebsga): the image, its clothes-erased copy (CRE) and
its binary body mask (BSGA), all from the cloth_masks store.

CRE, eq. (1): the pixels of the erased classes set to 0 in the image itself, before normalisation. Which pixels:
`erase: merged` — the 7-part merge's parts named in `parts` (the paper's {tops, bottoms, dress}); `erase:
scheme` — the cloth scheme's own `erase` labels (config/config.yaml `cloth_schemes`; for ATR the
introduction's list: upper clothes, skirt, pants, dress, belt, bag, scarf).

Training: the original and the erased copy go through one draw of crop (×1.125), flip and random erasing, and
the body mask through the same crop and flip, so all three stay aligned. Each item is a dict:
{"image", "erased" (with CRE), "body_mask" (with BSGA: 1×H×W in [0, 1])}.
"""
from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset

from pipeline.datasets.base import Sample
from pipeline.errors import InputError
from pipeline.imagepack import ImagePack
from pipeline.stages.cloth import MERGE7
from pipeline.stages.store import Store

from .samplers import item_generator
from .stores import StoreColumn
from .transforms import PairedTransform, normalise, resized

ERASE_SOURCES = ("merged", "scheme")
CROP_FACTOR = 1.125  # CAL's RandomCroping, the crop the paper's baseline ([16], via [32]) uses


def erase_labels(parts: list[str]) -> np.ndarray:
    """The merged labels (indices into MERGE7) of the named parts; background and unknown names refused."""
    unknown = sorted(set(parts) - set(MERGE7[1:]))
    if unknown:
        raise InputError(f"cre.parts {unknown}: not among the 7-part merge's parts {list(MERGE7[1:])}")
    if not parts:
        raise InputError("cre.parts is empty: CRE would erase nothing")
    return np.array(sorted(MERGE7.index(p) for p in parts), np.uint8)


def erased(rgb: np.ndarray, erase: np.ndarray) -> np.ndarray:
    """Eq. (1): the image with every pixel where `erase` is true set to 0."""
    if erase.shape != rgb.shape[:2]:
        raise InputError(f"erase mask {erase.shape} does not match the image {rgb.shape[:2]}")
    out = rgb.copy()
    out[erase.astype(bool)] = 0
    return out


class CREItems(Dataset):
    """(item dict, pid, camid, clothes_id) per listed sample: see the module docstring."""

    def __init__(self, pack: ImagePack, samples: list[Sample], stores: dict[str, Store], *, height: int, width: int,
                 cre: bool, bsga: bool, train: bool, augment: dict | None = None, erase: str = "merged",
                 parts: tuple[str, ...] = ("tops", "bottoms", "dress")):
        if ((cre and train) or bsga) and "cloth_masks" not in stores:
            raise InputError("CRE+BSGA reads the cloth_masks store (erased pixels, body masks); give "
                             "--store cloth_masks=PATH")
        if erase not in ERASE_SOURCES:
            raise InputError(f"cre.erase must be one of {', '.join(ERASE_SOURCES)}, got {erase!r}")
        self.pack, self.samples, self.train, self.size = pack, samples, train, (height, width)
        self.pack_index = pack.indices([s.path for s in samples])
        self.pids = np.array([s.pid for s in samples], np.int64)
        self.camids = np.array([s.camid for s in samples], np.int64)
        self.clothes = np.array([s.clothes_id for s in samples], np.int64)
        self.erase_column = self.body_column = None
        if cre and train:
            store = stores["cloth_masks"]
            self.erase_column = StoreColumn(store, "merged_png" if erase == "merged" else "erase_png")
            self.labels = erase_labels(list(parts)) if erase == "merged" else None
        if bsga:
            self.body_column = StoreColumn(stores["cloth_masks"], "body_png")
        if train:
            a = augment or {}
            self.transform = PairedTransform(height, width, a["flip_p"], a["crop_p"], CROP_FACTOR, a["erase_p"])

    def __len__(self) -> int:
        return len(self.samples)

    def erase_mask(self, j: int, rgb: np.ndarray) -> np.ndarray:
        mask = self.erase_column.mask(j, rgb, self.pack.paths[j])
        return np.isin(mask, self.labels) if self.labels is not None else mask > 0

    def __getitem__(self, key):
        i, generator = item_generator(key)
        j = int(self.pack_index[i])
        rgb = self.pack.image(j)
        body = () if self.body_column is None else \
            (self.body_column.mask(j, rgb, self.pack.paths[j]).astype(np.float32),)
        if self.train:
            images = [rgb] + ([erased(rgb, self.erase_mask(j, rgb))] if self.erase_column is not None else [])
            out, masks = self.transform(images, body, generator)
            item = dict(zip(("image", "erased"), out, strict=False))
            if masks:
                item["body_mask"] = masks[0]
        else:
            item = {"image": normalise(resized(rgb, list(self.size)))}
            if body:
                # resized as in training (PairedTransform's geometry), without the random crop and flip
                item["body_mask"] = TF.resize(torch.from_numpy(body[0])[None], list(self.size),
                                              antialias=True).clamp(0, 1)
        return item, int(self.pids[i]), int(self.camids[i]), int(self.clothes[i])
