"""The reconstruction check of the paper's Fig. 7 kind: meshes regressed from training images, projected
back over them, with the detected keypoints (green) against the mesh's (red), and the target silhouette
(translucent amber fill) against the rendered one (magenta outline at 0.5) — the two things L_key and
L_sil compare."""
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


TARGET_FILL = (1.0, 0.8, 0.0)      # amber
TARGET_ALPHA = 0.4
RENDERED_LINE = (1.0, 0.0, 1.0)    # magenta
LEGEND = "amber: target silhouette, magenta: rendered; green: detected keypoints, red: the mesh's"


def _fill(mask: np.ndarray) -> np.ndarray:
    rgba = np.zeros((*mask.shape, 4), np.float32)
    rgba[mask] = (*TARGET_FILL, TARGET_ALPHA)
    return rgba


def _outline(ax, sil: np.ndarray, h: int, w: int) -> None:
    """The 0.5 level of a silhouette rendered at its own resolution, in image pixels (pixel centres)."""
    if not (sil.min() < 0.5 < sil.max()):
        return  # nothing rendered in view (or all of it): no outline to draw
    sh, sw = sil.shape
    xs, ys = (np.arange(sw) + 0.5) * w / sw, (np.arange(sh) + 0.5) * h / sh
    ax.contour(xs, ys, sil, levels=[0.5], colors=[RENDERED_LINE], linewidths=1.0)


def reconstruction_sheet(out: str | Path, images: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor,
                         mesh_xy_n: torch.Tensor, kp_pred_n: torch.Tensor, kp_target: torch.Tensor,
                         ious: np.ndarray, title: str, target_sil: torch.Tensor, rendered_sil: torch.Tensor) -> Path:
    """images B×3×H×W (normalised), mesh_xy_n B×V×2 and kp_pred_n B×17×2 in normalised image coordinates,
    kp_target B×17×3 (x_n, y_n, confidence), target_sil and rendered_sil B×h×w in [0, 1] at the render
    resolution (stretched over the image)."""
    b, _, h, w = images.shape
    fig, axes = plt.subplots(1, b, figsize=(1.6 * b, 3.6), squeeze=False)
    mesh_px = to_pixels(mesh_xy_n, h, w).cpu().numpy()
    kp_px = to_pixels(kp_pred_n, h, w).cpu().numpy()
    target_px = to_pixels(kp_target[..., :2], h, w).cpu().numpy()
    targets, rendered = target_sil.detach().cpu().numpy(), rendered_sil.detach().cpu().numpy()
    f = faces.cpu().numpy()
    for i, ax in enumerate(axes[0]):
        ax.imshow(_unnormalise(images[i]), extent=(0, w, h, 0))
        ax.imshow(_fill(targets[i] > 0.5), extent=(0, w, h, 0), interpolation="nearest")
        ax.triplot(mesh_px[i, :, 0], mesh_px[i, :, 1], f[::4], lw=0.15, color="#1f77b4", alpha=0.6)
        seen = kp_target[i, :, 2].cpu().numpy() > 0
        ax.scatter(target_px[i, seen, 0], target_px[i, seen, 1], s=6, c="lime")
        ax.scatter(kp_px[i, :, 0], kp_px[i, :, 1], s=6, c="red")
        _outline(ax, rendered[i], h, w)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(f"IoU {ious[i]:.2f}", fontsize=7)
        ax.axis("off")
    fig.suptitle(f"{title}\n{LEGEND}", fontsize=7)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
