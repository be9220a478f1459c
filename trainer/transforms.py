"""Image transforms of CAL's pipeline (Simple-CCReID's data/img_transforms.py; docs/methods.md#transforms),
on uint8 RGB arrays -> normalised tensors.

RandomCroping and RandomErasing are written here rather than taken from torchvision because CAL's
versions differ in ways that change the augmentation distribution: the crop enlarges by a fixed
1.125 and crops back, and the erasing samples the aspect ratio uniformly in [r1, 1/r1] with up to
100 attempts and fills with fixed per-channel values on the normalised tensor.
Every random draw comes from the generator passed in: training items carry their own seed (a function of
the run's seed, the epoch, the rank and the item's position in the epoch: trainer.samplers.Draw), so an
augmentation does not depend on which loader worker made it or on how long that worker has lived, and a
resumed run repeats exactly the draws of an uninterrupted one.

Both transforms take one image (H×W×3) or a video clip (a list of them, sizes may differ): a clip's
frames are resized and stacked to T×C×H×W, and one draw of the random parameters applies to every
frame, as Simple-CCReID's spatial transforms do for video.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ERASE_FILL = (0.4914, 0.4822, 0.4465)


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform in [0, high], both ends included (Python's random.randint, as CAL's RandomErasing draws)."""
    return int(torch.randint(0, high + 1, (), generator=generator))


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)


def resized(rgb: np.ndarray | list[np.ndarray], size: list[int]) -> torch.Tensor:
    """C×H×W uint8 for an image, T×C×H×W for a list of frames."""
    if isinstance(rgb, list):
        return torch.stack([TF.resize(to_tensor(f), size, antialias=True) for f in rgb])
    return TF.resize(to_tensor(rgb), size, antialias=True)


def random_crop_enlarged(img: torch.Tensor, p: float, factor: float = 1.125,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    if _rand(generator) >= p:
        return img
    h, w = img.shape[-2:]
    big_h, big_w = int(round(h * factor)), int(round(w * factor))
    img = TF.resize(img, [big_h, big_w], antialias=True)
    top = int(round(_rand(generator) * (big_h - h)))
    left = int(round(_rand(generator) * (big_w - w)))
    return img[..., top : top + h, left : left + w]


def random_erase(img: torch.Tensor, p: float, sl=0.02, sh=0.4, r1=0.3, fill=ERASE_FILL, attempts=100,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    if _rand(generator) >= p:
        return img
    c, h, w = img.shape[-3:]
    for _ in range(attempts):
        area = h * w * (sl + (sh - sl) * _rand(generator))
        aspect = r1 + (1 / r1 - r1) * _rand(generator)
        eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < ew < w and 0 < eh < h:
            # CAL's randint(0, H - h): the last rows and columns can be erased too
            y = _randint(h - eh, generator)
            x = _randint(w - ew, generator)
            img = img.clone()
            img[..., y : y + eh, x : x + ew] = torch.tensor(fill[:c], dtype=img.dtype)[:, None, None]
            return img
    return img


def normalise(img: torch.Tensor) -> torch.Tensor:
    return TF.normalize(img.float() / 255.0, IMAGENET_MEAN, IMAGENET_STD)


class TrainTransform:
    def __init__(self, height: int, width: int, crop_p: float = 0.5, flip_p: float = 0.5, erase_p: float = 0.5):
        self.size, self.crop_p, self.flip_p, self.erase_p = [height, width], crop_p, flip_p, erase_p

    def __call__(self, rgb: np.ndarray | list[np.ndarray], generator: torch.Generator | None = None) -> torch.Tensor:
        img = random_crop_enlarged(resized(rgb, self.size), self.crop_p, generator=generator)
        if _rand(generator) < self.flip_p:
            img = TF.horizontal_flip(img)
        return random_erase(normalise(img), self.erase_p, generator=generator)


class TestTransform:
    def __init__(self, height: int, width: int):
        self.size = [height, width]

    def __call__(self, rgb: np.ndarray | list[np.ndarray], generator: torch.Generator | None = None) -> torch.Tensor:
        return normalise(resized(rgb, self.size))
