"""The body model (stand-in in SMPL's format, displacements, COCO joints), the chumpy conversion, the
mocap loader, the camera and the soft silhouette rasteriser against an independent rasterisation."""
from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import smplx
import torch
from matplotlib.path import Path as PolyPath

from trainer.body.convert import convert_smpl
from trainer.body.geometry import (axis_angle_to_rotmat, project, rot6d_to_rotmat, rotmat_to_rot6d, to_normalised,
                                   to_pixels, upright_root)
from trainer.body.mocap import load_mocap, write_standin_prior
from trainer.body.model import SMPL_KEYS, BodyModel, check_model_file
from trainer.body.render import soft_silhouettes
from trainer.body.standin import FACE_LANDMARKS, MEASUREMENTS, write_standin


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    path = tmp_path_factory.mktemp("body") / "STANDIN_NEUTRAL.pkl"
    write_standin(path)
    return path


@pytest.fixture(scope="module")
def body(standin):
    return BodyModel(standin)


def rest_pose(b: int) -> torch.Tensor:
    return axis_angle_to_rotmat(torch.zeros(b, 24, 3))


def test_standin_has_smpl_file_format_and_smplx_loads_it(standin):
    data = check_model_file(standin)
    for key, shape in SMPL_KEYS.items():
        assert all(s is None or s == g for s, g in zip(shape, np.shape(data[key]))), key
    assert scipy.sparse.issparse(data["J_regressor"]) and data["f"].dtype == np.uint32
    np.testing.assert_allclose(np.asarray(data["J_regressor"].sum(1)).ravel(), 1.0, atol=1e-9)
    np.testing.assert_allclose(data["weights"].sum(1), 1.0, atol=1e-9)
    faces = data["f"].astype(np.int64)
    # closed genus-0 surface: every edge is shared by exactly two faces, V - E + F = 2
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all() and 6890 - len(counts) + len(faces) == 2
    assert "not SMPL" in data["standin"]


