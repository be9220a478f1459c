"""The body model (stand-in in SMPL's format, displacements, COCO joints), the chumpy conversion, the
mocap loader, the camera and the soft silhouette rasteriser against an independent rasterisation."""
from __future__ import annotations

import math
import pickle
import sys
import types

import matplotlib.image
import numpy as np
import pytest
import scipy.ndimage
import scipy.sparse
import scipy.special
import smplx
import smplx.body_models
import torch
from matplotlib.path import Path as PolyPath

from pipeline.errors import InputError
from trainer.body.__main__ import main as body_cli
from trainer.body.convert import convert_smpl
from trainer.body.geometry import (
    axis_angle_to_rotmat,
    project,
    rot6d_to_rotmat,
    rotmat_to_rot6d,
    to_normalised,
    to_pixels,
    upright_root,
)
from trainer.body.mocap import load_mocap, write_standin_prior
from trainer.body.model import SMPL_KEYS, BodyModel, check_model_file
from trainer.body.picture import RENDERED_LINE, TARGET_ALPHA, TARGET_FILL, reconstruction_sheet
from trainer.body.render import soft_silhouettes
from trainer.body.standin import FACE_LANDMARKS, MEASUREMENTS, write_standin
from trainer.transforms import IMAGENET_MEAN, IMAGENET_STD


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
        assert all(s is None or s == g for s, g in zip(shape, np.shape(data[key]), strict=True)), key
    assert scipy.sparse.issparse(data["J_regressor"]) and data["f"].dtype == np.uint32
    np.testing.assert_allclose(np.asarray(data["J_regressor"].sum(1)).ravel(), 1.0, atol=1e-9)
    np.testing.assert_allclose(data["weights"].sum(1), 1.0, atol=1e-9)
    faces = data["f"].astype(np.int64)
    # closed genus-0 surface: every edge is shared by exactly two faces, V - E + F = 2
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all() and 6890 - len(counts) + len(faces) == 2
    assert "not SMPL" in data["standin"]


def test_the_body_model_silences_smplx_s_ten_shapes_warning_and_nothing_else(standin, capfd, monkeypatch):
    capfd.readouterr()
    BodyModel(standin)
    out, err = capfd.readouterr()
    assert "You are using a SMPL model" not in out + err and out == ""
    # more shape coefficients than the file has: refused, where smplx would quietly use fewer
    with pytest.raises(InputError, match=r"STANDIN_NEUTRAL.pkl: 12 shape coefficients asked for; smplx uses at "
                                         r"most 10 of this file's 10"):
        BodyModel(standin, num_betas=12)
    original = smplx.body_models.SMPL.__init__

    def talkative(self, *args, **kwargs):
        print("smplx: something else worth reading")
        original(self, *args, **kwargs)

    monkeypatch.setattr(smplx.body_models.SMPL, "__init__", talkative)
    BodyModel(standin)
    out, _ = capfd.readouterr()
    assert out == "smplx: something else worth reading\n"


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


def official_style_pickle(plain: dict, path, protocol: int):
    """An official-format SMPL pickle: chumpy.ch.Ch arrays pickled as chumpy pickles them (the default
    object reduction; state = the instance __dict__ less weak references: x plus bookkeeping such as a
    set), and scipy under the private module path of the Python 2 era (scipy.sparse.csc)."""
    fake = types.ModuleType("chumpy.ch")

    class Ch:
        def __getstate__(self):
            return dict(self.__dict__)

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    fake.Ch = Ch
    sparse_cls = type(plain["J_regressor"])
    old_module = sparse_cls.__module__
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = types.ModuleType("chumpy"), fake
    sys.modules["scipy.sparse.csc"] = scipy.sparse
    sparse_cls.__module__ = "scipy.sparse.csc"
    try:
        official = dict(plain)
        for key in ("shapedirs", "posedirs", "v_template"):
            ch = Ch()
            ch.__dict__.update(x=plain[key], _dirty_vars={"x"}, _depends_on_deps={}, _itr=None, _make_dense=False)
            official[key] = ch
        path.write_bytes(pickle.dumps(official, protocol=protocol))
    finally:
        sparse_cls.__module__ = old_module
        del sys.modules["chumpy"], sys.modules["chumpy.ch"], sys.modules["scipy.sparse.csc"]
    return path


