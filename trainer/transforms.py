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


def _enlarged_crop(h: int, w: int, factor: float, generator: torch.Generator | None) -> tuple[int, int, int, int]:
    """(enlarged height, enlarged width, top, left): the image is resized ×factor and cropped back to h×w at a
    random offset (CAL's RandomCroping, torchreid's Random2DTranslation)."""
    big_h, big_w = int(round(h * factor)), int(round(w * factor))
    top = int(round(_rand(generator) * (big_h - h)))
    left = int(round(_rand(generator) * (big_w - w)))
    return big_h, big_w, top, left


def _crop_enlarged(img: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    big_h, big_w, top, left = box
    h, w = img.shape[-2:]
    img = TF.resize(img, [big_h, big_w], antialias=True)
    return img[..., top: top + h, left: left + w]


def random_crop_enlarged(img: torch.Tensor, p: float, factor: float = 1.125,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    if _rand(generator) >= p:
        return img
    h, w = img.shape[-2:]
    return _crop_enlarged(img, _enlarged_crop(h, w, factor, generator))


def _erase_box(h: int, w: int, p: float, sl=0.02, sh=0.4, r1=0.3, attempts=100,
               generator: torch.Generator | None = None) -> tuple[int, int, int, int] | None:
    """(y, x, eh, ew) of CAL's / torchreid's RandomErasing rectangle, or None (not applied or no fit)."""
    if _rand(generator) >= p:
        return None
    for _ in range(attempts):
        area = h * w * (sl + (sh - sl) * _rand(generator))
        aspect = r1 + (1 / r1 - r1) * _rand(generator)
        eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < ew < w and 0 < eh < h:
            # CAL's randint(0, H - h): the last rows and columns can be erased too
            y = _randint(h - eh, generator)
            x = _randint(w - ew, generator)
            return y, x, eh, ew
    return None


def _fill_box(img: torch.Tensor, box: tuple[int, int, int, int] | None, fill=ERASE_FILL) -> torch.Tensor:
    if box is None:
        return img
    y, x, eh, ew = box
    c = img.shape[-3]
    img = img.clone()
    img[..., y: y + eh, x: x + ew] = torch.tensor(fill[:c], dtype=img.dtype)[:, None, None]
    return img


def random_erase(img: torch.Tensor, p: float, sl=0.02, sh=0.4, r1=0.3, fill=ERASE_FILL, attempts=100,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    h, w = img.shape[-2:]
    return _fill_box(img, _erase_box(h, w, p, sl, sh, r1, attempts, generator), fill)


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


class PairedTransform:
    """DeSKPro's training pipeline (its data/datamanager.py and torchreid's transforms): resize, horizontal
    flip (p 0.5), Random2DTranslation (p 0.5: enlarge ×1.05, crop back at a random offset), then, for images,
    normalise and random erasing (p 0.5). One draw of every parameter serves all the inputs given together:
    the body and its cloth mask get the same flip and translation (the mask is not normalised nor erased), and
    a low-resolution face and its restored version get the same flip, translation and erasing. The official
    code means to do this by running each input's transform inside isolate_rng(); as written that also repeats
    the same draws for every sample of a worker, which is not done here (docs/methods.md#deskpro-deviations).

    images: H×W×3 uint8 arrays; masks: H×W float arrays in [0, 1]. Returns (image tensors 3×h×w normalised,
    mask tensors 1×h×w in [0, 1])."""

    def __init__(self, height: int, width: int, flip_p: float = 0.5, translate_p: float = 0.5, factor: float = 1.05,
                 erase_p: float = 0.5):
        self.size, self.flip_p, self.translate_p, self.factor, self.erase_p = [height, width], flip_p, translate_p, \
            factor, erase_p

    def __call__(self, images: list[np.ndarray], masks: tuple[np.ndarray, ...] = (),
                 generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        h, w = self.size
        flip = _rand(generator) < self.flip_p
        box = _enlarged_crop(h, w, self.factor, generator) if _rand(generator) < self.translate_p else None

        def geometry(t: torch.Tensor) -> torch.Tensor:
            t = TF.resize(t, self.size, antialias=True)
            if flip:
                t = TF.horizontal_flip(t)
            return _crop_enlarged(t, box) if box is not None else t

        out_images = [normalise(geometry(to_tensor(im))) for im in images]
        erase = _erase_box(h, w, self.erase_p, generator=generator)
        out_images = [_fill_box(im, erase) for im in out_images]
        out_masks = [geometry(torch.from_numpy(np.ascontiguousarray(m, np.float32))[None]).clamp(0, 1) for m in masks]
        return out_images, out_masks
