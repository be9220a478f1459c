"""3DSL: ASSP gradients, reconstruction learning on synthetic data, the discriminator, losses, sampling,
ablation switches and the feature network evaluation rebuilds."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pipeline.imagepack import ImagePack
from pipeline.listfile import read_split
from pipeline.stages.__main__ import run
from pipeline.stages.store import Store, merge
from trainer.body.geometry import axis_angle_to_rotmat, rot6d_to_rotmat
from trainer.body.mocap import MocapSampler, write_standin_prior
from trainer.body.model import BodyModel
from trainer.body.standin import write_standin
from trainer.config import load_method_config
from trainer.losses import TripletLoss, lsgan_discriminator_loss, lsgan_generator_loss
from trainer.methods import build_method, method_class
from trainer.methods.threedsl import displacement_smoothness, keypoint_loss
from trainer.models import build_feature_net
from trainer.models.threedsl import Discriminator
from trainer.precision import Precision
from trainer.samplers import IdentitySampler
from trainer.transforms import finish_batch

from .conftest import REPO

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def body_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("body3d")
    return {"body_model": str(write_standin(d / "STANDIN_NEUTRAL.pkl")),
            "mocap": str(write_standin_prior(d / "prior.npz", num_frames=2000))}


@pytest.fixture(scope="module")
def cues(tiny_dataset, tmp_path_factory):
    """Ground-truth keypoint and silhouette stores of the tiny synthetic dataset."""
    out = tmp_path_factory.mktemp("cues")
    images = str(tiny_dataset["images"])
    pack = ImagePack(images)
    truth = str(tiny_dataset["root"] / "groundtruth" / "groundtruth.h5")
    stores = {}
    for stage in ("keypoints", "silhouettes"):
        run(stage, "groundtruth", images, 0, 1, str(out / f"{stage}.shard"), {}, truth, progress=False)
        merge([out / f"{stage}.shard"], out / f"{stage}.h5", len(pack), pack.manifest_sha256)
        stores[stage] = str(out / f"{stage}.h5")
    return stores


def tiny_cfg(*overrides):
    return load_method_config(REPO / "config/methods/3dsl.yaml", "tiny", list(overrides))


def build(cfg, body_files, num_pids=6, clothes=True):
    torch.manual_seed(0)
    p2c = np.ones((num_pids, 2), np.float32) if clothes else None
    return build_method(cfg, num_pids, p2c, CPU, body_files)


def dataset_for(cfg, tiny_dataset, cues):
    pack = ImagePack(str(tiny_dataset["images"]))
    opened = {s: Store(p, pack.manifest_sha256) for s, p in cues.items()}
    ds = method_class(cfg).training_dataset(pack, read_split(str(tiny_dataset["lists"]), "train"), cfg, opened, False)
    for s in opened.values():
        s.close()
    return ds


def fake_batch(cfg, b=4):
    d, r = cfg["data"], cfg["render"]
    torch.manual_seed(1)
    sil = torch.zeros(b, r["height"], r["width"])
    sil[:, 4:-4, 4:-4] = 1
    kp = torch.rand(b, 17, 3)
    return ({"rgb": torch.randn(b, 3, d["height"], d["width"]), "image3d": torch.randn(b, 3, d["height"], d["width"]),
             "keypoints": kp, "silhouette": sil, "sil_valid": torch.ones(b)},
            torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 2, 3]))


@pytest.mark.parametrize("only", ["key", "sil"])
def test_gradients_reach_e3d_through_each_projection_loss(body_files, only):
    cfg = tiny_cfg(*[f"ablation.{k}={str(k == only).lower()}" for k in ("key", "sil", "adv")])
    method = build(cfg, body_files)
    method.train(True)
    images, pids, clothes = fake_batch(cfg)
    out = method.net(images["rgb"], images["image3d"])
    stats = {}
    loss = method.assp_losses(out, images, stats)
    assert set(stats) & {"loss_key", "loss_sil"} == {f"loss_{only}"}
    loss.backward()
    e3d_grad = method.net.e3d[0].weight.grad
    assert e3d_grad is not None and e3d_grad.abs().sum() > 0
    # the pose branch carries the projection too; the RGB branch is untouched by ASSP
    assert method.net.regressor.dec_cam.weight.grad.abs().sum() > 0
    assert method.net.rgb.bn.weight.grad is None


@pytest.mark.slow
def test_short_training_run_raises_iou_and_keeps_displacements_smooth(body_files, tiny_dataset, cues, tmp_path):
    """Training-batch IoU of the rendered reconstruction with the true silhouettes rises, early vs late; and
    δ stays a smooth body-shape correction: no vertex moved far, no edge of the rest shape stretched many
    times (without the smoothness term: 0.34 m and 43× after 60 such steps). The training stats log both."""
    cfg = tiny_cfg("ablation.rgb=false", "test_feature=shape", "data.batch_size=8")
    ds = dataset_for(cfg, tiny_dataset, cues)
    method = build(cfg, body_files, num_pids=int(ds.pids.max()) + 1)
    loader = DataLoader(ds, batch_size=8, sampler=IdentitySampler(ds.pids, 2, seed=0), drop_last=True)
    method.train(True)
    precision = Precision(CPU, False)
    ious, stats = [], {}
    for epoch in range(24):  # the smoothness term slows the fit of the first ~50 steps: δ can no longer spike
        loader.sampler.set_epoch(epoch)
        for images, pids, camids, clothes in loader:
            stats = method.train_step(images, pids, camids, clothes, epoch, precision)
            ious.append(stats["sil_iou"])
    early, late = np.mean(ious[:6]), np.mean(ious[-6:])
    assert len(ious) >= 60 and late > early + 0.05, ious
    images = next(iter(loader))[0]
    betas, delta, _, _ = method.net.reconstruct(images["image3d"])
    body = method.body
    faces = body.faces
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    rest = body.v_template + torch.einsum("bl,vcl->bvc", betas, body.shapedirs)
    length = (rest[:, edges[:, 0]] - rest[:, edges[:, 1]]).norm(dim=-1)
    moved = rest + delta
    stretch = (moved[:, edges[:, 0]] - moved[:, edges[:, 1]]).norm(dim=-1) / length
    assert float(delta.norm(dim=-1).max()) < 0.1 and float(stretch.max()) < 3.0
    parts = [f"delta_max_part{i}" for i in range(3)]
    assert {"delta_max", "edge_stretch_max", "loss_smooth", *parts} <= set(stats)
    assert stats["delta_max"] == pytest.approx(max(stats[p] for p in parts)) and stats["delta_max"] < 0.1
    assert 1.0 < stats["edge_stretch_max"] < 3.0
    report = method.write_report(tmp_path, ds)
    assert 0 <= report["reconstruction_iou"] <= 1 and (tmp_path / "reconstructions.png").stat().st_size > 10_000


def test_displacement_smoothness_is_the_mesh_laplacian_of_delta(body_files):
    """BodyModel.laplacian against a dense Laplacian built here from the faces; the term is zero for a
    rigid shift of all vertices and grows with a single vertex pulled out alone."""
    body = BodyModel(body_files["body_model"])
    f = body.faces.numpy()
    v = body.num_vertices
    i = np.concatenate([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0]])
    j = np.concatenate([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2]])
    adjacency = (scipy.sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(v, v)).tocsr() > 0).astype(np.float64)
    degree = np.asarray(adjacency.sum(1)).ravel()
    torch.manual_seed(0)
    x = torch.randn(2, v, 3)
    dense = x.double().numpy() - np.stack([adjacency @ x[k].double().numpy() for k in range(2)]) / degree[None, :, None]
    torch.testing.assert_close(body.laplacian(x), torch.from_numpy(dense).float(), atol=1e-5, rtol=1e-5)
    shift = torch.tensor([0.03, -0.02, 0.05]).expand(1, v, 3)
    assert float(displacement_smoothness(body, shift)) < 1e-10
    spike = torch.zeros(1, v, 3)
    spike[0, 100, 1] = 0.1
    neighbours = adjacency[100].indices  # each is off by −0.1/its degree from its neighbours' mean
    expected = 0.01 * (1 + (1 / degree[neighbours] ** 2).sum())
    assert float(displacement_smoothness(body, spike)) == pytest.approx(expected, rel=1e-4)


def test_discriminator_sees_every_regressor_iteration(body_files):
    """HMR (trainer.py) gives D the pose of every IEF iteration, with as many real samples: the generator
    loss and D's fake batch hold iterations × B rows, iteration after iteration, each with the image's β."""
    cfg = tiny_cfg("model.ief_iterations=3", "ablation.rgb=false", "test_feature=shape")
    method = build(cfg, body_files)
    method.train(True)
    method.net.regressor.fc.eval()  # no dropout, so the iterations can be recomputed below
    images, pids, clothes = fake_batch(cfg)
    b, reg = pids.shape[0], method.net.regressor
    expected = []

    def recompute(module, args):
        with torch.no_grad():
            feature = args[0]
            pose, cam = reg.init_pose6d.expand(b, -1), reg.init_cam.expand(b, -1)
            for _ in range(3):
                x = reg.fc(torch.cat([feature, pose, cam], 1))
                pose, cam = pose + reg.dec_pose(x), cam + reg.dec_cam(x)
                expected.append(rot6d_to_rotmat(pose).view(b, 24, 3, 3)[:, 1:])

    calls = []
    hooks = [reg.register_forward_pre_hook(recompute),
             method.discriminator.register_forward_hook(
                 lambda m, args, out: calls.append((args[0].detach(), args[1].detach(), args[0].requires_grad,
                                                    out.detach())))]
    stats = method.train_step(images, pids, pids, clothes, 0, Precision(CPU, False))
    for h in hooks:
        h.remove()
    generator, real, fake = calls
    assert generator[0].shape == fake[0].shape == real[0].shape == (3 * b, 23, 3, 3)
    assert generator[2] and not fake[2]  # the generator's fakes carry gradients, D's do not
    torch.testing.assert_close(generator[0], torch.cat(expected), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fake[0], generator[0])
    betas = generator[1].view(3, b, -1)
    torch.testing.assert_close(betas, betas[:1].expand(3, -1, -1))
    assert stats["loss_adv_e"] == pytest.approx(float(lsgan_generator_loss(generator[3])), rel=1e-5)


def test_without_the_shape_branch_it_is_the_papers_two_resnet_baseline(body_files):
    """Paper §4.3: "a plain two-branch model that combines two original ResNet50 networks, which are trained
    separately and features are concatenated for evaluation" (Table 4's first row)."""
    cfg = tiny_cfg("ablation.shape=false", "ablation.sampling=random")
    method = build(cfg, body_files)
    net = method.net
    assert not hasattr(net, "e3d") and not hasattr(net, "regressor")
    first, second = {id(p) for p in net.rgb.parameters()}, {id(p) for p in net.rgb2.parameters()}
    assert first and second and not first & second
    images, pids, clothes = fake_batch(cfg)
    method.train(True)
    out = net(images["rgb"])
    method.id_loss(out["rgb2"][1], pids).backward()
    assert all(p.grad is None for p in net.rgb.parameters()) and net.rgb2.bn.weight.grad.abs().sum() > 0
    stats = method.train_step(images, pids, pids, clothes, 0, Precision(CPU, False))
    assert {"loss_id_rgb", "loss_tri_rgb", "loss_id_rgb2", "loss_tri_rgb2"} <= set(stats)
    assert not {"loss_key", "loss_sil", "loss_adv_e", "loss_d"} & set(stats)
    net.eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        f = net(x)
        d = net.rgb.dim
        torch.testing.assert_close(f, torch.cat([F.normalize(net.rgb(x), dim=1), F.normalize(net.rgb2(x), dim=1)], 1))
        rebuilt = build_feature_net(method.feature_net_spec())
        rebuilt.load_state_dict(net.state_dict())
        torch.testing.assert_close(rebuilt.eval()(x), f)
    assert f.shape[1] == 2 * d
    # one of the two alone: Table 4's single-feature † row
    single = build(tiny_cfg("ablation.shape=false", "ablation.sampling=random", "test_feature=rgb"), body_files)
    assert single.net.eval()(x).shape[1] == d


