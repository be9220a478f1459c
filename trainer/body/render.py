"""Differentiable silhouettes Π_sil of projected meshes: a pure-PyTorch soft rasteriser (default, CPU and
GPU) and neural_renderer (optional, CUDA only). Both take the same screen-space input: vertices already
projected by `geometry.project`, so one camera model serves keypoints and silhouettes.

The soft rasteriser follows SoftRas's silhouette: each face covers a pixel with probability
D = sigmoid(±d²/σ) (d: the pixel centre's distance to the triangle, + inside, − outside) and the
silhouette is 1 − Π_f (1 − D_f), accumulated as Σ_f −softplus(±d²/σ) in log space. It is written by hand
because no maintained pip-installable library offers a CPU-capable differentiable rasteriser
(pytorch3d has no Linux wheel; neural_renderer is CUDA-only; docs/environment.md#neural-renderer).

Cost stays with the pixels a face can touch: each (mesh, face) pair is evaluated on a rectangle of pixels
within a few σ of its bounding box (sides exact up to 8 pixels, rounded up by under 25 % beyond, so pairs
fall into few buckets), never pixels × faces; buckets are processed in chunks of at most `max_elements`
window pixels. The gradient is written out rather than taped (`_WindowCoverage`): autograd's graph of the
distance computation held a dozen tensors per window pixel, and recomputing it (as checkpointing did) cost a
second forward — about 70 % of a 3DSL training step on the CPU (`benchmarks/bench_renderer.py`). What is
kept instead is 13 bytes per window pixel in float32 (the nearest edge, where on it, and the scaled offset
to it) until backward: ~0.2 GB for 32 bodies at 64×32, ~0.45 GB for 64 at 128×64.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from pipeline.errors import InputError

RENDERERS = ("soft", "neural_renderer")


def _nearest_edge(px: torch.Tensor, py: torch.Tensor, tri: torch.Tensor):
    """For pixel centres (px, py: N×P) and triangles tri (N×3×2): squared distance d² to the triangle's
    boundary, inside (bool, either winding), and where the nearest boundary point p lies — edge k (from vertex
    k to k+1, uint8), its parameter t in [0, 1] (p = (1 − t)·v_k + t·v_k+1) and the offset (ex, ey) = centre − p.
    Components are kept apart: reductions over a length-2 axis are several times slower on CPU."""
    d2 = t_best = ex_best = ey_best = edge = None
    left = right = None  # the centre is left of (right of) every edge so far: inside, for either winding
    for i in range(3):
        ax, ay = tri[:, i, 0, None], tri[:, i, 1, None]
        bx, by = tri[:, (i + 1) % 3, 0, None] - ax, tri[:, (i + 1) % 3, 1, None] - ay
        qx, qy = px - ax, py - ay
        t = ((qx * bx + qy * by) / (bx * bx + by * by).clamp(min=1e-12)).clamp(0, 1)
        ex, ey = qx - t * bx, qy - t * by
        e = ex * ex + ey * ey
        if d2 is None:
            d2, t_best, ex_best, ey_best = e, t, ex, ey
            edge = torch.zeros(e.shape, dtype=torch.uint8, device=e.device)
        else:
            closer = e < d2  # ties keep the earlier edge: they share the vertex that is nearest
            d2, t_best = torch.where(closer, e, d2), torch.where(closer, t, t_best)
            ex_best, ey_best = torch.where(closer, ex, ex_best), torch.where(closer, ey, ey_best)
            edge = torch.where(closer, torch.full_like(edge, i), edge)
        cross = bx * qy - by * qx
        left = cross >= 0 if left is None else left & (cross >= 0)  # elementwise: stack + all() was 10 % of it
        right = cross <= 0 if right is None else right & (cross <= 0)
    return d2, left | right, edge, t_best, ex_best, ey_best


def _window_pixels(origin: torch.Tensor, wx: int, wy: int, flat_base: torch.Tensor, height: int, width: int):
    """The window pixels of each pair: columns, rows (N×P, may fall outside the image), whether they are inside
    it, and their index in the B·H·W map (clamped where outside, where they add nothing)."""
    dy, dx = torch.meshgrid(torch.arange(wy, device=origin.device), torch.arange(wx, device=origin.device),
                            indexing="ij")
    cols = origin[:, None, 0] + dx.reshape(1, -1)
    rows = origin[:, None, 1] + dy.reshape(1, -1)
    valid = (cols < width) & (rows < height)  # origins are ≥ 0; rounded-up windows can overrun the far sides
    index = flat_base[:, None] + rows.clamp(max=height - 1) * width + cols.clamp(max=width - 1)
    return cols, rows, valid, index


def _window_terms(tri, origin, flat_base, wx: int, wy: int, height: int, width: int, sigma: float):
    """log(1 − D) of each window pixel (N×P; 0 outside the image) and its index in the B·H·W map; then what
    the written-out gradient needs (see _WindowCoverage): x = ±d²/σ, whether in the image, inside, the
    nearest edge, t, and the offset to the nearest point."""
    cols, rows, valid, index = _window_pixels(origin, wx, wy, flat_base, height, width)
    d2, inside, edge, t, ex, ey = _nearest_edge(cols.to(tri.dtype) + 0.5, rows.to(tri.dtype) + 0.5, tri)
    x = torch.where(inside, d2, -d2) / sigma
    log_uncovered = torch.where(valid, -F.softplus(x), torch.zeros_like(x))
    return log_uncovered, index, (x, valid, inside, edge, t, ex, ey)


def _taped_coverage(tri, origin, flat_base, wx: int, wy: int, height: int, width: int, sigma: float, numel: int):
    """_WindowCoverage with autograd's gradient of the same arithmetic instead of the written-out one: the
    reference the tests and benchmarks/bench_renderer.py hold the written-out gradient and its speed to."""
    log_uncovered, index = _window_terms(tri, origin, flat_base, wx, wy, height, width, sigma)[:2]
    return tri.new_zeros(numel).index_add(0, index.reshape(-1), log_uncovered.reshape(-1))


class _WindowCoverage(torch.autograd.Function):
    """Σ log(1 − D) over the window pixels of N (mesh, face) pairs, scattered into a B·H·W map.

    The gradient, written out: with x = ±d²/σ (+ inside), ∂(−softplus x)/∂d² = ∓sigmoid(x)/σ, and
    d² = ‖c − p‖² for the nearest boundary point p = (1 − t)·v_k + t·v_k+1, so ∂d²/∂v_k = −2(c − p)(1 − t) and
    ∂d²/∂v_k+1 = −2(c − p)·t (t's own change adds nothing: p is the nearest point, or t sits at a clamp). The
    inside test is piecewise constant and d² is 0 where it flips, so the coverage is smooth across edges."""

    @staticmethod
    def forward(ctx, tri, origin, flat_base, wx: int, wy: int, height: int, width: int, sigma: float, numel: int):
        log_uncovered, index, (x, valid, inside, edge, t, ex, ey) = _window_terms(tri, origin, flat_base, wx, wy,
                                                                                  height, width, sigma)
        # ∂(−softplus x)/∂v = coef·(c − p)·{1 − t, t}, coef = ±2·sigmoid(x)/σ (0 outside the image)
        coef = torch.where(valid, torch.where(inside, 2.0, -2.0) * torch.sigmoid(x) / sigma, torch.zeros_like(x))
        ctx.save_for_backward(origin, flat_base, edge, t, coef * ex, coef * ey)
        ctx.shape = (wx, wy, height, width)
        return tri.new_zeros(numel).index_add_(0, index.reshape(-1), log_uncovered.reshape(-1))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_map):
        origin, flat_base, edge, t, ux, uy = ctx.saved_tensors
        wx, wy, height, width = ctx.shape
        index = _window_pixels(origin, wx, wy, flat_base, height, width)[3]
        g = grad_map[index]
        gx, gy = g * ux, g * uy
        grad = gx.new_zeros(len(origin), 3, 2)
        for k in range(3):
            on_k = edge == k
            to_start = torch.where(on_k, 1 - t, torch.zeros_like(t))  # share of v_k
            to_end = torch.where(on_k, t, torch.zeros_like(t))  # share of v_k+1
            grad[:, k, 0] += (gx * to_start).sum(1)
            grad[:, k, 1] += (gy * to_start).sum(1)
            grad[:, (k + 1) % 3, 0] += (gx * to_end).sum(1)
            grad[:, (k + 1) % 3, 1] += (gy * to_end).sum(1)
        return grad, None, None, None, None, None, None, None, None


def _bucket(side: torch.Tensor) -> torch.Tensor:
    """Window sides exact up to 8 pixels (nearly every face of a body at training resolution), beyond that
    rounded up to a multiple of a quarter of the enclosing power of two (under 25 % more pixels per side)."""
    step = torch.exp2((torch.ceil(torch.log2(side.clamp(min=1).double())) - 3).clamp(min=0)).long()
    return torch.where(side <= 8, side, (side + step - 1) // step * step)


GRADIENTS = ("analytic", "autograd")


def soft_silhouettes(xy: torch.Tensor, faces: torch.Tensor, height: int, width: int, sigma: float = 0.25,
                     max_elements: int = 1 << 20, gradient: str = "analytic") -> torch.Tensor:
    """xy: B×V×2 vertex positions in pixels (u right, v down; pixel (r, c) has its centre at (c+.5, r+.5)),
    faces F×3 -> B×H×W soft silhouettes in [0, 1]. sigma: the edge softness in pixels². gradient: analytic
    (written out, the default) or autograd (taped through checkpointed chunks: the slower reference).

    Every face counts, whatever its screen winding, as in SoftRas. Rasterising only one winding of a
    closed mesh covers the same hard silhouette but not the same soft one: a pixel centre on an edge
    shared by two faces gets 1 − ½·½ = 0.75 from them, and only the faces behind (the other winding)
    fill such seams in — with one winding, a third of the body's interior pixels stayed below 0.99 at
    128×64 (tests/test_body.py measures it).
    """
    if gradient not in GRADIENTS:
        raise InputError(f"soft_silhouettes gradient {gradient!r}; supported: {', '.join(GRADIENTS)}")
    b = xy.shape[0]
    tri = xy[:, faces]  # B×F×3×2
    margin = math.sqrt(sigma * math.log(1e4))  # beyond it a face's coverage is < 1e-4
    lo = torch.floor(tri.detach().amin(2) - margin - 0.5).long()
    hi = torch.ceil(tri.detach().amax(2) + margin - 0.5).long()
    keep = (hi[..., 0] >= 0) & (lo[..., 0] < width) & (hi[..., 1] >= 0) & (lo[..., 1] < height)
    batch_idx, face_idx = torch.nonzero(keep, as_tuple=True)
    lo, hi = lo[batch_idx, face_idx].clamp(min=0), hi[batch_idx, face_idx]
    hi = torch.minimum(hi, torch.tensor([width - 1, height - 1], device=hi.device))
    side = _bucket(hi - lo + 1)  # pairs × (x, y)
    key = side[:, 0] * (2 * max(height, width) + 8) + side[:, 1]
    key, order = torch.sort(key, stable=True)
    counts = torch.unique_consecutive(key, return_counts=True)[1]
    acc = xy.new_zeros(b * height * width)
    for count, pair in zip(counts.tolist(), order.split(counts.tolist()), strict=True):
        wx, wy = side[pair[0]].tolist()
        chunk = max(1, max_elements // (wx * wy))
        for first in range(0, count, chunk):
            sel = pair[first:first + chunk]
            cb, cf = batch_idx[sel], face_idx[sel]
            args = (tri[cb, cf], lo[sel], cb * height * width, wx, wy, height, width, sigma, b * height * width)
            if gradient == "analytic":
                acc = acc + _WindowCoverage.apply(*args)
            elif torch.is_grad_enabled():
                acc = acc + checkpoint(_taped_coverage, *args, use_reentrant=False)
            else:
                acc = acc + _taped_coverage(*args)
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
