"""Differentiable silhouettes Π_sil of projected meshes: a pure-PyTorch soft rasteriser (default, CPU and
GPU) and neural_renderer (optional, CUDA only). Both take the same screen-space input: vertices already
projected by `geometry.project`, so one camera model serves keypoints and silhouettes.

The soft rasteriser follows SoftRas's silhouette: each face covers a pixel with probability
D = sigmoid(±d²/σ) (d: the pixel centre's distance to the triangle, + inside, − outside) and the
silhouette is 1 − Π_f (1 − D_f), accumulated as Σ_f −softplus(±d²/σ) in log space. It is written by hand
because no maintained pip-installable library offers a CPU-capable differentiable rasteriser
(pytorch3d has no Linux wheel; neural_renderer is CUDA-only; docs/environment.md#neural-renderer).

Memory stays bounded: a face only touches pixels within a few σ of its bounding box, so each (mesh,
face) pair is evaluated on a window around that box. Pairs are bucketed by window size (powers of two:
exact for big faces, cheap for the many tiny ones), processed in chunks of at most `max_elements`
window pixels, and each chunk is checkpointed, so backward recomputes it instead of keeping it. Peak
memory is one chunk plus one B×H×W accumulator per chunk — never pixels × faces.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from pipeline.errors import InputError

RENDERERS = ("soft", "neural_renderer")


def _distance_sign(px: torch.Tensor, py: torch.Tensor, tri: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distance of pixel centres (px, py: N×P) to triangles tri (N×3×2), and inside (N×P bool).
    Components are kept apart: reductions over a length-2 axis are several times slower on CPU."""
    d2 = None
    cross = []
    for i in range(3):
        ax, ay = tri[:, i, 0, None], tri[:, i, 1, None]
        bx, by = tri[:, (i + 1) % 3, 0, None] - ax, tri[:, (i + 1) % 3, 1, None] - ay
        qx, qy = px - ax, py - ay
        t = ((qx * bx + qy * by) / (bx * bx + by * by).clamp(min=1e-12)).clamp(0, 1)
        ex, ey = qx - t * bx, qy - t * by
        e = ex * ex + ey * ey
        d2 = e if d2 is None else torch.minimum(d2, e)
        cross.append(bx * qy - by * qx)
    c = torch.stack(cross)
    inside = (c >= 0).all(0) | (c <= 0).all(0)  # either winding
    return d2, inside


def _accumulate(acc: torch.Tensor, tri: torch.Tensor, origin: torch.Tensor, flat_base: torch.Tensor, size: int,
                height: int, width: int, sigma: float) -> torch.Tensor:
    """acc (B·H·W) + Σ log(1 − D) of the window pixels of each face in the chunk."""
    dy, dx = torch.meshgrid(torch.arange(size, device=tri.device), torch.arange(size, device=tri.device), indexing="ij")
    cols = origin[:, None, 0] + dx.reshape(1, -1)
    rows = origin[:, None, 1] + dy.reshape(1, -1)
    d2, inside = _distance_sign(cols.to(tri.dtype) + 0.5, rows.to(tri.dtype) + 0.5, tri)
    x = torch.where(inside, d2, -d2) / sigma
    valid = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    log_uncovered = torch.where(valid, -F.softplus(x), torch.zeros_like(x))
    index = flat_base[:, None] + rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)
    return acc.index_add(0, index.reshape(-1), log_uncovered.reshape(-1))


def _window_size(extent: torch.Tensor) -> torch.Tensor:
    """Exact windows up to 8 pixels (nearly all faces of a body at training resolution), powers of two beyond."""
    return torch.where(extent <= 8, extent, torch.exp2(torch.ceil(torch.log2(extent)))).long()