@pytest.mark.slow
@pytest.mark.parametrize("protocol", [0, 2])  # 0: copy_reg._reconstructor; 2: NEWOBJ (Python 2's cPickle wrote either)
def test_chumpy_pickle_converts_and_the_raw_file_is_refused_with_the_command(standin, tmp_path, protocol):
    plain = pickle.loads(standin.read_bytes())
    raw = official_style_pickle(plain, tmp_path / "SMPL_NEUTRAL_official.pkl", protocol)
    assert b"scipy.sparse.csc" in raw.read_bytes() and b"chumpy.ch" in raw.read_bytes()
    with pytest.raises(InputError, match="SMPL_NEUTRAL_official.pkl: holds chumpy objects.*convert-smpl"):
        check_model_file(raw)
    out = convert_smpl(raw, tmp_path / "converted.pkl")
    converted = check_model_file(out)
    for key in ("shapedirs", "posedirs", "v_template"):
        np.testing.assert_array_equal(converted[key], plain[key])
    assert (converted["J_regressor"] != plain["J_regressor"]).nnz == 0
    assert BodyModel(out).num_vertices == 6890


class _OpensAFile:
    """A crafted pickle's payload: unpickling it calls open(marker, 'w')."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_pickles_run_no_code_in_any_loader(standin, tmp_path, monkeypatch):
    """A body-model file whose unpickling would call open(): every loader refuses it, naming the file and
    the global it asked for, and the call never happens — check_model_file, BodyModel (which must not let
    smplx unpickle the file itself) and convert-smpl, also through its command line."""
    plain = pickle.loads(standin.read_bytes())
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.pkl"
    crafted.write_bytes(pickle.dumps({**plain, "v_template": _OpensAFile(marker)}, protocol=2))
    for load in (check_model_file, BodyModel, lambda p: convert_smpl(p, tmp_path / "out.pkl")):
        with pytest.raises(InputError, match=r"crafted.pkl: refused to load (io|builtins)\.open"):
            load(crafted)
        assert not marker.exists()
    assert body_cli(["convert-smpl", str(crafted), str(tmp_path / "out.pkl")]) == 2
    assert not marker.exists() and not (tmp_path / "out.pkl").exists()
    # copy_reg's reconstructor only builds allow-listed classes; other builtins are refused by name
    sneaky = tmp_path / "sneaky.pkl"
    sneaky.write_bytes(b"ccopy_reg\n_reconstructor\n(c__builtin__\nset\nc__builtin__\nobject\nNtR.")
    with pytest.raises(InputError, match="sneaky.pkl: refused to load copyreg._reconstructor for 'set'"):
        check_model_file(sneaky)
    sneaky.write_bytes(b"cbuiltins\ngetattr\n.")
    with pytest.raises(InputError, match=r"sneaky.pkl: refused to load builtins\.getattr"):
        convert_smpl(sneaky, tmp_path / "out.pkl")
    # smplx never unpickles the file: BodyModel hands it the safely loaded arrays
    monkeypatch.setattr(smplx.body_models.pickle, "load", lambda *a, **k: pytest.fail("smplx unpickled the file"))
    assert BodyModel(standin).num_vertices == 6890


@pytest.mark.slow
def test_the_standin_loads_from_every_pickle_protocol(standin, tmp_path):
    """numpy and scipy pickle through different globals per protocol (_codecs.encode at 0-2, numpy's
    _frombuffer at 5): all of them are on the allow-list."""
    plain = pickle.loads(standin.read_bytes())
    for protocol in range(6):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(plain, protocol=protocol))
        data = check_model_file(path)
        np.testing.assert_array_equal(data["v_template"], plain["v_template"])
        assert data["standin"] == plain["standin"]


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


def test_mocap_object_arrays_are_refused_naming_the_file_and_key(tmp_path):
    """Object arrays would unpickle code from the file; numpy's own error names neither file nor key."""
    np.savez(tmp_path / "seq.npz", poses=np.array([np.zeros(156), None], dtype=object), betas=np.zeros(16))
    with pytest.raises(InputError, match=r"seq.npz: 'poses' cannot be read .*allow_pickle"):
        load_mocap(tmp_path / "seq.npz")
    np.savez(tmp_path / "seq.npz", poses=np.zeros((2, 156)), betas=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match=r"seq.npz: 'betas' cannot be read"):
        load_mocap(tmp_path)
    (tmp_path / "seq.npz").write_bytes(pickle.dumps({"poses": 1}))
    with pytest.raises(InputError, match=r"seq.npz: not an .npz of numeric arrays"):
        load_mocap(tmp_path / "seq.npz")


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
    for i in range(2):
        truth = independent_raster(xy[i].numpy(), body.faces.numpy(), h, w)
        assert (truth != hard[i].numpy()).sum() <= 0.01 * truth.sum()
    # one large triangle: every pixel centre decided exactly
    tri = torch.tensor([[[2.13, 3.07], [40.31, 10.19], [15.27, 90.41]]])  # no pixel centre exactly on an edge
    single = soft_silhouettes(tri, torch.tensor([[0, 1, 2]]), h, w, sigma=1e-4)[0] > 0.5
    assert (single.numpy() == independent_raster(tri[0].numpy(), np.array([[0, 1, 2]]), h, w)).all()