def test_forward_matches_smplx_and_displacements_skin_with_the_body(standin, body):
    torch.manual_seed(0)
    betas = torch.randn(3, 10)
    aa = 0.3 * torch.randn(3, 24, 3)
    ref = smplx.SMPL(model_path=str(standin), batch_size=3)(betas=betas, global_orient=aa[:, :1].reshape(3, 3),
                                                            body_pose=aa[:, 1:].reshape(3, -1))
    vertices, joints, _ = body(betas, axis_angle_to_rotmat(aa))
    torch.testing.assert_close(vertices, ref.vertices, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(joints, ref.joints[:, :24], atol=1e-5, rtol=1e-5)
    # a constant δ at the rest pose with the root rotated by R: vertices move by R·c, joints do not move
    c = torch.tensor([0.0, 0.05, 0.02])
    rot = rest_pose(1)
    rot[:, 0] = axis_angle_to_rotmat(torch.tensor([[0.0, 0.0, 0.7]]))[0]
    v0, j0, _ = body(torch.zeros(1, 10), rot)
    v1, j1, _ = body(torch.zeros(1, 10), rot, c.expand(1, 6890, 3))
    torch.testing.assert_close(v1 - v0, (rot[0, 0] @ c).expand(1, 6890, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(j1, j0)


def test_shape_directions_change_height_girth_and_leg_length(body):
    def measure(k: int, value: float):
        betas = torch.zeros(1, 10)
        betas[0, k] = value
        v = body(betas, rest_pose(1))[0][0]
        height = float(v[:, 1].max() - v[:, 1].min())
        torso = v[(v[:, 1] > 0.0) & (v[:, 1] < 0.3) & (v[:, 0].abs() < 0.3)]
        return height, float(torso[:, 0].max() - torso[:, 0].min()), float(v[:, 1].min())

    stature, girth, legs = (MEASUREMENTS.index(m) for m in ("stature", "girth", "legs"))
    assert measure(stature, -2)[0] < measure(stature, 0)[0] < measure(stature, 2)[0]
    assert measure(girth, -2)[1] < measure(girth, 0)[1] < measure(girth, 2)[1]
    assert measure(legs, 2)[2] < measure(legs, 0)[2] - 0.05  # longer legs: the feet go lower


def test_coco_joints_sit_where_their_names_say(body):
    _, joints, coco = body(torch.zeros(1, 10), rest_pose(1))
    c = coco[0]
    nose, leye, reye, lsh, rsh, lhip, rhip, lank = c[0], c[1], c[2], c[5], c[6], c[11], c[12], c[15]
    assert nose[1] > lsh[1] > lhip[1] > lank[1]                # up the body (SMPL is y-up)
    assert leye[0] > 0 > reye[0] and lsh[0] > 0 > rsh[0] and lhip[0] > 0 > rhip[0]  # SMPL's left is +x
    assert nose[2] > 0.05                                       # the face looks along +z
    torch.testing.assert_close(c[0], body(torch.zeros(1, 10), rest_pose(1))[0][0, FACE_LANDMARKS["nose"]])


def test_vertex_parts_partition_the_mesh_top_to_bottom(body):
    parts = body.vertex_parts(3)
    ids = torch.cat(parts)
    assert len(ids) == 6890 and len(torch.unique(ids)) == 6890
    y = [float(body.v_template[p, 1].mean()) for p in parts]
    assert y[0] > y[1] > y[2]


def test_chumpy_pickle_converts_and_the_raw_file_is_refused_with_the_command(standin, tmp_path):
    """An official-format pickle: chumpy.ch.Ch arrays (state dict with 'x') and Python-2-era scipy paths."""
    plain = pickle.loads(standin.read_bytes())
    fake = types.ModuleType("chumpy.ch")

    class Ch:  # chumpy pickles its instance __dict__ (x plus bookkeeping)
        def __reduce__(self):
            return (object.__new__, (Ch,), self.__dict__)

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    fake.Ch = Ch
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = types.ModuleType("chumpy"), fake
    try:
        official = dict(plain)
        for key in ("shapedirs", "posedirs", "v_template"):
            ch = Ch()
            ch.__dict__.update(x=plain[key], _dirty_vars=set(), _depends_on_deps={})
            official[key] = ch
        raw = tmp_path / "SMPL_NEUTRAL_official.pkl"
        raw.write_bytes(pickle.dumps(official, protocol=2))
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    with pytest.raises(ValueError, match="chumpy.*convert-smpl"):
        check_model_file(raw)
    out = convert_smpl(raw, tmp_path / "converted.pkl")
    converted = check_model_file(out)
    for key in ("shapedirs", "posedirs", "v_template"):
        np.testing.assert_array_equal(converted[key], plain[key])
    assert BodyModel(out).num_vertices == 6890


def test_missing_or_wrong_model_files_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="smpl.is.tue.mpg.de"):
        check_model_file(tmp_path / "SMPL_NEUTRAL.pkl")
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"v_template": np.zeros((100, 3))}))
    with pytest.raises(ValueError, match=r"bad.pkl: v_template has shape \(100, 3\), SMPL's is \(6890, 3\)"):
        check_model_file(bad)
    bad.write_bytes(pickle.dumps({"v_template": np.zeros((6890, 3))}))
    with pytest.raises(ValueError, match="bad.pkl: not an SMPL model file \\(no 'shapedirs'"):
        check_model_file(bad)


def test_mocap_keeps_smpl_joints_of_smplh_poses_and_reads_folders(tmp_path):
    poses = np.arange(2 * 156, dtype=np.float32).reshape(2, 156)
    np.savez(tmp_path / "a.npz", poses=poses, betas=np.arange(16, dtype=np.float32))
    np.savez(tmp_path / "b.npz", poses=np.zeros((3, 72), np.float32), betas=np.zeros(16, np.float32))
    p, b = load_mocap(tmp_path / "a.npz")
    assert p.shape == (2, 24, 3) and b.shape == (2, 10)
    np.testing.assert_array_equal(p[0, 23], poses[0, 37 * 3:38 * 3])  # SMPL-H joint 37 stands for SMPL's hand
    np.testing.assert_array_equal(p[1, 22], poses[1, 66:69])
    np.testing.assert_array_equal(b[1], np.arange(10))
    assert load_mocap(tmp_path)[0].shape == (5, 24, 3)
    np.savez(tmp_path / "c.npz", poses=np.zeros((3, 10)), betas=np.zeros(16))
    with pytest.raises(ValueError, match="c.npz: poses has shape"):
        load_mocap(tmp_path / "c.npz")
    prior = write_standin_prior(tmp_path / "prior" / "p.npz", num_frames=50)
    assert load_mocap(prior)[0].shape == (50, 24, 3)