def test_body_cue_dataset_normalises_keypoints_and_resizes_silhouettes(body_files, tiny_dataset, cues):
    cfg = tiny_cfg()
    ds = dataset_for(cfg, tiny_dataset, cues)
    item, *_ = ds[0]
    j = int(ds.pack_index[0])
    with Store(cues["keypoints"]) as store:
        raw = store["keypoints"][j]
    h, w = cfg["data"]["height"], cfg["data"]["width"]
    u = (item["keypoints"][:, 0] * h + w) / 2  # back to pixels of the resized image
    np.testing.assert_allclose(u.numpy(), raw[:, 0] * w / ds.widths[j], atol=1e-4)
    assert item["silhouette"].shape == (cfg["render"]["height"], cfg["render"]["width"])
    assert 0 < float(item["silhouette"].mean()) < 1 and item["sil_valid"] == 1
    # E_rgb's image comes as uint8 pixels and draws, augmented where the net trains (trainer.transforms)
    assert item["rgb"]["uint8_pixels"].dtype == torch.uint8
    assert item["image3d"].shape == finish_batch(item["rgb"]).shape == (3, h, w)


@pytest.mark.slow
def test_discriminator_separates_prior_samples_from_noise(body_files):
    torch.manual_seed(0)
    mocap = MocapSampler(body_files["mocap"])
    d = Discriminator()
    opt = torch.optim.Adam(d.parameters(), lr=1e-3)

    def noise(n):
        return axis_angle_to_rotmat(torch.randn(n, 23, 3) * 1.5), torch.randn(n, 10) * 3

    def real(n):
        pose, betas = mocap.sample(n)
        return axis_angle_to_rotmat(pose)[:, 1:], betas

    for _ in range(150):
        loss = lsgan_discriminator_loss(d(*real(32)), d(*noise(32)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        r, f = d(*real(200)).mean(1), d(*noise(200)).mean(1)
    assert ((r > 0.5).float().mean() > 0.95) and ((f < 0.5).float().mean() > 0.95)


def test_lsgan_losses_by_hand():
    real, fake = torch.tensor([[1.0, 0.5]]).repeat(2, 1), torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    assert lsgan_discriminator_loss(real, fake) == pytest.approx(0.25 + (4.0 + 2.0) / 2)
    assert lsgan_generator_loss(fake) == pytest.approx((1 + 1 + 0 + 0) / 2)


def test_keypoint_loss_weights_by_confidence_and_ignores_missing_joints():
    pred = torch.zeros(1, 17, 2)
    target = torch.zeros(1, 17, 3)
    target[0, 0] = torch.tensor([1.0, 0.0, 0.5])
    target[0, 1] = torch.tensor([50.0, 50.0, 0.0])  # missing: ignored however far
    assert keypoint_loss(pred, target) == pytest.approx(0.5 * 1.0 / 1.0)  # Σc·err / max(Σc, 1)
    target[0, 2] = torch.tensor([0.0, 2.0, 1.0])
    assert keypoint_loss(pred, target) == pytest.approx((0.5 * 1 + 1 * 4) / 1.5)


def test_clothes_aware_triplet_takes_positives_in_other_clothes():
    # anchor 0 (pid 0, clothes 0): same-clothes image 1 is farther than other-clothes image 2
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.7, 0.7]])
    pids, clothes = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 5])
    dist = 1 - torch.nn.functional.normalize(f, dim=1) @ torch.nn.functional.normalize(f, dim=1).t()
    loss = TripletLoss(margin=1.0)
    plain, aware = loss(f, pids), loss(f, pids, clothes)
    d = dist
    relu = lambda x: max(float(x), 0.0)  # noqa: E731
    anchor3 = relu(0 - min(d[3, 0], d[3, 1], d[3, 2]) + 1)  # pid 1 has no other image: itself, then negatives
    aware_by_hand = [relu(d[0, 2] - d[0, 3] + 1), relu(d[1, 2] - d[1, 3] + 1),
                     relu(max(d[2, 0], d[2, 1]) - d[2, 3] + 1), anchor3]
    plain_by_hand = [relu(max(d[0, 1], d[0, 2]) - d[0, 3] + 1), relu(max(d[1, 0], d[1, 2]) - d[1, 3] + 1),
                     relu(max(d[2, 0], d[2, 1]) - d[2, 3] + 1), anchor3]
    assert float(aware) == pytest.approx(np.mean(aware_by_hand), abs=1e-6)
    assert float(plain) == pytest.approx(np.mean(plain_by_hand), abs=1e-6)
    assert aware < plain


