"""3DSL: ASSP gradients, reconstruction learning on synthetic data, the discriminator, losses, sampling,
ablation switches and the feature network evaluation rebuilds."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pipeline.imagepack import ImagePack
from pipeline.listfile import read_split
from pipeline.stages.__main__ import run
from pipeline.stages.store import Store, merge
from trainer.body.geometry import axis_angle_to_rotmat
from trainer.body.mocap import MocapSampler, write_standin_prior
from trainer.body.standin import write_standin
from trainer.config import load_method_config
from trainer.losses import TripletLoss, lsgan_discriminator_loss, lsgan_generator_loss
from trainer.methods import build_method, method_class
from trainer.methods.threedsl import keypoint_loss
from trainer.models import build_feature_net
from trainer.models.threedsl import Discriminator
from trainer.precision import Precision
from trainer.samplers import IdentitySampler

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


def test_silhouette_iou_rises_during_a_short_training_run(body_files, tiny_dataset, cues):
    """Training-batch IoU of the rendered reconstruction with the true silhouettes, early vs late."""
    cfg = tiny_cfg("ablation.rgb=false", "test_feature=shape", "data.batch_size=8")
    ds = dataset_for(cfg, tiny_dataset, cues)
    method = build(cfg, body_files, num_pids=int(ds.pids.max()) + 1)
    loader = DataLoader(ds, batch_size=8, sampler=IdentitySampler(ds.pids, 2, seed=0), drop_last=True)
    method.train(True)
    precision = Precision(CPU, False)
    ious = []
    for epoch in range(16):
        loader.sampler.set_epoch(epoch)
        for images, pids, camids, clothes in loader:
            ious.append(method.train_step(images, pids, camids, clothes, epoch, precision)["sil_iou"])
    early, late = np.mean(ious[:6]), np.mean(ious[-6:])
    assert len(ious) >= 40 and late > early + 0.05, ious


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
    assert item["image3d"].shape == item["rgb"].shape == (3, h, w)


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
