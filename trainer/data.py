"""Datasets over images.h5 and the list files: images, and video clips of tracklets."""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.datasets.base import Sample
from pipeline.errors import InputError
from pipeline.imagepack import ImagePack
from pipeline.stages.store import decode_png

from .clips import dense_chunks, evaluation_clips, random_crop
from .samplers import item_generator


class PackedImages(Dataset):
    """(image tensor, pid, camid, clothes_id) for each listed sample, read from the image pack. The key is an
    index, or in training a samplers.Draw whose seed drives the augmentation."""

    def __init__(self, pack: ImagePack, samples: list[Sample], transform: Callable[[np.ndarray], torch.Tensor]):
        self.pack, self.samples, self.transform = pack, samples, transform
        self.pack_index = pack.indices([s.path for s in samples])
        self.pids = np.array([s.pid for s in samples], np.int64)
        self.camids = np.array([s.camid for s in samples], np.int64)
        self.clothes = np.array([s.clothes_id for s in samples], np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        i, generator = item_generator(key)
        img = self.transform(self.pack.image(int(self.pack_index[i])), generator)
        return img, int(self.pids[i]), int(self.camids[i]), int(self.clothes[i])


class PackedClips(Dataset):
    """Video clips from the image pack: (T×C×H×W tensor, pid, camid, clothes_id) per item.

    train=True: one item per dense chunk of each tracklet, its frames drawn by `random_crop` at every
    access; train=False: one item per test clip, `owner[i]` naming the tracklet clip i belongs to.
    The transform gets the clip's frames as a list and applies one draw of its random parameters to all.
    """

    def __init__(self, pack: ImagePack, tracklets: list[Sample], transform: Callable[[list[np.ndarray]], torch.Tensor],
                 train: bool, seq_len: int, stride: int, dense_step: int = 0):
        if any(not t.frames for t in tracklets):
            raise InputError("PackedClips needs tracklets with frames (a video dataset's lists)")
        self.pack, self.transform, self.train = pack, transform, train
        self.seq_len, self.stride = seq_len, stride
        self.num_tracklets = len(tracklets)
        self.items: list[np.ndarray] = []  # pack indices: a chunk's frames (train) or a clip's (test)
        owner = []
        for t, tracklet in enumerate(tracklets):
            frames = pack.indices(list(tracklet.frames))
            parts = dense_chunks(len(frames), dense_step) if train else evaluation_clips(len(frames), seq_len, stride)
            for part in parts:
                self.items.append(frames[list(part)])
                owner.append(t)
        self.owner = np.array(owner, np.int64)
        self.pids = np.array([t.pid for t in tracklets], np.int64)[self.owner]
        self.camids = np.array([t.camid for t in tracklets], np.int64)[self.owner]
        self.clothes = np.array([t.clothes_id for t in tracklets], np.int64)[self.owner]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key):
        i, generator = item_generator(key)
        frames = self.items[i]
        if self.train:
            frames = frames[random_crop(len(frames), self.seq_len, self.stride, generator)]
        clip = self.transform([self.pack.image(int(f)) for f in frames], generator)
        return clip, int(self.pids[i]), int(self.camids[i]), int(self.clothes[i])


class PackedImagesWithBodyCues(PackedImages):
    """3DSL's training items: the augmented image for E_rgb, the plain resized image for E_3D (no 3D
    augmentation, as the authors' code), and the 2-D cues ASSP projects onto — COCO-17 keypoints in
    the normalised image coordinates of `trainer.body.geometry` with a confidence each (0: missing),
    and the silhouette resized to the rendering size (area-averaged, so in [0, 1]).

    keypoints: the keypoints store's N×17×3 array (x, y, score in original pixels), masks: its PNG
    column, both indexed by image-pack row; sil_found: whether the silhouette stage found a person.
    """

    def __init__(self, pack: ImagePack, samples: list[Sample], transform, plain_transform, keypoints: np.ndarray,
                 masks: np.ndarray, sil_found: np.ndarray, render_size: tuple[int, int]):
        super().__init__(pack, samples, transform)
        if len(keypoints) != len(pack) or len(masks) != len(pack):
            raise InputError(f"stores have {len(keypoints)} keypoint and {len(masks)} silhouette rows, "
                             f"the image pack {len(pack)}")
        self.plain, self.keypoints, self.masks, self.sil_found = plain_transform, keypoints, masks, sil_found
        self.render_size = render_size
        self.heights, self.widths = pack.sizes()

    def __getitem__(self, key):
        i, generator = item_generator(key)
        j = int(self.pack_index[i])
        rgb = self.pack.image(j)
        image3d = self.plain(rgb)
        h, w = image3d.shape[-2:]
        kp = self.keypoints[j].astype(np.float32).copy()
        u, v = kp[:, 0] * w / self.widths[j], kp[:, 1] * h / self.heights[j]
        score = np.clip(np.nan_to_num(kp[:, 2]), 0, 1)
        kp = np.stack([(2 * u - w) / h, (2 * v - h) / h, score], 1)
        mask = decode_png(self.masks[j]).astype(np.float32)
        rh, rw = self.render_size
        sil = cv2.resize(mask, (rw, rh), interpolation=cv2.INTER_AREA)
        cues = {"rgb": self.transform(rgb, generator), "image3d": image3d, "keypoints": torch.from_numpy(kp),
                "silhouette": torch.from_numpy(sil), "sil_valid": torch.tensor(float(self.sil_found[j]))}
        return cues, int(self.pids[i]), int(self.camids[i]), int(self.clothes[i])
