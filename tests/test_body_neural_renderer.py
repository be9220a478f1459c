"""The neural_renderer backend, on the CPU, through a stand-in `neural_renderer` module that reproduces what
the library does to the vertices it is given (daniilidis-group/neural_renderer: projection.py, renderer.py's
render_silhouettes, vertices_to_faces.py, and rasterize.py with the face-index kernel of
cuda/rasterize_cuda_kernel.cu): the projection with its `v = orig_size - v` flip and NDC mapping, fill_back,
back-face culling, the kernel's pixel-centre inside test, and the final vertical flip of the image. The
library itself builds only with CUDA, so only this reproduction runs here."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainer.body.model import BodyModel
from trainer.body.render import neural_renderer_silhouettes, render_silhouettes, soft_silhouettes
from trainer.body.standin import write_standin

from .test_body import independent_raster, standing_body_pixels


def _projection(vertices, K, R, t, dist_coeffs, orig_size, eps=1e-9):
    """projection.py: camera frame, pinhole with (k1, k2, p1, p2, k3) distortion, K, then v -> orig − v and
    both axes to [−1, 1]; z is kept as depth."""
    vertices = vertices @ R.transpose(2, 1) + t
    x, y, z = vertices.unbind(-1)
    xn, yn = x / (z + eps), y / (z + eps)
    k1, k2, p1, p2, k3 = (dist_coeffs[:, None, i] for i in range(5))
    r2 = xn ** 2 + yn ** 2
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    xd = xn * radial + 2 * p1 * xn * yn + p2 * (r2 + 2 * xn ** 2)
    yd = yn * radial + p1 * (r2 + 2 * yn ** 2) + 2 * p2 * xn * yn
    uv1 = torch.stack([xd, yd, torch.ones_like(z)], -1) @ K.transpose(1, 2)
    u, v = uv1[..., 0], orig_size - uv1[..., 1]
    return torch.stack([2 * (u - orig_size / 2) / orig_size, 2 * (v - orig_size / 2) / orig_size, z], -1)


def _rasterize_alpha(faces, image_size, near=0.1, far=100.0):
    """The face-index kernel's coverage: buffer row yi, column xi samples NDC ((2xi+1−n)/n, (2yi+1−n)/n); a
    face counts when it is front-facing and the sample passes its three edge tests, at a depth in (near, far)."""
    n = image_size
    centres = (2 * torch.arange(n, dtype=faces.dtype) + 1 - n) / n
    yp, xp = torch.meshgrid(centres, centres, indexing="ij")
    yp, xp = yp.reshape(1, 1, -1), xp.reshape(1, 1, -1)
    alpha = torch.zeros(faces.shape[0], n * n, dtype=torch.bool)
    for start in range(0, faces.shape[1], 2048):
        f = faces[:, start:start + 2048]
        (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = ([f[:, :, k, d, None] for d in range(3)] for k in range(3))
        back = (y2 - y0) * (x1 - x0) < (y1 - y0) * (x2 - x0)
        outside = (((yp - y0) * (x1 - x0) < (xp - x0) * (y1 - y0)) | ((yp - y1) * (x2 - x1) < (xp - x1) * (y2 - y1))
                   | ((yp - y2) * (x0 - x2) < (xp - x2) * (y0 - y2)))
        # barycentric weights of the sample, clamped and renormalised as the kernel does, for 1/z interpolation
        det = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
        w0 = ((y1 - y2) * (xp - x2) + (x2 - x1) * (yp - y2)) / det
        w1 = ((y2 - y0) * (xp - x2) + (x0 - x2) * (yp - y2)) / det
        w = torch.stack([w0, w1, 1 - w0 - w1]).clamp(0, 1)
        w = w / w.sum(0)
        zp = 1 / (w[0] / z0 + w[1] / z1 + w[2] / z2)
        covered = ~back & ~outside & (zp > near) & (zp < far)
        alpha |= covered.any(1)
    return alpha.view(-1, n, n).to(faces.dtype)


def _rasterize_silhouettes(faces, image_size, anti_aliasing):
    """rasterize.py: 2× supersampling when anti-aliasing, the rows reversed ("transpose & vertical flip"),
    then 2×2 average pooling."""
    alpha = _rasterize_alpha(faces, image_size * 2 if anti_aliasing else image_size)
    alpha = alpha[:, list(reversed(range(alpha.shape[1]))), :]
    if anti_aliasing:
        alpha = F.avg_pool2d(alpha[:, None], kernel_size=(2, 2))[:, 0]
    return alpha


class _Renderer:
    """renderer.py's Renderer in 'projection' mode, silhouettes only; dist_coeffs default to zeros as there."""

    def __init__(self, image_size=256, anti_aliasing=True, background_color=(0, 0, 0), fill_back=True,
                 camera_mode="projection", K=None, R=None, t=None, dist_coeffs=None, orig_size=1024, **_):
        assert camera_mode == "projection"
        self.image_size, self.anti_aliasing, self.fill_back = image_size, anti_aliasing, fill_back
        self.K, self.R, self.t, self.orig_size = K, R, t, orig_size
        self.dist_coeffs = torch.zeros(1, 5) if dist_coeffs is None else dist_coeffs

    def __call__(self, vertices, faces, textures=None, mode=None, K=None, R=None, t=None, dist_coeffs=None,
                 orig_size=None):
        assert mode == "silhouettes" and faces.dtype == torch.int32 and faces.dim() == 3
        if self.fill_back:
            faces = torch.cat([faces, faces[:, :, [2, 1, 0]]], 1)
        vertices = _projection(vertices, self.K if K is None else K, self.R if R is None else R,
                               self.t if t is None else t, self.dist_coeffs if dist_coeffs is None else dist_coeffs,
                               self.orig_size if orig_size is None else orig_size)
        per_face = torch.stack([v[f.long()] for v, f in zip(vertices, faces, strict=True)])  # vertices_to_faces
        return _rasterize_silhouettes(per_face, self.image_size, self.anti_aliasing)