def test_renderer_chunking_changes_nothing_and_gradients_match_finite_differences(body):
    h, w = 24, 16
    tri = torch.tensor([[[3.0, 4.0], [12.5, 6.0], [6.0, 20.0]], [[1.0, 1.0], [5.0, 2.0], [2.0, 7.5]]],
                       dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    xy = tri.reshape(1, 6, 2).clone().requires_grad_()
    full = soft_silhouettes(xy, faces, h, w, sigma=0.5)
    chunked = soft_silhouettes(xy, faces, h, w, sigma=0.5, max_elements=16)
    torch.testing.assert_close(full, chunked)
    assert torch.autograd.gradcheck(lambda p: soft_silhouettes(p, faces, h, w, sigma=0.5, max_elements=32),
                                    (xy,), eps=1e-6, atol=1e-5)


def dense_soft_silhouette(xy: np.ndarray, faces: np.ndarray, h: int, w: int, sigma: float) -> np.ndarray:
    """SoftRas's silhouette with every face on every pixel (B×H×W), from the definition."""
    rows, cols = np.mgrid[0:h, 0:w]
    c = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], -1)[:, None]  # P×1×2
    out = []
    for mesh in xy:
        tri = mesh[faces][None]  # 1×F×3×2
        d2, sides = np.inf, []
        for k in range(3):
            a, b = tri[:, :, k], tri[:, :, (k + 1) % 3]
            t = np.clip(((c - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1), 0, 1)[..., None]
            d2 = np.minimum(d2, ((c - a - t * (b - a)) ** 2).sum(-1))
            (ux, uy), (vx, vy) = np.moveaxis(b - a, -1, 0), np.moveaxis(c - a, -1, 0)
            sides.append(ux * vy - uy * vx)
        sides = np.stack(sides)
        x = np.where((sides >= 0).all(0) | (sides <= 0).all(0), d2, -d2) / sigma
        out.append(1 - np.prod(1 - scipy.special.expit(x), axis=1).reshape(h, w))
    return np.stack(out)


def test_renderer_written_out_gradient_equals_autograds():
    """The written-out gradient against autograd's through the same arithmetic, on two meshes of random
    triangles from under a pixel to 30 pixels across (exact windows, rounded-up ones), some cut by the image's
    borders; a wrong share of an edge's two vertices, a sign, or a bucket's pixel indexing shows here."""
    g = torch.Generator().manual_seed(5)
    h, w, n = 40, 24, 80
    size = torch.exp(torch.rand(2, n, 1, 1, generator=g, dtype=torch.float64) * math.log(30)) * 0.7
    centre = torch.rand(2, n, 1, 2, generator=g, dtype=torch.float64) * torch.tensor([w + 8.0, h + 8.0]) - 4
    xy = (centre + size * (torch.rand(2, n, 3, 2, generator=g, dtype=torch.float64) - 0.5)).reshape(2, 3 * n, 2)
    xy.requires_grad_()
    faces = torch.arange(3 * n).reshape(n, 3)
    target = torch.rand(2, h, w, generator=g, dtype=torch.float64)
    grads, sils = [], []
    for gradient in ("analytic", "autograd"):
        xy.grad = None
        sil = soft_silhouettes(xy, faces, h, w, sigma=0.5, max_elements=2048, gradient=gradient)
        ((sil - target) ** 2).sum().backward()
        sils.append(sil.detach())
        grads.append(xy.grad.clone())
    extent = (xy.detach().reshape(2, n, 3, 2).amax(2) - xy.detach().reshape(2, n, 3, 2).amin(2)).amax(-1)
    assert (extent < 1).any() and ((extent > 10) & (extent < 16)).any() and (extent > 16).any()
    assert (sils[0] > 0.5).float().mean() > 0.1 and (sils[0][:, :, [0, -1]] > 0.5).any()  # shapes on the borders
    torch.testing.assert_close(sils[0], sils[1], rtol=0, atol=1e-12)
    dense = dense_soft_silhouette(xy.detach().numpy(), faces.numpy(), h, w, sigma=0.5)
    assert np.abs(sils[0].numpy() - dense).max() < 1e-3  # windows drop only coverages under 1e-4 per face
    assert grads[0].abs().max() > 0.1
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-9)
    with pytest.raises(InputError, match="gradient 'numeric'"):
        soft_silhouettes(xy, faces, h, w, gradient="numeric")


