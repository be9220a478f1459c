"""The reconstruction check of the paper's Fig. 7 kind: meshes regressed from training images, projected
back over them, with the detected keypoints (green) against the mesh's (red)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.atomic import atomic_path  # noqa: E402

from ..transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from .geometry import to_pixels  # noqa: E402


def _unnormalise(image: torch.Tensor) -> np.ndarray:
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (image.cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def reconstruction_sheet(out: str | Path, images: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor,
                         mesh_xy_n: torch.Tensor, kp_pred_n: torch.Tensor, kp_target: torch.Tensor,
                         ious: np.ndarray, title: str) -> Path:
    """images B×3×H×W (normalised), mesh_xy_n B×V×2 and kp_pred_n B×17×2 in normalised image coordinates,
    kp_target B×17×3 (x_n, y_n, confidence)."""
    b, _, h, w = images.shape
    fig, axes = plt.subplots(1, b, figsize=(1.6 * b, 3.6), squeeze=False)
    mesh_px = to_pixels(mesh_xy_n, h, w).cpu().numpy()
    kp_px = to_pixels(kp_pred_n, h, w).cpu().numpy()
    target_px = to_pixels(kp_target[..., :2], h, w).cpu().numpy()
    f = faces.cpu().numpy()
    for i, ax in enumerate(axes[0]):
        ax.imshow(_unnormalise(images[i]), extent=(0, w, h, 0))
        ax.triplot(mesh_px[i, :, 0], mesh_px[i, :, 1], f[::4], lw=0.15, color="#1f77b4", alpha=0.6)
        seen = kp_target[i, :, 2].cpu().numpy() > 0
        ax.scatter(target_px[i, seen, 0], target_px[i, seen, 1], s=6, c="lime")
        ax.scatter(kp_px[i, :, 0], kp_px[i, :, 1], s=6, c="red")
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(f"IoU {ious[i]:.2f}", fontsize=7)
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
