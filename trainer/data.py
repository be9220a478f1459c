"""Datasets over images.h5 and the list files."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.datasets.base import Sample
from pipeline.imagepack import ImagePack


class PackedImages(Dataset):
    """(image tensor, pid, camid, clothes_id) for each listed sample, read from the image pack."""

    def __init__(self, pack: ImagePack, samples: list[Sample], transform: Callable[[np.ndarray], torch.Tensor]):
        self.pack, self.samples, self.transform = pack, samples, transform
        self.pack_index = pack.indices([s.path for s in samples])
        self.pids = np.array([s.pid for s in samples], np.int64)
        self.camids = np.array([s.camid for s in samples], np.int64)
        self.clothes = np.array([s.clothes_id for s in samples], np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        img = self.transform(self.pack.image(int(self.pack_index[i])))
        return img, int(self.pids[i]), int(self.camids[i]), int(self.clothes[i])
