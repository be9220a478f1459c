"""DeSKPro's items (KimbingNg/DeskPro data/datamanager.py, ImageDataset_MultiInput; docs/methods.md#deskpro):
the body image with its cloth-irrelevant attention target, and the face crops — the low-resolution aligned
crop (faces store, `crop_png`) the student reads, the restored face (faces_restored store, `restored_png`)
the teacher reads — with whether a face was found.

Each item is a dict of tensors, keyed as DeskproNet and the DeSKPro methods read them:
  body (3×H×W), target (1×H/8×W/8, the CSA target) and target_valid (the cloth mask was found),
  face / face_hr (3×S×S), face_found (1.0 or 0.0).
A face that was not found is a zero tensor (the official test set's fill for a missing crop).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.datasets.base import Sample
from pipeline.errors import InputError
from pipeline.imagepack import ImagePack
from pipeline.stages.cloth import attention_target
from pipeline.stages.store import Store, decode_rgb

from .samplers import item_generator
from .stores import StoreColumn
from .transforms import PairedTransform, normalise, resized

# item key -> (stage, field) of the crop it reads
FACE_SOURCES = {"lr": ("faces", "crop_png"), "hr": ("faces_restored", "restored_png")}
STEM_STRIDE = 8  # OSNet's stem (conv1, maxpool, conv2's transition) downsamples ×8: the CSA map's size


def _store(stores: dict[str, Store], stage: str, why: str) -> Store:
    if stage not in stores:
        raise InputError(f"DeSKPro {why} reads the {stage} store; give --store {stage}=PATH (the method's "
                         f"`requires` / `test.stores`)")
    return stores[stage]


def face_found(stores: dict[str, Store], source: str) -> np.ndarray:
    """Per image-pack row: whether the face a source reads exists (its store's `found`)."""
    stage = FACE_SOURCES[source][0]
    return _store(stores, stage, f"{source} faces")["found"][:].astype(bool)


def drop_faceless(samples: list[Sample], pack: ImagePack, found: np.ndarray, what: str) -> list[Sample]:
    """The samples whose face was found (the official training split keeps only those), saying how many went."""
    keep = found[pack.indices([s.path for s in samples])]
    if not keep.any():
        raise InputError(f"{what}: none of the {len(samples)} training images has a face (faces store `found`); "
                         f"DeSKPro's face stream cannot train (data.missing_faces: mask keeps them for the body)")
    print(f"{what}: dropped {int((~keep).sum())} of {len(samples)} training images without a face "
          f"(data.missing_faces: drop)", flush=True)
    return [s for s, k in zip(samples, keep, strict=True) if k]


class DeskproItems(Dataset):
    """(item dict, pid, camid, clothes_id) per listed sample.

    faces: item key -> face source ("lr" or "hr"), e.g. {"face": "lr", "face_hr": "hr"} for the student with
    knowledge distillation, {"face": "hr"} for the teacher or DeSKPro*; body: whether items hold the body;
    target: whether they hold the CSA target (needs the cloth_masks store). train: augment (body and target
    share one draw of flip and translation; the faces of an item share another), else resize and normalise.
    """

    def __init__(self, pack: ImagePack, samples: list[Sample], stores: dict[str, Store], *, height: int, width: int,
                 face_size: int, faces: dict[str, str], body: bool = True, target: bool = False, train: bool = False,
                 augment: dict | None = None, epsilon: float = 0.1):
        if height % STEM_STRIDE or width % STEM_STRIDE:
            raise InputError(f"DeSKPro: data.height {height} and width {width} must be multiples of {STEM_STRIDE} "
                             "(the attention map is the image / 8)")
        if target and not body:
            raise InputError("DeSKPro: the attention target comes with the body image")
        unknown = sorted(set(faces.values()) - set(FACE_SOURCES))
        if unknown:
            raise InputError(f"DeSKPro: face sources {unknown}; expected {sorted(FACE_SOURCES)}")
        self.pack, self.samples, self.train = pack, samples, train
        self.pack_index = pack.indices([s.path for s in samples])
        self.pids = np.array([s.pid for s in samples], np.int64)
        self.camids = np.array([s.camid for s in samples], np.int64)
        self.clothes = np.array([s.clothes_id for s in samples], np.int64)
        self.size, self.face_size, self.body, self.epsilon = (height, width), face_size, body, epsilon
        self.faces = {key: StoreColumn(_store(stores, FACE_SOURCES[src][0], f"{src} faces"), FACE_SOURCES[src][1])
                      for key, src in faces.items()}
        # found: the first source's flag (a restored face exists exactly where its low-resolution crop does)
        self.found = face_found(stores, next(iter(faces.values()))) if faces else None
        self.keep = self.keep_found = None
        if target:
            cloth = _store(stores, "cloth_masks", "attention target")
            self.keep, self.keep_found = StoreColumn(cloth, "cloth_png"), cloth["found"][:].astype(bool)
        for name, flags in (("faces", self.found), ("cloth_masks", self.keep_found)):
            if flags is not None and len(flags) != len(pack):
                raise InputError(f"the {name} store has {len(flags)} rows, the image pack {len(pack)}")
        a = augment or {}
        if train:
            self.body_tf = PairedTransform(height, width, a["flip_p"], a["translate_p"], a["translate_factor"],
                                           a["erase_p"])
            self.face_tf = PairedTransform(face_size, face_size, a["flip_p"], a["translate_p"],
                                           a["translate_factor"], a["erase_p"])

    def __len__(self) -> int:
        return len(self.samples)

    def _body(self, j: int, generator) -> dict[str, torch.Tensor]:
        rgb = self.pack.image(j)
        if not self.train:
            return {"body": normalise(resized(rgb, list(self.size)))}
        keep = ()
        if self.keep is not None:
            cloth = self.keep.mask(j, rgb, self.pack.paths[j])
            keep = ((cloth == 0).astype(np.float32),)  # DeSKPro's mask: 0 on cloth, 1 elsewhere
        (body,), masks = self.body_tf([rgb], keep, generator)
        item = {"body": body}
        if masks:
            size = (self.size[0] // STEM_STRIDE, self.size[1] // STEM_STRIDE)
            item["target"] = torch.from_numpy(attention_target(masks[0][0].numpy(), size, self.epsilon))[None]
            item["target_valid"] = torch.tensor(float(self.keep_found[j]))
        return item

    def _faces(self, j: int, generator) -> dict[str, torch.Tensor]:
        found = bool(self.found[j])
        s = self.face_size
        if not found:
            crops = [torch.zeros(3, s, s) for _ in self.faces]
        else:
            rgbs = [decode_rgb(column[j]) for column in self.faces.values()]
            crops = self.face_tf(rgbs, (), generator)[0] if self.train else \
                [normalise(resized(rgb, [s, s])) for rgb in rgbs]
        return {**dict(zip(self.faces, crops, strict=True)), "face_found": torch.tensor(float(found))}

    def __getitem__(self, key):
        i, generator = item_generator(key)
        j = int(self.pack_index[i])
        item = self._body(j, generator) if self.body else {}
        if self.faces:
            item.update(self._faces(j, generator))
        return item, int(self.pids[i]), int(self.camids[i]), int(self.clothes[i])