def soft_silhouettes(xy: torch.Tensor, faces: torch.Tensor, height: int, width: int, sigma: float = 0.25,
                     max_elements: int = 1 << 20) -> torch.Tensor:
    """xy: B×V×2 vertex positions in pixels (u right, v down; pixel (r, c) has its centre at (c+.5, r+.5)),
    faces F×3 -> B×H×W soft silhouettes in [0, 1]. sigma: the edge softness in pixels².

    Every face counts, whatever its screen winding, as in SoftRas. Rasterising only one winding of a
    closed mesh covers the same hard silhouette but not the same soft one: a pixel centre on an edge
    shared by two faces gets 1 − ½·½ = 0.75 from them, and only the faces behind (the other winding)
    fill such seams in — with one winding, a third of the body's interior pixels stayed below 0.99 at
    128×64 (tests/test_body.py measures it).
    """
    b = xy.shape[0]
    tri = xy[:, faces]  # B×F×3×2
    margin = math.sqrt(sigma * math.log(1e4))  # beyond it a face's coverage is < 1e-4
    lo = torch.floor(tri.detach().amin(2) - margin - 0.5)
    hi = torch.ceil(tri.detach().amax(2) + margin - 0.5)
    keep = (hi[..., 0] >= 0) & (lo[..., 0] < width) & (hi[..., 1] >= 0) & (lo[..., 1] < height)
    lo = lo.clamp(min=-1)
    size = _window_size((hi - lo + 1).amax(-1).clamp(min=1, max=max(height, width) + 2))
    acc = xy.new_zeros(b * height * width)
    batch_idx, face_idx = torch.nonzero(keep, as_tuple=True)
    pair_size = size[batch_idx, face_idx]
    for window in torch.unique(pair_size).tolist():
        pick = pair_size == window
        bi, fi = batch_idx[pick], face_idx[pick]
        chunk = max(1, max_elements // (window * window))
        for start in range(0, len(bi), chunk):
            cb, cf = bi[start:start + chunk], fi[start:start + chunk]
            args = (acc, tri[cb, cf], lo[cb, cf].long(), cb * height * width, window, height, width, sigma)
            acc = checkpoint(_accumulate, *args, use_reentrant=False) if torch.is_grad_enabled() else _accumulate(*args)
    return 1 - torch.exp(acc.view(b, height, width))


def neural_renderer_silhouettes(xy: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The same silhouettes through neural_renderer (CUDA only; daniilidis-group/neural_renderer,
    docs/preprocessing.md#neural-renderer).

    nr renders square images in 'projection' mode: [u, v] = K·[x/z, y/z, 1], then v -> orig − v and
    NDC (neural_renderer/projection.py); its rasteriser fills row i at NDC y = (2i + 1 − size)/size
    and finally reverses the rows (rasterize.py, "transpose & vertical flip"). The two flips cancel:
    a vertex given with pixel row v lands in output row v, so screen vertices go in unflipped as
    (u, v, 1) with K = I, R = I, t = 0, on a square canvas of side max(H, W) centred on the image,
    which is cropped back to H×W.
    """
    try:
        import neural_renderer as nr
    except ImportError:
        raise ImportError("render.backend neural_renderer: the neural_renderer package is not installed (it builds "
                          "only on CUDA machines; docs/environment.md#neural-renderer). "
                          "Use render.backend: soft") from None
    side = max(height, width)
    ox, oy = (side - width) / 2, (side - height) / 2
    b = xy.shape[0]
    verts = torch.stack([xy[..., 0] + ox, xy[..., 1] + oy, torch.ones_like(xy[..., 0])], -1)
    eye = torch.eye(3, device=xy.device).expand(b, 3, 3)
    renderer = nr.Renderer(image_size=side, orig_size=side, camera_mode="projection", K=eye, R=eye,
                           t=torch.zeros(b, 1, 3, device=xy.device), anti_aliasing=False)
    image = renderer(verts, faces.int()[None].expand(b, -1, -1), mode="silhouettes")
    top, left = int(round(oy)), int(round(ox))
    return image[:, top:top + height, left:left + width]


def render_silhouettes(xy: torch.Tensor, faces: torch.Tensor, height: int, width: int, backend: str = "soft",
                       sigma: float = 0.25) -> torch.Tensor:
    if backend == "soft":
        return soft_silhouettes(xy, faces, height, width, sigma)
    if backend == "neural_renderer":
        return neural_renderer_silhouettes(xy, faces, height, width)
    raise InputError(f"render.backend {backend!r}; supported: {', '.join(RENDERERS)}")
