"""CRE+BSGA (trainer/methods/cre_bsga.py, trainer/models/bsga.py, trainer/cre_data.py): the erased copy, the shared
augmentation, BSGA by hand, the batch cross-clothes triplet by hand, the test image's own mask, the ablations."""
import numpy as np
import pytest
import torch

from pipeline.errors import InputError
from pipeline.imagepack import ImagePack
from pipeline.listfile import read_split
from pipeline.stages.cloth import MERGE7
from pipeline.stages.store import Store, encode_png, merge, shard_attrs, write_shard
from trainer.config import load_method_config
from trainer.cre_data import erase_labels, erased
from trainer.features import evaluate_protocols
from trainer.losses import CrossClothesTripletLoss
from trainer.methods import build_method, method_class
from trainer.models.bsga import BSGA, BSGANet
from trainer.precision import Precision
from trainer.samplers import Draw
from trainer.transforms import IMAGENET_MEAN, IMAGENET_STD

from .conftest import REPO

CPU = torch.device("cpu")


def merged_of(h: int, w: int) -> np.ndarray:
    """A known 7-part map: background border, head on top, then tops, bottoms, arms at the sides, lower limbs."""
    m = np.zeros((h, w), np.uint8)
    m[2: h // 5, w // 4: 3 * w // 4] = MERGE7.index("head")
    m[h // 5: h // 2, w // 4: 3 * w // 4] = MERGE7.index("tops")
    m[h // 5: h // 2, 1: w // 4] = MERGE7.index("arms")
    m[h // 2: 4 * h // 5, w // 4: 3 * w // 4] = MERGE7.index("bottoms")
    m[4 * h // 5: h - 2, w // 4: 3 * w // 4] = MERGE7.index("lower_limbs")
    return m


def write_cloth_store(tiny_dataset, out, found=lambda j: True) -> str:
    """A cloth_masks store over the tiny pack; found(row) says which rows the 'backend' found."""
    pack = ImagePack(str(tiny_dataset["images"]))
    records = []
    for j in range(len(pack)):
        h, w = pack.image(j).shape[:2]
        merged = merged_of(h, w)
        erase = np.isin(merged, [2, 3]) | (np.arange(w)[None, :] < 1)  # the scheme's set differs: + column 0
        records.append({"merged_png": encode_png(merged), "erase_png": encode_png(erase.astype(np.uint8)),
                        "body_png": encode_png((merged > 0).astype(np.uint8)),
                        "cloth_png": encode_png(erase.astype(np.uint8)), "found": np.bool_(found(j))})
    attrs = shard_attrs("cloth_masks", "test", pack.manifest_sha256, backend_version="fixture")
    write_shard(out / "s.h5", np.arange(len(pack)), records, attrs)
    merge([out / "s.h5"], out / "cloth.h5", len(pack), pack.manifest_sha256)
    return str(out / "cloth.h5")


@pytest.fixture(scope="module")
def cloth_store(tiny_dataset, tmp_path_factory):
    return write_cloth_store(tiny_dataset, tmp_path_factory.mktemp("cre_store"))


def cfg_of(*overrides):
    return load_method_config(REPO / "config/methods/cre_bsga.yaml", "tiny", list(overrides))


def items(cfg, tiny_dataset, cloth_store, train=True, split="train"):
    pack = ImagePack(str(tiny_dataset["images"]))
    stores = {"cloth_masks": Store(cloth_store, pack.manifest_sha256)}
    samples = read_split(str(tiny_dataset["lists"]), split)
    kind = method_class(cfg)
    ds = kind.training_dataset(pack, samples, cfg, stores, False) if train else \
        kind.test_dataset(pack, samples, cfg, stores, None)
    stores["cloth_masks"].close()
    return ds


def denormalise(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]


def test_the_erased_copy_is_zero_exactly_on_the_erase_classes(tiny_dataset, cloth_store):
    ds = items(cfg_of(), tiny_dataset, cloth_store)
    j = int(ds.pack_index[0])
    rgb = ds.pack.image(j)
    merged = merged_of(*rgb.shape[:2])
    out = erased(rgb, ds.erase_mask(j, rgb))
    on = np.isin(merged, [MERGE7.index(p) for p in ("tops", "bottoms", "dress")])
    assert on.any() and (out[on] == 0).all()
    np.testing.assert_array_equal(out[~on], rgb[~on])  # head, arms, legs, background untouched
    scheme = items(cfg_of("cre.erase=scheme"), tiny_dataset, cloth_store)
    wider = scheme.erase_mask(j, rgb)
    assert wider[:, 0].all() and (wider == (on | (np.arange(rgb.shape[1])[None] < 1))).all()
    with pytest.raises(InputError, match="not among the 7-part merge's parts"):
        erase_labels(["tops", "shirt"])
    with pytest.raises(InputError, match="does not match the image"):
        erased(rgb, np.zeros((3, 3), bool))


def test_two_images_and_a_mask_share_one_draw_of_crop_flip_and_erasing():
    """The paired transform CRE uses: the second image is the first's negative and the mask the first's red
    channel, so any difference in crop, flip or erasing between them shows up."""
    from trainer.transforms import PairedTransform

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (90, 44, 3), dtype=np.uint8)
    tf = PairedTransform(64, 32, 0.5, 0.5, 1.125, 0.5)
    filled = flipped = 0
    for seed in range(40):
        (a, b), (m,) = tf([image, 255 - image], (image[..., 0] / 255.0,), torch.Generator().manual_seed(seed))
        a, b = denormalise(a), denormalise(b)
        fill = (a - b).abs().amax(0) < 1e-6  # random erasing: the same rectangle and fill in both
        filled += bool(fill.any())
        torch.testing.assert_close((a + b)[:, ~fill], torch.ones_like(a[:, ~fill]), atol=0.01, rtol=0)
        torch.testing.assert_close(a[0][~fill], m[0][~fill], atol=0.01, rtol=0)
        plain = PairedTransform(64, 32, 0, 0, 1.125, 0)([image], ())[0][0]
        flipped += torch.allclose(denormalise(plain).flip(2)[:, ~fill], a[:, ~fill], atol=1e-4)
    assert filled > 5 and flipped > 3


def test_the_items_put_original_erased_copy_and_mask_through_that_one_draw(tiny_dataset, cloth_store):
    ds = items(cfg_of(), tiny_dataset, cloth_store)
    for k in range(4):
        item = ds[Draw(k, 11 + k)][0]
        j = int(ds.pack_index[k])
        rgb = ds.pack.image(j)
        body = (merged_of(*rgb.shape[:2]) > 0).astype(np.float32)
        (image, copy), (mask,) = ds.transform([rgb, erased(rgb, ds.erase_mask(j, rgb))], (body,),
                                              torch.Generator().manual_seed(11 + k))
        torch.testing.assert_close(item["image"], image)
        torch.testing.assert_close(item["erased"], copy)
        torch.testing.assert_close(item["body_mask"], mask)
        assert not torch.equal(image, copy)


def test_bsga_is_eq_2_to_5_by_hand_and_trains_both_convolutions():
    torch.manual_seed(0)
    bsga = BSGA(channels=4)
    w = torch.tensor([0.7, -0.4, 1.3])
    c = 2.0
    with torch.no_grad():  # centre taps only: each 7×7 conv becomes a per-pixel weighted sum
        bsga.conv_joint.weight.zero_()
        bsga.conv_joint.weight[0, :, 3, 3] = w
        bsga.conv_mask.weight.zero_()
        bsga.conv_mask.weight[0, 0, 3, 3] = c
    x = torch.randn(2, 4, 6, 4, requires_grad=True)
    mask = torch.zeros(2, 1, 12, 8)
    mask[:, :, 2:10, 2:6] = 1
    out, attention = bsga(x, mask)
    m = torch.nn.functional.interpolate(mask, size=(6, 4), mode="bilinear", align_corners=False)
    a_s = w[0] * x.mean(1, keepdim=True) + w[1] * x.amax(1, keepdim=True) + w[2] * m
    expected = torch.sigmoid(a_s * (c * m))
    torch.testing.assert_close(attention, expected)
    torch.testing.assert_close(out, x * expected)
    assert torch.allclose(attention[m == 0], torch.tensor(0.5))  # background: σ(A_s · 0)
    bsga2 = BSGA(channels=4)
    out2, _ = bsga2(x, mask)
    out2.pow(2).sum().backward()
    assert bsga2.conv_joint.weight.grad.abs().sum() > 0 and bsga2.conv_mask.weight.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0
    with pytest.raises(InputError, match="bsga_reduction must be one of"):
        BSGA(4, "pool")


def test_cross_clothes_triplet_by_hand():
    # identity 0: clothes 0, 0, 1; identity 1: clothes 2, 2 (no other clothes: no triplet for its anchors)
    f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8], [1.0, 0.1]])
    pids = torch.tensor([0, 0, 0, 1, 1])
    clothes = torch.tensor([0, 0, 1, 2, 2])
    margin = 0.3
    fn = torch.nn.functional.normalize(f, dim=1)
    d = 1 - fn @ fn.t()
    expected = []
    for a in range(3):
        neg = min(d[a, 3], d[a, 4])  # hardest negative: the closest of identity 1
        for p in range(3):
            if clothes[p] != clothes[a]:
                expected.append(max(0.0, float(margin + d[a, p] - neg)))
    # anchors 0 and 1 pair with 2; anchor 2 with 0 and 1: four triplets
    assert len(expected) == 4
    loss, without = CrossClothesTripletLoss(margin)(f, pids, clothes)
    assert loss.item() == pytest.approx(sum(expected) / 4, rel=1e-5)
    assert without == pytest.approx(2 / 5)
    per_anchor = (expected[0] + expected[1] + expected[2] + expected[3]) / 3
    loss_anchors, _ = CrossClothesTripletLoss(margin, "anchors")(f, pids, clothes)
    assert loss_anchors.item() == pytest.approx(per_anchor, rel=1e-5)
    none, all_without = CrossClothesTripletLoss(margin)(f, pids, torch.zeros(5, dtype=torch.long))
    assert none.item() == 0 and all_without == 1.0


def test_the_test_feature_uses_the_test_images_own_mask():
    torch.manual_seed(0)
    net = BSGANet("resnet18", bsga=True).eval()
    image = torch.randn(1, 3, 64, 32)
    upper, lower = torch.zeros(1, 1, 64, 32), torch.zeros(1, 1, 64, 32)
    upper[..., :32, :] = 1
    lower[..., 32:, :] = 1
    with torch.no_grad():
        a = net({"image": image, "body_mask": upper})
        b = net({"image": image, "body_mask": lower})
        assert not torch.allclose(a, b, atol=1e-4)
        net.bsga_at_test = False  # no parsing at inference: the mask is not read
        c = net({"image": image, "body_mask": upper})
        torch.testing.assert_close(c, net({"image": image}))
    with pytest.raises(InputError, match="needs the body mask"):
        net.bsga_at_test = True
        net(image)


@pytest.mark.parametrize("switches, present, absent", [
    (["ablation.cre=false", "ablation.bsga=false", "test.bsga=false", "test.stores=[]"],
     {"loss_id", "loss_triplet"}, set()),                                            # baseline with ccTri
    (["loss.triplet.mining=batch_hard"], {"loss_triplet"}, {"anchors_without_cross_clothes_positive"}),  # Table 6
    (["loss.triplet.mining=none"], {"loss_id"}, {"loss_triplet"}),
])
def test_ablations_train(tiny_dataset, cloth_store, switches, present, absent):
    cfg = cfg_of(*switches)
    ds = items(cfg, tiny_dataset, cloth_store)
    batch = [ds[Draw(i, i)] for i in range(4)]
    images = {k: torch.stack([b[0][k] for b in batch]) for k in batch[0][0]}
    assert ("erased" in images) == cfg["ablation"]["cre"] and ("body_mask" in images) == cfg["ablation"]["bsga"]
    torch.manual_seed(0)
    method = build_method(cfg, 6, np.ones((6, 2), np.float32), CPU)
    stats = method.train_step(images, torch.tensor([b[1] for b in batch]), None, torch.tensor([b[3] for b in batch]),
                              0, Precision(CPU, False))
    assert present <= set(stats) and not absent & set(stats)


def test_cre_doubles_the_batch_with_the_same_labels(tiny_dataset, cloth_store):
    cfg = cfg_of()
    ds = items(cfg, tiny_dataset, cloth_store)
    batch = [ds[Draw(i, i)] for i in range(4)]
    images = {k: torch.stack([b[0][k] for b in batch]) for k in batch[0][0]}
    torch.manual_seed(0)
    method = build_method(cfg, 6, np.ones((6, 2), np.float32), CPU)
    seen = {}
    original = method.id_loss.forward

    def spy(logits, targets):
        seen["n"], seen["targets"] = logits.shape[0], targets.clone()
        return original(logits, targets)

    method.id_loss.forward = spy
    pids = torch.tensor([b[1] for b in batch])
    method.train_step(images, pids, None, torch.tensor([b[3] for b in batch]), 0, Precision(CPU, False))
    assert seen["n"] == 8 and torch.equal(seen["targets"], torch.cat([pids, pids]))


def test_switches_that_cannot_work_together_are_named():
    with pytest.raises(InputError, match="test.bsga needs ablation.bsga"):
        build_method(cfg_of("ablation.bsga=false"), 6, np.ones((6, 2), np.float32), CPU)
    with pytest.raises(InputError, match="test.stores must name cloth_masks"):
        build_method(cfg_of("test.stores=[]"), 6, np.ones((6, 2), np.float32), CPU)
    with pytest.raises(InputError, match="needs clothes labels"):
        build_method(cfg_of(), 6, None, CPU)
    with pytest.raises(InputError, match="mining must be one of"):
        build_method(cfg_of("loss.triplet.mining=hard"), 6, np.ones((6, 2), np.float32), CPU)


def test_evaluation_reads_the_test_masks(tiny_dataset, cloth_store):
    cfg = cfg_of()
    method = build_method(cfg, 6, np.ones((6, 2), np.float32), CPU)
    pack = ImagePack(str(tiny_dataset["images"]))
    stores = {"cloth_masks": Store(cloth_store, pack.manifest_sha256)}
    metrics, extra = evaluate_protocols(method.feature_net(), pack, str(tiny_dataset["lists"]), CPU,
                                        lambda s, v: method_class(cfg).test_dataset(pack, s, cfg, stores, v))
    stores["cloth_masks"].close()
    assert set(metrics) >= {"SC", "CC"} and all(np.isfinite(f[""]).all() for f in extra["features"].values())


def test_the_logs_say_on_how_many_images_the_masks_were_found(tiny_dataset, tmp_path):
    from trainer.stores import found_summary

    store = write_cloth_store(tiny_dataset, tmp_path, found=lambda j: j % 3 == 0)
    pack = ImagePack(str(tiny_dataset["images"]))
    train_samples = read_split(str(tiny_dataset["lists"]), "train")
    rows = pack.indices([s.path for s in train_samples])
    expected = sum(1 for r in rows if r % 3 == 0)
    assert 0 < expected < len(rows)
    with Store(store, pack.manifest_sha256) as opened:
        line, = found_summary({"cloth_masks": opened}, pack, train_samples, "training")
        assert found_summary({}, pack, train_samples, "training") == []
    assert line == (f"cloth_masks store (test): found on {expected} of the {len(rows)} training images "
                    f"({100 * expected / len(rows):.1f}%)")


@pytest.mark.slow
def test_evaluation_without_bsga_needs_no_retraining_and_other_keys_stay_fixed(tiny_dataset, cloth_store, tmp_path,
                                                                               capsys):
    import json

    from trainer.evaluate import main as evaluate_main
    from trainer.train import train

    model = train(cfg_of("epochs=1"), str(tiny_dataset["lists"]), str(tiny_dataset["images"]), tmp_path / "run", "cpu",
                  {"cloth_masks": cloth_store})
    n_train = len(read_split(str(tiny_dataset["lists"]), "train"))
    assert f"cloth_masks store (test): found on {n_train} of the {n_train} training images (100.0%)" in \
        capsys.readouterr().out
    common = ["--model", str(model), "--lists", str(tiny_dataset["lists"]), "--images", str(tiny_dataset["images"])]
    assert evaluate_main([*common, "--store", f"cloth_masks={cloth_store}", "--out", str(tmp_path / "with.json")]) == 0
    printed = capsys.readouterr().out
    for split in ("gallery", "query_same", "query_diff"):  # PRCC's protocols read these three
        n = len(read_split(str(tiny_dataset["lists"]), split))
        assert f"cloth_masks store (test): found on {n} of the {n} {split} images (100.0%)" in printed
    assert evaluate_main([*common, "--set", "test.bsga=false", "--set", "test.stores=[]",
                          "--out", str(tmp_path / "without.json")]) == 0  # no store given: none read
    with_bsga, without = (json.loads((tmp_path / f).read_text()) for f in ("with.json", "without.json"))
    assert without["test_overrides"] == ["test.bsga=false", "test.stores=[]"] and "test_overrides" not in with_bsga
    assert with_bsga["provenance"]["preprocessing"] == {"cloth_masks": "test"}  # the stores it trained with
    assert with_bsga["protocols"]["CC"] != without["protocols"]["CC"]  # the attention mattered to the features
    capsys.readouterr()
    assert evaluate_main([*common, "--set", "model.pooling=max", "--out", str(tmp_path / "x.json")]) == 2
    assert "allows only ['test.bsga', 'test.stores'] to change" in capsys.readouterr().err
    assert evaluate_main([*common, "--set", "test.stores=[]", "--out", str(tmp_path / "x.json")]) == 2
    assert "test.stores must name cloth_masks (or set test.bsga: false)" in capsys.readouterr().err


def _ddp_worker(rank, world, port, lists, images, cloth_store, out, queue):
    from .conftest import join_process_group_env, keep_built_method

    join_process_group_env(rank, world, port)
    torch.set_num_threads(1)
    import trainer.train as T

    captured = {}
    keep_built_method(captured)
    T.train(cfg_of("epochs=1"), lists, images, out, "cpu", {"cloth_masks": cloth_store})
    queue.put((rank, torch.cat([p.detach().flatten() for p in captured["m"].model.parameters()]).numpy()))


@pytest.mark.slow
def test_ddp_on_cpu_with_gloo_keeps_replicas_identical(tmp_path, tiny_dataset, cloth_store):
    """Two processes, each with its own 2M-image batches: the cross-clothes triplet gathers features, identities
    and clothes over ranks; DDP keeps the replicas equal."""
    from .conftest import run_ranks

    results = run_ranks(_ddp_worker, str(tiny_dataset["lists"]), str(tiny_dataset["images"]), cloth_store, tmp_path)
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)
    assert torch.load(tmp_path / "model.pt", weights_only=False)["world_size"] == 2


def test_a_mask_of_another_size_than_its_image_is_refused(tiny_dataset, cloth_store):
    from trainer.stores import StoreColumn

    pack = ImagePack(str(tiny_dataset["images"]))
    with Store(cloth_store, pack.manifest_sha256) as store:
        column = StoreColumn(store, "body_png")
    rgb = pack.image(0)
    assert column.mask(0, rgb, "a.jpg").shape == rgb.shape[:2]
    with pytest.raises(InputError, match=r"body_png row 0 \(a.jpg\) is .*; rerun cloth_masks"):
        column.mask(0, rgb[:-1], "a.jpg")
