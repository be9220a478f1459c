"""How video tracklets become clips (Simple-CCReID's data/datasets/ccvid.py and
data/temporal_transforms.py; docs/protocols.md#ccvid-clips), as frame-index lists so they can be tested
against worked examples.

- training: each tracklet is cut into chunks of `step` frames (the last chunk keeps the remainder;
  a shorter tracklet stays whole), and every time a chunk is drawn, a random crop picks its frames;
- testing: each tracklet becomes ceil(L / seq_len) clips of seq_len frames (CCVID: 8), whose features are averaged.
"""
from __future__ import annotations

import math

import torch

from pipeline.errors import InputError


def dense_chunks(length: int, step: int) -> list[range]:
    """Dense sampling for training: [0, step), [step, 2·step), ..., the last chunk running to the end."""
    if step <= 0 or length < step:
        return [range(length)]
    count = length // step
    return [range(i * step, (i + 1) * step if i < count - 1 else length) for i in range(count)]


def evaluation_clips(length: int, seq_len: int = 8, stride: int = 4) -> list[list[int]]:
    """Every frame of a test tracklet in equal-length clips (Simple-CCReID's _recombination_for_testset):
    each full block of seq_len·stride frames gives `stride` interleaved clips; the remainder R gives
    R // seq_len clips at a reduced stride; a last partial clip of the final L mod seq_len frames is
    padded by repeating them cyclically."""
    block = seq_len * stride
    clips = []
    for i in range(length // block):
        clips += [list(range(i * block + j, (i + 1) * block, stride)) for j in range(stride)]
    remainder = length % block
    if remainder:
        base = length // block * block
        reduced = remainder // seq_len
        clips += [list(range(base + i, base + seq_len * reduced, reduced)) for i in range(reduced)]
        if length % seq_len:
            tail = list(range(length // seq_len * seq_len, length))
            clips.append([tail[k % len(tail)] for k in range(seq_len)])
    if len(clips) != math.ceil(length / seq_len) or any(len(c) != seq_len for c in clips):
        raise AssertionError(f"clip construction broke its own invariant for a tracklet of {length} frames")
    return clips


def random_crop(length: int, size: int, stride: int, generator: torch.Generator | None = None) -> list[int]:
    """Training frame choice (Simple-CCReID's TemporalRandomCrop): a random window of `size` frames
    every `stride` when the chunk is long enough; else one random frame from each of `size` equal
    segments; else `size` draws with replacement, sorted."""
    def randint(high: int) -> int:  # uniform in [0, high]
        return int(torch.randint(0, high + 1, (), generator=generator))

    if length >= size * stride:
        begin = randint(length - (size - 1) * stride - 1)
        return list(range(begin, begin + (size - 1) * stride + 1, stride))
    if length >= size:
        seg = length // size
        return [i * seg + randint(seg - 1) for i in range(size)]
    if length == 0:
        raise InputError("a clip cannot be cut from an empty tracklet")
    return sorted(randint(length - 1) for _ in range(size))
