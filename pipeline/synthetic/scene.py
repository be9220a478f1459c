"""Cluttered backgrounds and lighting, with a per-camera character (palette, tint, brightness)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Camera:
    base: tuple[float, float, float]  # dominant background colour (RGB)
    tint: tuple[float, float, float]  # per-channel illumination gain
    brightness: float


def sample_camera(rng: np.random.Generator) -> Camera:
    return Camera(
        base=tuple(float(v) for v in rng.uniform(60, 200, size=3)),
        tint=tuple(float(v) for v in rng.uniform(0.82, 1.15, size=3)),
        brightness=float(rng.uniform(0.8, 1.1)),
    )


def background(shape: tuple[int, int], camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """A gradient wall, a floor, and random clutter whose colours may collide with any outfit."""
    h, w = shape
    base = np.asarray(camera.base, np.float32) + rng.normal(0, 15, size=3).astype(np.float32)
    other = np.clip(base + rng.normal(0, 45, size=3), 0, 255).astype(np.float32)
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(base * (1 - ramp) + other * ramp, (h, w, 3)).copy()
    floor_y = int(h * rng.uniform(0.72, 0.9))
    img[floor_y:] = np.clip(base * rng.uniform(0.4, 0.8) + rng.normal(0, 10, 3), 0, 255)
    for _ in range(int(rng.integers(6, 15))):
        colour = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        kind = rng.integers(3)
        if kind == 0:
            x1, y1 = int(rng.uniform(-0.2, 1) * w), int(rng.uniform(-0.2, 0.9) * h)
            cv2.rectangle(img, (x1, y1), (x1 + int(rng.uniform(0.1, 0.6) * w), y1 + int(rng.uniform(0.05, 0.4) * h)),
                          colour, -1)
        elif kind == 1:
            p1 = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            p2 = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            cv2.line(img, p1, p2, colour, int(rng.integers(1, 5)), cv2.LINE_AA)
        else:
            cv2.circle(img, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), int(rng.uniform(0.03, 0.2) * w), colour,
                       -1, cv2.LINE_AA)
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.6))


def light(image: np.ndarray, camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """Camera tint, per-image exposure, a directional shading ramp, sensor noise and slight blur."""
    h, w = image.shape[:2]
    img = image.astype(np.float32)
    gain = np.asarray(camera.tint, np.float32) * camera.brightness * rng.uniform(0.8, 1.2)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx / w - 0.5) * np.cos(angle) + (yy / h - 0.5) * np.sin(angle))[..., None]
    img = img * gain * (1 + rng.uniform(0.0, 0.5) * ramp)
    contrast = rng.uniform(0.85, 1.15)
    img = (img - 128) * contrast + 128
    img += rng.normal(0, rng.uniform(1.5, 6), size=img.shape).astype(np.float32)
    sigma = rng.uniform(0.0, 0.8)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