def test_camera_conventions():
    uv = torch.tensor([[[0.0, 0.0], [64.0, 128.0], [32.0, 64.0]]])
    torch.testing.assert_close(to_pixels(to_normalised(uv, 128, 64), 128, 64), uv)
    torch.testing.assert_close(to_normalised(uv, 128, 64)[0, 2], torch.zeros(2))  # the image centre is 0
    pts = torch.tensor([[[0.1, -0.2, 0.3]]])
    cam = torch.tensor([[2.0, 0.05, 0.1]])
    torch.testing.assert_close(project(pts, cam), torch.tensor([[[0.3, -0.2]]]))
    # a perspective camera far away agrees with the weak-perspective one
    torch.testing.assert_close(project(pts, cam, "perspective", focal=1e7), project(pts, cam), atol=1e-4, rtol=0)
    r = axis_angle_to_rotmat(torch.randn(5, 3))
    torch.testing.assert_close(rot6d_to_rotmat(rotmat_to_rot6d(r)), r, atol=1e-5, rtol=0)


def independent_raster(xy: np.ndarray, faces: np.ndarray, h: int, w: int) -> np.ndarray:
    """Pixel centres inside any triangle, by matplotlib's point-in-polygon (no shared code)."""
    cy, cx = np.mgrid[0:h, 0:w]
    pts = np.stack([cx.ravel() + 0.5, cy.ravel() + 0.5], 1)
    mask = np.zeros(h * w, bool)
    for tri in xy[faces]:
        lo, hi = tri.min(0) - 1, tri.max(0) + 1
        sel = (pts[:, 0] >= lo[0]) & (pts[:, 0] <= hi[0]) & (pts[:, 1] >= lo[1]) & (pts[:, 1] <= hi[1])
        if sel.any():
            mask[sel] |= PolyPath(tri).contains_points(pts[sel])
    return mask.reshape(h, w)


def test_renderer_matches_an_independent_rasterisation(body):
    h, w = 96, 48
    aa = torch.zeros(2, 24, 3)
    aa[:, 0] = upright_root()
    aa[1, 16, 2], aa[1, 17, 2] = -1.0, 1.0  # arms lowered in the second mesh
    vertices = body(torch.zeros(2, 10), axis_angle_to_rotmat(aa))[0]
    xy = to_pixels(project(vertices, torch.tensor([[1.0, 0.0, 0.05]]).expand(2, 3)), h, w)
    hard = soft_silhouettes(xy, body.faces, h, w, sigma=1e-4) > 0.5
    open_hard = soft_silhouettes(xy, body.faces, h, w, sigma=1e-4, closed=False) > 0.5
    for i in range(2):
        truth = independent_raster(xy[i].numpy(), body.faces.numpy(), h, w)
        iou = (truth & hard[i].numpy()).sum() / (truth | hard[i].numpy()).sum()
        assert iou > 0.97, iou
        assert (truth != open_hard[i].numpy()).sum() <= 0.01 * truth.sum()
    # one large triangle: every pixel centre decided exactly
    tri = torch.tensor([[[2.13, 3.07], [40.31, 10.19], [15.27, 90.41]]])  # no pixel centre exactly on an edge
    single = soft_silhouettes(tri, torch.tensor([[0, 1, 2]]), h, w, sigma=1e-4, closed=False)[0] > 0.5
    assert (single.numpy() == independent_raster(tri[0].numpy(), np.array([[0, 1, 2]]), h, w)).all()


def test_renderer_chunking_changes_nothing_and_gradients_match_finite_differences(body):
    h, w = 24, 16
    tri = torch.tensor([[[3.0, 4.0], [12.5, 6.0], [6.0, 20.0]], [[1.0, 1.0], [5.0, 2.0], [2.0, 7.5]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    xy = tri.reshape(1, 6, 2).clone().requires_grad_()
    full = soft_silhouettes(xy, faces, h, w, sigma=0.5, closed=False)
    chunked = soft_silhouettes(xy, faces, h, w, sigma=0.5, closed=False, max_elements=16)
    torch.testing.assert_close(full, chunked)
    assert torch.autograd.gradcheck(lambda p: soft_silhouettes(p, faces, h, w, sigma=0.5, closed=False, max_elements=32),
                                    (xy,), eps=1e-6, atol=1e-5)