def test_clothes_aware_sampler_spreads_each_group_over_outfits():
    pids = np.repeat(np.arange(3), 8)
    clothes = np.tile(np.repeat([0, 1], 4), 3) + 2 * pids
    sampler = IdentitySampler(pids, 4, seed=0, clothes=clothes)
    order = list(sampler)
    for g in range(0, len(order), 4):
        assert len(set(clothes[order[g:g + 4]])) == 2  # two of each outfit, never four of one
    plain = list(IdentitySampler(pids, 4, seed=0))
    assert sorted(plain) == sorted(order)


@pytest.mark.slow
def test_ablations_switch_the_parts_they_name(body_files):
    cfg = tiny_cfg("ablation.mgs=false", "ablation.adv=false")
    method = build(cfg, body_files)
    assert method.net.mgs.num_parts == 0 and method.net.mgs.dec_displacement.out_features == 6890 * 3
    images, pids, clothes = fake_batch(cfg)
    stats = method.train_step(images, pids, pids, clothes, 0, Precision(CPU, False))
    assert "loss_adv_e" not in stats and "loss_d" not in stats and "loss_sil" in stats
    assert len(build(tiny_cfg(), body_files).net.shape_heads) == 1 + 3  # F_global + 3 parts
    with pytest.raises(ValueError, match="test_feature 'concat' does not fit"):
        build(tiny_cfg("ablation.rgb=false"), body_files)
    with pytest.raises(ValueError, match="sampling: clothes needs clothes labels"):
        build(tiny_cfg(), body_files, clothes=False)
    with pytest.raises(ValueError, match="3DSL needs --mocap"):
        build_method(tiny_cfg(), 6, np.ones((6, 2)), CPU, {"body_model": body_files["body_model"]})


def test_evaluation_rebuilds_the_feature_network_from_its_spec(body_files):
    method = build(tiny_cfg(), body_files)
    net = method.feature_net().eval()
    rebuilt = build_feature_net(method.feature_net_spec())
    rebuilt.load_state_dict(net.state_dict())
    rebuilt.eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        f = net(x)
        torch.testing.assert_close(rebuilt(x), f)
    # concat of two L2-normalised branches
    rgb_dim = method.net.rgb.dim
    torch.testing.assert_close(f[:, :rgb_dim].norm(dim=1), torch.ones(2))
    torch.testing.assert_close(f[:, rgb_dim:].norm(dim=1), torch.ones(2))