def standing_body_pixels(body, h: int, w: int) -> torch.Tensor:
    """The stand-in standing upright with its arms lowered, projected to h×w pixels (1×V×2)."""
    aa = torch.zeros(1, 24, 3)
    aa[:, 0] = upright_root()
    aa[0, 16, 2], aa[0, 17, 2] = -1.1, 1.1
    vertices = body(torch.zeros(1, 10), axis_angle_to_rotmat(aa))[0]
    return to_pixels(project(vertices, torch.tensor([[0.9, 0.0, 0.0]])), h, w)


def test_soft_silhouette_is_solid_inside_the_body(body):
    """At the training resolution, pixels well inside the body are covered (>= 0.99): no seams along the
    mesh edges. Rasterising one screen winding only left a third of them below 0.99 here."""
    h, w = 128, 64
    xy = standing_body_pixels(body, h, w)
    truth = independent_raster(xy[0].numpy(), body.faces.numpy(), h, w)
    inside = scipy.ndimage.binary_erosion(truth, iterations=2)
    assert inside.sum() > 500
    soft = soft_silhouettes(xy, body.faces, h, w)[0].numpy()
    assert soft[inside].min() >= 0.99, (soft[inside] < 0.99).mean()


def test_reconstruction_sheet_overlays_target_and_rendered_silhouettes(tmp_path):
    """Over a black image: the target silhouette (top-left quarter) as a translucent amber fill and the
    rendered one (bottom-right quarter) as a magenta outline, each where its silhouette is."""
    h, w = 64, 32
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    image = (-mean / std)[None, :, None, None].expand(1, 3, h, w)  # black once unnormalised
    target, rendered = torch.zeros(1, 32, 16), torch.zeros(1, 32, 16)
    target[0, :16, :8] = 1
    rendered[0, 16:, 8:] = 1
    away = torch.full((1, 17, 2), 5.0)  # mesh and keypoints outside the view
    out = reconstruction_sheet(tmp_path / "r.png", image, torch.zeros(1, 3, 3), torch.tensor([[0, 1, 2]]),
                               torch.full((1, 3, 2), 5.0), away, torch.zeros(1, 17, 3), np.array([0.5]), "t",
                               target, rendered)
    rgb = matplotlib.image.imread(out)[..., :3]
    fill = (np.abs(rgb - TARGET_ALPHA * np.array(TARGET_FILL)) < 0.03).all(-1)
    line_colour = np.array(RENDERED_LINE)
    line = (rgb[..., 0] > 0.5) & (np.abs(rgb - rgb[..., :1] * line_colour) < 0.12).all(-1)
    dark = (rgb < 0.05).all(-1)
    labels, _ = scipy.ndimage.label(dark | fill | line)
    panel = labels == np.bincount(labels[labels > 0]).argmax()  # the image, not the title's glyphs
    rows, cols = np.nonzero(panel)
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()

    def where(mask):
        r, c = np.nonzero(mask & panel)
        return (r.mean() - r0) / (r1 - r0), (c.mean() - c0) / (c1 - c0), mask[panel].mean()

    fr, fc, f_area = where(fill)
    lr, lc, l_area = where(line)
    assert fr < 0.5 and fc < 0.5 and 0.18 < f_area < 0.3, (fr, fc, f_area)
    assert lr > 0.5 and lc > 0.5 and l_area > 0.005, (lr, lc, l_area)
