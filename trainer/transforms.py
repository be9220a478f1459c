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


def normalise(img: torch.Tensor) -> torch.Tensor:
    return TF.normalize(img.float() / 255.0, IMAGENET_MEAN, IMAGENET_STD)


CROP_FACTOR = 1.125  # CAL's RandomCroping enlarges by 1/8

# The random draws of one training item, as one int64 row, so that the worker can hand the device a uint8 image and
# the draws, and the device apply them to a whole batch (`apply_draws`).
DRAW_FIELDS = ("crop", "big_h", "big_w", "top", "left", "flip", "erase", "y", "x", "eh", "ew")
PIXELS, DRAWS = "uint8_pixels", "augment_draws"  # a training item's image, when the device augments it


class TrainTransform:
    """CAL's training augmentation: resize, random crop ×1.125 (p crop_p), horizontal flip (p flip_p), normalise,
    random erasing (p erase_p).

    on_device=False: the worker returns the augmented, normalised float tensor. on_device=True: the worker only
    decodes, resizes and draws, and returns {PIXELS: uint8 image, DRAWS: its draws}; `finish_batch` applies the
    draws to the batch where it trains. Both draw the same numbers from the generator in the same order and apply
    them with the same code (`apply_draws`), so on the CPU the two give identical tensors; on a GPU the crop's
    enlarging resize rounds through float (torchvision resizes uint8 natively on the CPU only), which can move a
    pixel by one grey level. Moving the work is what keeps a GPU fed: a worker then spends its time decoding
    (benchmarks/bench_input_pipeline.py), and a uint8 batch is a quarter of the bytes to copy."""

    def __init__(self, height: int, width: int, crop_p: float = 0.5, flip_p: float = 0.5, erase_p: float = 0.5,
                 on_device: bool = False):
        self.size, self.crop_p, self.flip_p, self.erase_p = [height, width], crop_p, flip_p, erase_p
        self.on_device = on_device

    def draw(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One item's draws (DRAW_FIELDS), in the order CAL's transforms make them: crop, flip, erasing."""
        h, w = self.size
        crop = (1, *_enlarged_crop(h, w, CROP_FACTOR, generator)) if _rand(generator) < self.crop_p else (0,) * 5
        flip = int(_rand(generator) < self.flip_p)
        box = _erase_box(h, w, self.erase_p, generator=generator)
        return torch.tensor([*crop, flip, *((0,) * 5 if box is None else (1, *box))], dtype=torch.int64)

    def __call__(self, rgb: np.ndarray | list[np.ndarray], generator: torch.Generator | None = None):
        pixels, draws = resized(rgb, self.size), self.draw(generator)
        if self.on_device:
            return {PIXELS: pixels, DRAWS: draws}
        return apply_draws(pixels, draws)


def apply_draws(pixels: torch.Tensor, draws: torch.Tensor, fill=ERASE_FILL) -> torch.Tensor:
    """uint8 images (...×C×H×W) and their draws (rows of DRAW_FIELDS) -> the augmented, normalised float images,
    on the images' device. draws has the images' leading dimensions or a prefix of them: one row per image, or per
    video clip (B×T×C×H×W with B rows: every frame of a clip gets the clip's draw)."""
    if pixels.dtype != torch.uint8 or draws.dim() < 1 or draws.shape[-1] != len(DRAW_FIELDS) or \
            pixels.shape[:draws.dim() - 1] != draws.shape[:-1] or pixels.dim() - draws.dim() < 2:
        raise ValueError(f"apply_draws: uint8 images ...×C×H×W with a draw row each, got {pixels.dtype} "
                         f"{tuple(pixels.shape)} and draws {tuple(draws.shape)}")
    shape = pixels.shape
    c, h, w = shape[-3:]
    # the draws steer slicing in Python: one copy to the host per batch, not a device sync per image
    draws = draws.cpu().reshape(*draws.shape[:-1], *(1,) * (pixels.dim() - draws.dim() - 2), len(DRAW_FIELDS))
    d = draws.expand(*shape[:-3], len(DRAW_FIELDS)).reshape(-1, len(DRAW_FIELDS))
    img = pixels.reshape(-1, c, h, w)
    crop, big_h, big_w, top, left, flip, erase, y, x, eh, ew = d.unbind(1)

    img = img.clone()
    cropped = crop.nonzero().flatten().tolist()
    if cropped:
        # every cropped image is enlarged to the same size (one factor, one input size), so one batched resize
        sizes = {(int(big_h[i]), int(big_w[i])) for i in cropped}
        if len(sizes) != 1:
            raise ValueError(f"apply_draws: crops of several enlarged sizes {sorted(sizes)} in one batch")
        big = TF.resize(img[cropped], list(sizes.pop()), antialias=True)
        # a slice per image: on the CPU 20× faster than one advanced-indexing gather, on a GPU a few small copies
        for k, i in enumerate(cropped):
            t, u = int(top[i]), int(left[i])
            img[i] = big[k, :, t: t + h, u: u + w]
    flipped = flip.nonzero().flatten()
    if len(flipped):
        img[flipped] = img[flipped].flip(-1)
    img = normalise(img)
    fill = torch.tensor(fill[:c], dtype=img.dtype, device=img.device)[:, None, None]
    for i in erase.nonzero().flatten().tolist():
        t, u = int(y[i]), int(x[i])
        img[i, :, t: t + int(eh[i]), u: u + int(ew[i])] = fill
    return img.reshape(shape)


def finish_batch(batch):
    """A training batch's inputs where they train: every {PIXELS, DRAWS} entry (TrainTransform with on_device, at
    any depth of a dict of inputs) becomes its augmented, normalised images; anything else is returned as it is."""
    if isinstance(batch, dict):
        if set(batch) == {PIXELS, DRAWS}:
            return apply_draws(batch[PIXELS], batch[DRAWS])
        return {k: finish_batch(v) for k, v in batch.items()}
    return batch


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
