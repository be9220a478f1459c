"""DeSKPro (trainer/methods/deskpro.py, trainer/models/deskpro.py, trainer/deskpro_data.py): the CSA target, the
shared augmentation of body and mask, the face-missing path, eq. (7), the teacher and DeSKPro*, the ablations."""
import math

import cv2
import numpy as np
import pytest
import torch

from pipeline.errors import InputError
from pipeline.imagepack import ImagePack
from pipeline.listfile import read_split
from pipeline.stages.cloth import attention_target, deskpro_target
from pipeline.stages.store import Store, decode_rgb, encode_png, encode_rgb, merge, shard_attrs, write_shard
from trainer.config import load_method_config
from trainer.features import evaluate_protocols
from trainer.methods import build_method, method_class
from trainer.methods.deskpro import scaled_lr
from trainer.models.deskpro import deskpro_net
from trainer.precision import Precision
from trainer.samplers import Draw
from trainer.transforms import IMAGENET_MEAN, IMAGENET_STD, PairedTransform

from .conftest import REPO, join_process_group_env, keep_built_method, run_ranks

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """OSNet's depth-wise convolutions crawl with two threads on two busy cores (tests/test_osnet_lmbn.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cloth_of(h: int, w: int) -> np.ndarray:
    """A known cloth mask: the torso rows, left of the middle column."""
    cloth = np.zeros((h, w), np.uint8)
    cloth[int(0.3 * h): int(0.7 * h), : w // 2] = 1
    return cloth


def _store(path, stage, records, pack, backend="test"):
    attrs = shard_attrs(stage, backend, pack.manifest_sha256, backend_version="test fixture")
    shard = path.with_suffix(".shard.h5")
    write_shard(shard, np.arange(len(pack)), records, attrs)
    merge([shard], path, len(pack), pack.manifest_sha256)
    return str(path)


@pytest.fixture(scope="module")
def stores(tiny_dataset, tmp_path_factory):
    """cloth_masks, faces and faces_restored of the tiny dataset, with known content: the cloth mask of
    cloth_of, each face a crop of its image's top rows (the identity's head), its "restored" face that crop
    enlarged with inverted colours, no face on every 4th image, no cloth mask on every 7th."""
    out = tmp_path_factory.mktemp("deskpro_stores")
    pack = ImagePack(str(tiny_dataset["images"]))
    cloth, faces, restored = [], [], []
    for j in range(len(pack)):
        rgb = pack.image(j)
        h, w = rgb.shape[:2]
        found = j % 4 != 3
        head = cv2.resize(np.ascontiguousarray(rgb[: max(8, h // 5)]), (24, 24), interpolation=cv2.INTER_AREA)
        crop = head if found else np.zeros((24, 24, 3), np.uint8)
        big = 255 - cv2.resize(crop, (48, 48), interpolation=cv2.INTER_CUBIC)  # "restored": told apart by colour
        cloth.append({"cloth_png": encode_png(cloth_of(h, w)), "found": np.bool_(j % 7 != 5)})
        faces.append({"crop_png": encode_rgb(crop), "found": np.bool_(found)})
        restored.append({"lr_png": encode_rgb(crop), "restored_png": encode_rgb(big), "found": np.bool_(found)})
    return {"cloth_masks": _store(out / "cloth.h5", "cloth_masks", cloth, pack),
            "faces": _store(out / "faces.h5", "faces", faces, pack),
            "faces_restored": _store(out / "restored.h5", "faces_restored", restored, pack)}


def opened(tiny_dataset, stores, *names):
    pack = ImagePack(str(tiny_dataset["images"]))
    return pack, {n: Store(stores[n], pack.manifest_sha256) for n in names or stores}


def cfg_of(method="deskpro", *overrides, fmt=None):
    return load_method_config(REPO / f"config/methods/{method}.yaml", "tiny", list(overrides), fmt)


def train_items(cfg, tiny_dataset, stores):
    pack, st = opened(tiny_dataset, stores)
    samples = read_split(str(tiny_dataset["lists"]), "train")
    ds = method_class(cfg).training_dataset(pack, samples, cfg, st, False)
    for s in st.values():
        s.close()
    return ds


def collate(ds, indices, seed=0):
    items = [ds[Draw(i, seed + i)] for i in indices]
    images = {k: torch.stack([it[0][k] for it in items]) for k in items[0][0]}
    return images, torch.tensor([it[1] for it in items])


# --- the CSA target ----------------------------------------------------------------------------------------------

def test_csa_target_from_a_known_cloth_mask():
    cloth = cloth_of(96, 48)
    keep = (cloth == 0).astype(np.float32)
    target = attention_target(keep, (12, 6))
    # by hand: the official resize (cv2 bilinear to 6×12), then exact zeros -> 0.1
    resized = cv2.resize(keep, (6, 12), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(target, np.where(resized == 0, np.float32(0.1), resized))
    assert target.shape == (12, 6)
    assert target[5, 0] == np.float32(0.1)          # inside the cloth: ε
    assert target[0, 0] == 1.0 and target[-1, -1] == 1.0 and target[5, -1] == 1.0  # outside: 1
    assert ((target > 0.1) & (target < 1)).any()    # the cloth's border keeps its interpolated value
    np.testing.assert_array_equal(deskpro_target(cloth), np.where(cloth > 0, np.float32(0.1), np.float32(1)))
    with pytest.raises(InputError, match="H×W mask"):
        attention_target(np.zeros((2, 3, 3)))


# --- augmentation ------------------------------------------------------------------------------------------------

def test_body_and_mask_receive_identical_flip_and_translation():
    h, w = 64, 32
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (80, 40, 3), dtype=np.uint8)
    mask = image[..., 0].astype(np.float32) / 255  # the mask is the image's red channel: any geometric
    tf = PairedTransform(h, w, erase_p=0.0)          # difference between the two shows up
    mean, std = IMAGENET_MEAN[0], IMAGENET_STD[0]
    flipped = moved = 0
    plain = PairedTransform(h, w, flip_p=0.0, translate_p=0.0, erase_p=0.0)([image], (mask,))[1][0]
    for seed in range(40):
        (body,), (m,) = tf([image], (mask,), torch.Generator().manual_seed(seed))
        red = body[0] * std + mean
        torch.testing.assert_close(red, m[0], atol=0.01, rtol=0)  # uint8 rounding in two resizes: < 2/255
        flipped += torch.allclose(m, torch.flip(plain, dims=[2]), atol=1e-4)
        moved += not torch.allclose(m, plain, atol=1e-4) and not torch.allclose(m, torch.flip(plain, dims=[2]),
                                                                                atol=1e-4)
    assert flipped > 3 and moved > 10  # the draws did flip and translate


def test_training_items_pair_the_target_with_the_augmented_body(tiny_dataset, stores):
    """An item's target is its cloth mask under the very draw that moved its body."""
    cfg = cfg_of()
    ds = train_items(cfg, tiny_dataset, stores)
    h, w = cfg["data"]["height"], cfg["data"]["width"]
    for k in range(12):
        item = ds[Draw(k % len(ds), 100 + k)][0]
        assert item["body"].shape == (3, h, w) and item["target"].shape == (1, h // 8, w // 8)
        # the same draw given to the paired transform directly: the target is the cloth mask's, moved as the body
        j = int(ds.pack_index[k % len(ds)])
        rgb = ds.pack.image(j)
        keep = (cloth_of(*rgb.shape[:2]) == 0).astype(np.float32)
        (body,), (m,) = ds.body_tf([rgb], (keep,), torch.Generator().manual_seed(100 + k))
        torch.testing.assert_close(item["body"], body)
        np.testing.assert_array_equal(item["target"][0].numpy(), attention_target(m[0].numpy(), (h // 8, w // 8)))


def test_faces_without_a_face_are_dropped_or_kept_zeroed(tiny_dataset, stores):
    samples = read_split(str(tiny_dataset["lists"]), "train")
    dropped = train_items(cfg_of(), tiny_dataset, stores)
    found = np.array([j % 4 != 3 for j in dropped.pack_index])
    assert found.all() and len(dropped) == sum(j % 4 != 3 for j in ImagePack(str(tiny_dataset["images"])).indices(
        [s.path for s in samples]))
    kept = train_items(cfg_of("deskpro", "data.missing_faces=mask"), tiny_dataset, stores)
    assert len(kept) == len(samples)
    faceless = next(i for i, j in enumerate(kept.pack_index) if j % 4 == 3)
    item = kept[Draw(faceless, 0)][0]
    assert item["face_found"] == 0 and not item["face"].any() and not item["face_hr"].any()
    assert set(item) == {"body", "target", "target_valid", "face", "face_hr", "face_found"}


# --- the network's test features ---------------------------------------------------------------------------------

def test_a_query_without_a_face_gets_finite_features_and_the_body_ranking():
    torch.manual_seed(0)
    net = deskpro_net(5, feats=32, face=True, body=True, csa=True).eval()
    x = {"body": torch.randn(6, 3, 64, 32), "face": torch.randn(6, 3, 32, 32),
         "face_found": torch.tensor([0.0, 1, 1, 1, 0, 1])}
    with torch.no_grad():
        raw = net(x)
        assert not raw["face"][0].any() and raw["face"][1].abs().sum() > 0
        streams = net.test_features(raw)
    assert list(streams) == ["all", "body", "face"]
    assert all(torch.isfinite(v).all() for v in streams.values())
    assert streams["all"].shape == (6, 2 * 32 * 7)
    # the official per-part division has no epsilon: it would give NaN for query 0
    assert torch.isnan(raw["face"] / raw["face"].norm(dim=1, keepdim=True)).any()
    q, g = streams["all"][0], streams["all"][1:]
    body_q, body_g = streams["body"][0], streams["body"][1:]
    torch.testing.assert_close(g @ q, body_g @ body_q)  # face ⊕ body adds nothing for a faceless query
    assert torch.equal(torch.argsort(g @ q), torch.argsort(body_g @ body_q))
    # each part has unit norm: 7 per stream with a face
    torch.testing.assert_close(streams["all"][1].pow(2).sum(), torch.tensor(14.0))


# --- the methods -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def teacher_file(tiny_dataset, stores, tmp_path_factory):
    """A deskpro_teacher model.pt as training writes it (one epoch of the tiny scale)."""
    from trainer.train import train
    out = tmp_path_factory.mktemp("teacher")
    cfg = cfg_of("deskpro_teacher", "epochs=1")
    path = train(cfg, str(tiny_dataset["lists"]), str(tiny_dataset["images"]), out, "cpu",
                 {"faces_restored": stores["faces_restored"]})
    return str(path)


def student(cfg, teacher_file, num_pids=6, run=None):
    torch.manual_seed(0)
    return build_method(cfg, num_pids, None, CPU, {"teacher": teacher_file, "run": run})


class Spy(Precision):
    def __init__(self):
        super().__init__(CPU, False)
        self.losses = []

    def backward(self, loss):
        self.losses.append(loss.item())
        super().backward(loss)


@pytest.mark.slow
def test_total_loss_is_eq7_and_the_teacher_gets_no_gradient(tiny_dataset, stores, teacher_file):
    cfg = cfg_of("deskpro", fmt="prcc")
    assert cfg["loss"]["kd"] == {"temperature": 1.0, "alpha": 0.8} and cfg["dataset_defaults"] == "prcc"
    method = student(cfg, teacher_file)
    teacher_before = {k: v.clone() for k, v in method.teacher.state_dict().items()}
    face_before = {k: v.clone() for k, v in method.model.face_net.named_parameters()}
    images, pids = collate(train_items(cfg, tiny_dataset, stores), range(4))
    spy = Spy()
    stats = method.train_step(images, pids, None, None, 0, spy)
    a = 0.8
    expected = ((1 - a) * stats["loss_ce_face"] + stats["loss_ce_body"] + stats["loss_triplet_face"]
                + stats["loss_triplet_body"] + a * stats["loss_kd"] + 7.0 * stats["loss_attention"])
    assert spy.losses[0] == pytest.approx(expected, rel=1e-5)
    assert stats["loss_kd"] > 0 and stats["loss_attention"] > 0
    for name, p in method.teacher.named_parameters():
        assert torch.equal(p, teacher_before[name]), name  # no gradient, no optimiser step
    running = [k for k in teacher_before if k.endswith("running_mean")]
    assert any(not torch.equal(method.teacher.state_dict()[k], teacher_before[k]) for k in running)  # train mode
    assert any(not torch.equal(p, face_before[n]) for n, p in method.model.face_net.named_parameters())


def test_masked_faces_do_not_reach_the_face_losses(tiny_dataset, stores, teacher_file):
    cfg = cfg_of("deskpro", "data.missing_faces=mask", "ablation.body=false", "ablation.csa=false",
                 "ablation.attention_loss=false")
    ds = train_items(cfg, tiny_dataset, stores)
    faceless = [i for i, j in enumerate(ds.pack_index) if j % 4 == 3][:2]
    with_face = [i for i, j in enumerate(ds.pack_index) if j % 4 != 3][:4]
    images, pids = collate(ds, with_face + faceless)

    def face_stats(images):
        method = student(cfg, teacher_file)
        method.train(True)
        for m in method.model.modules():  # BN in eval: batch statistics would mix the faceless rows in
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        method.teacher.eval()
        return method.train_step(images, pids, None, None, 0, Precision(CPU, False))

    changed = dict(images, face=images["face"].clone(), face_hr=images["face_hr"].clone())
    changed["face"][4:] = torch.randn_like(changed["face"][4:])
    changed["face_hr"][4:] = torch.randn_like(changed["face_hr"][4:])
    a, b = face_stats(images), face_stats(changed)
    for key in ("loss_ce_face", "loss_triplet_face", "loss_kd"):
        assert a[key] == pytest.approx(b[key], rel=1e-5), key


@pytest.mark.parametrize("switches, present, absent", [
    (["ablation.face=false", "ablation.kd=false", "ablation.csa=false", "ablation.attention_loss=false"],
     {"loss_ce_body"}, {"loss_ce_face", "loss_attention", "loss_kd"}),            # model 1
    (["ablation.face=false", "ablation.kd=false", "ablation.attention_loss=false"],
     {"loss_ce_body"}, {"loss_attention", "loss_kd", "loss_ce_face"}),            # model 2
    (["ablation.body=false", "ablation.csa=false", "ablation.attention_loss=false", "ablation.kd=false"],
     {"loss_ce_face"}, {"loss_ce_body", "loss_kd"}),                              # model 4
    (["ablation.kd=false"], {"loss_ce_face", "loss_ce_body", "loss_attention"}, {"loss_kd"}),   # model 7
])
def test_ablation_switches_train_the_parts_they_name(tiny_dataset, stores, teacher_file, switches, present, absent):
    cfg = cfg_of("deskpro", *switches)
    method = student(cfg, teacher_file)
    images, pids = collate(train_items(cfg, tiny_dataset, stores), range(4))
    stats = method.train_step(images, pids, None, None, 0, Precision(CPU, False))
    assert present <= set(stats) and not absent & set(stats)
    net = method.feature_net()
    assert (net.face_net is not None) == cfg["ablation"]["face"]
    assert (net.attention is not None) == cfg["ablation"]["csa"]
    assert (method.teacher is not None) == False  # noqa: E712  (no kd, no DeSKPro*: no teacher loaded)


@pytest.mark.parametrize("switches, message", [
    (["ablation.body=false"], "ablation.csa needs ablation.body"),
    (["ablation.csa=false"], "ablation.attention_loss needs ablation.csa"),
    (["ablation.face=false"], "ablation.kd needs ablation.face"),
    (["test.face_stream=teacher"], "reads the faces_restored store at test time"),
    (["data.missing_faces=keep"], "data.missing_faces must be one of drop, mask"),
    (["teacher_mode=frozen"], "teacher_mode must be one of train, eval"),
])
def test_switches_that_cannot_work_together_are_named(teacher_file, switches, message):
    with pytest.raises(InputError, match=message):
        student(cfg_of("deskpro", *switches), teacher_file)


@pytest.mark.slow
def test_a_teacher_that_cannot_teach_this_run_is_refused(teacher_file):
    with pytest.raises(InputError, match="teacher knows 6 identities, this run 7"):
        student(cfg_of(), teacher_file, num_pids=7)
    with pytest.raises(InputError, match="other images"):
        student(cfg_of(), teacher_file, run={"images": "0" * 64, "lists": "x"})
    with pytest.raises(InputError, match=r"\(face_size, feats, osblock_forward\)"):
        student(cfg_of("deskpro", "data.face_size=48"), teacher_file)
    with pytest.raises(InputError, match="needs --teacher"):
        build_method(cfg_of(), 6, None, CPU, {})


def test_deskpro_star_tests_the_teacher_on_restored_faces(tiny_dataset, stores, teacher_file):
    cfg = cfg_of("deskpro", "test.face_stream=teacher", "test.stores=[faces_restored]")
    method = student(cfg, teacher_file)
    net = method.feature_net()
    assert net.face_net is method.teacher and net.body_net is method.model.body_net
    pack, st = opened(tiny_dataset, stores, "faces_restored")
    ds = method_class(cfg).test_dataset(pack, read_split(str(tiny_dataset["lists"]), "query_diff"), cfg, st, None)
    j = next(i for i, p in enumerate(ds.pack_index) if p % 4 != 3)
    restored = decode_rgb(st["faces_restored"]["restored_png"][int(ds.pack_index[j])])
    s = cfg["data"]["face_size"]
    expected = cv2.resize(restored, (s, s), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    assert np.abs(expected - (1 - expected)).mean() > 0.1  # inverted colours: the two crops are told apart
    face = ds[j][0]["face"]
    got = (face * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None])
    assert np.abs(got.permute(1, 2, 0).numpy() - expected).mean() < 0.02  # the restored face, not the crop
    for s_ in st.values():
        s_.close()


def test_evaluation_reports_all_body_and_face(tiny_dataset, stores, teacher_file):
    cfg = cfg_of()
    method = student(cfg, teacher_file)
    pack, st = opened(tiny_dataset, stores, "faces")
    metrics, extra = evaluate_protocols(method.feature_net(), pack, str(tiny_dataset["lists"]), CPU,
                                        lambda samples, video: method_class(cfg).test_dataset(pack, samples, cfg, st,
                                                                                              video))
    assert list(extra["streams"]) == ["all", "body", "face"] and metrics == extra["streams"]["all"]
    for split in extra["features"].values():
        assert split["all"].shape[1] == 2 * split["body"].shape[1] and np.isfinite(split["all"]).all()
    for s_ in st.values():
        s_.close()


def test_learning_rate_scales_with_the_global_batch():
    optim = {"lr": 6e-4, "lr_reference_batch": 20}
    assert scaled_lr(optim, 30, 1) == pytest.approx(math.sqrt(1.5) * 6e-4)
    assert scaled_lr(optim, 30, 1) == pytest.approx(7.348e-4, rel=1e-3)
    assert scaled_lr(optim, 15, 2) == scaled_lr(optim, 30, 1)
    assert scaled_lr({"lr": 6e-4, "lr_reference_batch": 0}, 30, 4) == 6e-4
    cfg = cfg_of("deskpro_teacher")
    paper = load_method_config(REPO / "config/methods/deskpro_teacher.yaml")
    assert (paper["data"]["batch_size"], paper["data"]["num_instances"], paper["data"]["sampler"]) == (30, 6,
                                                                                                      "distinct")
    assert (paper["data"]["height"], paper["data"]["width"], paper["data"]["face_size"]) == (384, 128, 224)
    assert paper["optim"]["epochs_cosine"] == 140 and paper["optim"]["min_lr_ratio"] == 0.001
    assert cfg["test"]["stores"] == ["faces_restored"]


def test_dataset_defaults_apply_before_the_scale_and_only_to_their_format():
    celeb = cfg_of("deskpro", fmt="celebreid")
    assert celeb["loss"]["kd"] == {"temperature": 5.0, "alpha": 0.7} and "dataset_defaults" not in celeb
    overridden = cfg_of("deskpro", "loss.kd.alpha=0.5", fmt="prcc")
    assert overridden["loss"]["kd"] == {"temperature": 1.0, "alpha": 0.5}


def test_the_report_lists_each_stream_after_the_method_result(tmp_path):
    from trainer.report import table

    def metrics(v):
        return {"query": "query", "gallery": "gallery", "mode": "CC", "mAP": v, "rank1": v, "rank5": v, "rank10": v,
                "rank20": v, "mINP": v, "num_valid_queries": 3}

    path = tmp_path / "metrics.json"
    path.write_text(__import__("json").dumps({
        "dataset": "synthetic", "method": "deskpro", "scale": "tiny", "protocols": {"CC": metrics(0.5)},
        "streams": {"all": {"CC": metrics(0.5)}, "body": {"CC": metrics(0.3)}, "face": {"CC": metrics(0.2)}},
        "provenance": {"config_hash": "h", "git_commit_train": "c", "seed": 1}}))
    rows = [line.split() for line in table([str(path)]).splitlines()[1:]]
    assert [(r[1], r[2], r[3]) for r in rows] == [("deskpro", "CC", "50.0"), ("deskpro[body]", "CC", "30.0"),
                                                  ("deskpro[face]", "CC", "20.0")]


def _ddp_worker(rank, world, port, lists, images, stores, teacher, out, queue):
    join_process_group_env(rank, world, port)
    torch.set_num_threads(1)
    import trainer.train as T

    captured = {}
    keep_built_method(captured)
    cfg = cfg_of("deskpro", "epochs=1", "data.missing_faces=mask")
    T.train(cfg, lists, images, out, "cpu", stores, {"teacher": teacher})
    m = captured["m"]
    queue.put((rank, torch.cat([p.detach().flatten() for p in m.model.parameters()]).numpy()))


@pytest.mark.slow
def test_ddp_on_cpu_with_gloo_trains_the_student_with_masked_faces(tmp_path, tiny_dataset, stores, teacher_file):
    """Two processes: DeSKPro's unused OSBlock convolutions (find_unused_parameters) and the masked face triplet
    gathered over ranks must not stall or diverge the replicas."""
    results = run_ranks(_ddp_worker, str(tiny_dataset["lists"]), str(tiny_dataset["images"]), stores, teacher_file,
                        tmp_path)
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)
    model = torch.load(tmp_path / "model.pt", weights_only=False)
    assert model["world_size"] == 2 and model["report"]["teacher"]["path"] == teacher_file