@pytest.fixture
def fake_neural_renderer(monkeypatch):
    module = types.ModuleType("neural_renderer")
    module.Renderer = _Renderer
    monkeypatch.setitem(sys.modules, "neural_renderer", module)


def test_the_reproduction_puts_a_vertex_where_the_library_does():
    """The reproduction's own check: a point given at pixel (u, v) of a 16-pixel canvas, v down from the
    top, sits at NDC (2u/16 − 1, 1 − 2v/16) after projection, so after the final row reversal it lights
    output row v — the library's two flips cancel."""
    eye = torch.eye(3)[None]
    ndc = _projection(torch.tensor([[[4.0, 3.0, 1.0]]]), eye, eye, torch.zeros(1, 1, 3), torch.zeros(1, 5), 16)
    torch.testing.assert_close(ndc[0, 0, :2], torch.tensor([2 * 4 / 16 - 1, 1 - 2 * 3 / 16]))
    tri = torch.tensor([[[1.2, 1.3, 1.0], [5.6, 1.1, 1.0], [1.4, 4.7, 1.0]]])  # top-left corner of the canvas
    image = _Renderer(image_size=16, orig_size=16, K=eye, R=eye, t=torch.zeros(1, 1, 3), anti_aliasing=False)(
        tri, torch.tensor([[[0, 1, 2]]], dtype=torch.int32), mode="silhouettes")[0]
    rows = torch.nonzero(image)[:, 0]
    assert image.sum() > 3 and rows.max() < 5


def test_neural_renderer_silhouette_is_upright_and_matches_an_independent_raster(fake_neural_renderer):
    """One known triangle in screen pixels (v down) on a non-square image: the backend lights exactly the
    pixel centres inside it, and not their mirror image."""
    h, w = 40, 24
    tri = torch.tensor([[[3.31, 2.23], [20.63, 5.17], [7.43, 33.71]]])  # asymmetric; no pixel centre on an edge
    faces = torch.tensor([[0, 1, 2]])
    got = neural_renderer_silhouettes(tri, faces, h, w)[0].numpy() > 0.5
    truth = independent_raster(tri[0].numpy(), faces.numpy(), h, w)
    assert got.shape == (h, w) and truth.sum() > 100
    assert (got == truth).all(), (got != truth).sum()
    assert (got != truth[::-1]).sum() > 100


@pytest.mark.slow
def test_neural_renderer_and_soft_backends_draw_the_same_body(fake_neural_renderer, tmp_path):
    body = BodyModel(write_standin(tmp_path / "STANDIN_NEUTRAL.pkl"))
    h, w = 48, 24
    xy = standing_body_pixels(body, h, w)
    nr = render_silhouettes(xy, body.faces, h, w, backend="neural_renderer")[0].numpy() > 0.5
    soft = soft_silhouettes(xy, body.faces, h, w, sigma=1e-4)[0].numpy() > 0.5
    iou = (nr & soft).sum() / (nr | soft).sum()
    assert iou > 0.95, iou
    # the head is at the top of both
    assert np.nonzero(nr.any(1))[0].min() < h // 4 and np.nonzero(soft.any(1))[0].min() < h // 4
