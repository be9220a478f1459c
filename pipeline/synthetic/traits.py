"""What a synthetic person is made of: identity traits that clothes never change, and outfits.

Identity lives in body proportions, height, head shape, skin tone and hair. Outfits (top and bottom
colours, textures, sleeve and leg length, shoes) come from a pool shared between identities, so an
outfit narrows the candidates but never names a person.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError

# RGB skin tones spanning light to dark; each identity jitters one of them.
SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 134, 96], [161, 102, 68], [112, 72, 48]],
    dtype=np.float64,
)
HAIR_COLOURS = np.array(
    [[30, 24, 20], [80, 50, 30], [140, 90, 50], [215, 180, 110], [170, 60, 30], [150, 150, 150]],
    dtype=np.float64,
)
HAIR_STYLES = ("short", "long", "bald", "bun")
TEXTURES = ("solid", "hstripes", "vstripes", "checks", "dots")


@dataclass(frozen=True)
class Identity:
    height: float  # fraction of the frame the person fills, before per-image jitter
    head_size: float  # head height / body height
    head_aspect: float  # head width / head height: round vs long faces
    shoulder_width: float  # half shoulder width / body height
    hip_width: float  # half hip width / body height
    girth: float  # limb thickness multiplier
    leg_ratio: float  # hip-to-floor / body height
    skin: tuple[int, int, int]
    hair_colour: tuple[int, int, int]
    hair_style: str
    eye_spacing: float  # half distance between eyes / head width

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Outfit:
    top_colour: tuple[int, int, int]
    top_colour2: tuple[int, int, int]
    top_texture: str
    long_sleeves: bool
    bottom_colour: tuple[int, int, int]
    bottom_colour2: tuple[int, int, int]
    bottom_texture: str
    long_legs: bool  # trousers (True) or shorts
    shoe_colour: tuple[int, int, int]

    def to_json(self) -> dict:
        return asdict(self)


def _rgb(values: np.ndarray) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in np.clip(np.round(values), 0, 255))
    return (r, g, b)


def _vivid_colour(rng: np.random.Generator) -> np.ndarray:
    """A clothing colour: random hue with moderate-to-high saturation, or occasionally a neutral."""
    if rng.random() < 0.2:
        return np.full(3, rng.uniform(25, 235))
    hue = rng.uniform(0, 360)
    sat = rng.uniform(0.45, 0.95)
    val = rng.uniform(0.35, 0.95)
    c = val * sat
    x = c * (1 - abs((hue / 60) % 2 - 1))
    m = val - c
    sector = int(hue // 60) % 6
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][sector]
    return (np.array(rgb) + m) * 255


def _spread(value: float, low: float, high: float, spread: float, floor: float, ceiling: float) -> float:
    """value, drawn uniformly in [low, high], moved `spread` times as far from the range's centre (within
    [floor, ceiling]); spread 1 returns it unchanged, bit for bit."""
    if spread == 1:
        return value
    centre = (low + high) / 2
    return float(np.clip(centre + spread * (value - centre), floor, ceiling))


def sample_identity(rng: np.random.Generator, spread: float = 1.0, head_scale: float = 1.0) -> Identity:
    """spread: how far body proportions and head shape range around their centres (1: the defaults' ranges; 2:
    twice as wide, people differ more); head_scale: heads (and so faces and hair) that much larger. The draws are
    the same whatever the two are, so one seed gives the same people, only more or less distinct."""
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.93, 1.05)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15)

    def trait(low, high, floor, ceiling):
        return _spread(float(rng.uniform(low, high)), low, high, spread, floor, ceiling)

    height = trait(0.80, 0.95, 0.70, 0.97)
    head_size = trait(0.115, 0.155, 0.09, 0.19) * head_scale
    return Identity(
        height=height,
        head_size=head_size,
        head_aspect=trait(0.68, 0.95, 0.55, 1.05),
        shoulder_width=trait(0.10, 0.155, 0.07, 0.19),
        hip_width=trait(0.065, 0.105, 0.045, 0.13),
        girth=trait(0.8, 1.3, 0.55, 1.6),
        leg_ratio=trait(0.44, 0.54, 0.39, 0.59),
        skin=_rgb(skin),
        hair_colour=_rgb(hair),
        hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        eye_spacing=trait(0.18, 0.30, 0.12, 0.34),
    )


def sample_outfit(rng: np.random.Generator) -> Outfit:
    top, bottom = _vivid_colour(rng), _vivid_colour(rng)
    return Outfit(
        top_colour=_rgb(top),
        top_colour2=_rgb(_vivid_colour(rng)),
        top_texture=TEXTURES[rng.integers(len(TEXTURES))],
        long_sleeves=bool(rng.random() < 0.5),
        bottom_colour=_rgb(bottom),
        bottom_colour2=_rgb(_vivid_colour(rng)),
        bottom_texture=TEXTURES[rng.integers(len(TEXTURES))] if rng.random() < 0.4 else "solid",
        long_legs=bool(rng.random() < 0.7),
        shoe_colour=_rgb(rng.uniform(10, 240, size=3) if rng.random() < 0.5 else np.full(3, rng.uniform(10, 80))),
    )


def assign_outfits(num_ids: int, pool_size: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Two distinct outfits per identity (cameras A/B wear the first, camera C the second).

    Outfits are dealt round-robin from a shuffled pool so every outfit is worn by several identities
    (about 2·num_ids/pool_size each): colour alone can never identify anyone.
    """
    if pool_size < 2:
        raise InputError(f"the outfit pool needs at least 2 outfits, got {pool_size}")
    deck = np.concatenate([rng.permutation(pool_size) for _ in range(2 * num_ids // pool_size + 2)])
    pairs, cursor = [], 0
    for _ in range(num_ids):
        first = int(deck[cursor])
        cursor += 1
        while int(deck[cursor]) == first:
            cursor += 1
        pairs.append((first, int(deck[cursor])))
        cursor += 1
    return pairs
