"""Rotations and the camera ψ shared by keypoint projection and silhouette rendering.

Image coordinates are normalised by the image height: x_n = (2u − W)/H, y_n = (2v − H)/H for pixel
(u, v), so y points down, the image centre is 0 and the height spans [−1, 1] whatever the aspect.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from smplx.lbs import batch_rodrigues

from pipeline.errors import InputError

CAMERAS = ("weak_perspective", "perspective")


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """The continuous 6-D rotation representation (two columns, Gram–Schmidt; Zhou et al. 2019) -> 3×3."""
    a = x.reshape(-1, 3, 2)
    b1 = F.normalize(a[..., 0], dim=-1)
    b2 = F.normalize(a[..., 1] - (b1 * a[..., 1]).sum(-1, keepdim=True) * b1, dim=-1)
    return torch.stack([b1, b2, torch.cross(b1, b2, dim=-1)], dim=-1)


def rotmat_to_rot6d(r: torch.Tensor) -> torch.Tensor:
    return r[..., :, :2].reshape(*r.shape[:-2], 6)


def axis_angle_to_rotmat(aa: torch.Tensor) -> torch.Tensor:
    """…×3 axis-angle -> …×3×3 (Rodrigues, smplx's implementation)."""
    return batch_rodrigues(aa.reshape(-1, 3)).reshape(*aa.shape[:-1], 3, 3)


def upright_root() -> torch.Tensor:
    """Global orientation π about x: SMPL's y-up body stands upright in y-down image coordinates (HMR's start)."""
    return torch.tensor([math.pi, 0.0, 0.0])


def project(points: torch.Tensor, cam: torch.Tensor, model: str = "weak_perspective", focal: float = 5000.0,
            image_height: int = 224) -> torch.Tensor:
    """B×N×3 camera-frame points, cam B×3 = (s, tx, ty) -> B×N×2 normalised image coordinates.

    weak_perspective (HMR): x_n = s·(X + t). perspective (SPIN): the body is moved to depth
    t_z = 2f/(H·s) so that s keeps its weak-perspective meaning, then x_n = (2f/H)·(X + t)/(Z + t_z).
    """
    s, t = cam[:, :1, None], cam[:, None, 1:]
    if model == "weak_perspective":
        return s * (points[..., :2] + t)
    if model == "perspective":
        f_n = 2 * focal / image_height
        tz = f_n / s.clamp(min=1e-6)
        return f_n * (points[..., :2] + t) / (points[..., 2:] + tz).clamp(min=1e-6)
    raise InputError(f"camera model {model!r}; supported: {', '.join(CAMERAS)}")


def to_pixels(xy_n: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return torch.stack([(xy_n[..., 0] * height + width) / 2, (xy_n[..., 1] * height + height) / 2], dim=-1)


def to_normalised(uv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return torch.stack([(2 * uv[..., 0] - width) / height, (2 * uv[..., 1] - height) / height], dim=-1)
