"""Preprocessing stages: the sharded store, the backends, quality against the synthetic truth, the CLI."""
import json

import cv2
import h5py
import numpy as np
import pytest

from pipeline.imagepack import ImagePack
from pipeline.stages.__main__ import main as stages_main
from pipeline.stages.__main__ import run
from pipeline.stages.backends import Item, build
from pipeline.stages.quality import iou, quality
from pipeline.stages.store import Store, decode_rgb, merge, shard_attrs, shard_indices, write_shard


@pytest.fixture(scope="module")
def pack(tiny_dataset):
    return tiny_dataset


def gt_file(tiny):
    return str(tiny["root"] / "groundtruth" / "groundtruth.h5")


def test_shards_partition_the_manifest():
    parts = [shard_indices(11, k, 3) for k in range(3)]
    assert np.array_equal(np.concatenate(parts), np.arange(11)) and all(np.all(np.diff(p) == 1) for p in parts)
    with pytest.raises(ValueError, match="shard 3 is not in 0..2"):
        shard_indices(11, 3, 3)


def _records(indices, value):
    return [{"found": np.bool_(i % 2 == 0), "score": np.float32(value + i),
             "mask_png": np.arange(i + 1, dtype=np.uint8)}
            for i in indices]


def test_merge_aligns_rows_to_the_manifest_whatever_the_shard_order(tmp_path):
    attrs = shard_attrs("silhouettes", "x", "abc")
    paths = []
    for k in (2, 0, 1):
        idx = shard_indices(7, k, 3)
        paths.append(tmp_path / f"s{k}.h5")
        write_shard(paths[-1], idx, _records(idx, 10.0), attrs)
    summary = merge(paths, tmp_path / "store.h5", 7, "abc")
    assert summary == {"stage": "silhouettes", "backend": "x", "images": 7, "found": 4, "found_rate": 4 / 7}
    with Store(tmp_path / "store.h5", "abc") as store:
        np.testing.assert_array_equal(store["score"][:], 10.0 + np.arange(7))
        assert [len(store["mask_png"][i]) for i in range(7)] == list(range(1, 8))
    with pytest.raises(ValueError, match="cover image 5 0 times"):
        merge(paths[1:], tmp_path / "partial.h5", 7, "abc")
    with pytest.raises(ValueError, match="cover image 0 2 times"):
        merge(paths + [paths[1]], tmp_path / "twice.h5", 7, "abc")
    with pytest.raises(ValueError, match="shard of another image pack"):
        merge(paths, tmp_path / "other.h5", 7, "def")
    assert not (tmp_path / "partial.h5").exists()  # nothing half-written is left behind
    with pytest.raises(ValueError, match="rerun the silhouettes stage"):
        Store(tmp_path / "store.h5", "0" * 64)


def test_backend_parameters_are_checked():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['iteration'\]"):
        build("silhouettes", "grabcut", {"iteration": 3})
    with pytest.raises(ValueError,
                       match="unknown keypoints backend 'openpose'; known: alphapose, groundtruth, mediapipe"):
        build("keypoints", "openpose")


def test_groundtruth_store_scores_perfectly_and_a_shifted_one_does_not(pack, tmp_path):
    images = str(pack["images"])
    n = len(ImagePack(images))
    for stage in ("keypoints", "silhouettes", "parsing", "faces"):
        run(stage, "groundtruth", images, 0, 1, str(tmp_path / f"{stage}.shard"), {}, gt_file(pack))
        merge([tmp_path / f"{stage}.shard"], tmp_path / f"{stage}.h5", n, ImagePack(images).manifest_sha256)
    kp = quality(str(tmp_path / "keypoints.h5"), images, gt_file(pack))
    sil = quality(str(tmp_path / "silhouettes.h5"), images, gt_file(pack))
    parsing = quality(str(tmp_path / "parsing.h5"), images, gt_file(pack))
    faces = quality(str(tmp_path / "faces.h5"), images, gt_file(pack))
    assert kp["pck@0.1"] == 1.0 and kp["found_rate"] == 1.0
    assert sil["mean_iou"] == 1.0
    assert parsing["miou"] == 1.0 and min(parsing["iou_per_class"].values()) == 1.0
    assert 0 < faces["with_face"] < n  # back views have no face: found exactly where one is visible
    assert faces["found_rate"] == 1.0 and faces["mean_box_iou"] == 1.0 and faces["false_detection_rate_back_views"] == 0
    with h5py.File(gt_file(pack)) as truth, h5py.File(tmp_path / "faces.h5") as store:
        for i in np.flatnonzero(store["found"][:])[:3]:  # the crop's middle 1/1.3 is the true face box
            x1, y1, x2, y2 = np.round(truth["face_box"][i]).astype(int)
            face = ImagePack(images).image(int(i))[y1:y2, x1:x2].reshape(-1, 3).mean(0)
            crop = decode_rgb(store["crop_png"][i])
            inset = int(crop.shape[0] * (1 - 1 / 1.3) / 2)
            middle = crop[inset:-inset, inset:-inset].reshape(-1, 3).mean(0)
            assert np.abs(middle - face).max() < 12, (i, middle, face)
    # shift every predicted joint by 30% of the person's height: none is within 10%
    with h5py.File(tmp_path / "keypoints.h5", "r+") as f:
        kps = f["keypoints"][:]
        truth = h5py.File(gt_file(pack))["parts_png"]
        for i in range(len(kps)):
            rows = np.flatnonzero((cv2.imdecode(truth[i], cv2.IMREAD_UNCHANGED) > 0).any(1))
            kps[i, :, 1] += 0.3 * (rows[-1] - rows[0] + 1)
        f["keypoints"][...] = kps
    assert quality(str(tmp_path / "keypoints.h5"), images, gt_file(pack))["pck@0.1"] == 0.0


def test_iou():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert iou(a, b) == pytest.approx(4 / 12) and iou(a, a) == 1.0


@pytest.mark.slow
def test_grabcut_finds_the_drawn_person(pack, tmp_path):
    """On synthetic crops, GrabCut seeded by true keypoints overlaps the true silhouette well."""
    images = str(pack["images"])
    p = ImagePack(images)
    n = len(p)
    run("keypoints", "groundtruth", images, 0, 1, str(tmp_path / "kp.shard"), {}, gt_file(pack))
    merge([tmp_path / "kp.shard"], tmp_path / "kp.h5", n, p.manifest_sha256)
    run("silhouettes", "grabcut", images, 0, 2, str(tmp_path / "gc0"), {"iterations": 3}, None,
        (str(tmp_path / "kp.h5"),))
    run("silhouettes", "grabcut", images, 1, 2, str(tmp_path / "gc1"), {"iterations": 3}, None,
        (str(tmp_path / "kp.h5"),))
    merge([tmp_path / "gc0", tmp_path / "gc1"], tmp_path / "gc.h5", n, p.manifest_sha256)
    result = quality(str(tmp_path / "gc.h5"), images, gt_file(pack))
    assert result["found_rate"] == 1.0 and result["mean_iou"] > 0.6
    with Store(tmp_path / "gc.h5") as store:
        assert json.loads(store.attrs["inputs"])["keypoints"]["backend"] == "groundtruth"
        assert json.loads(store.attrs["params"])["iterations"] == 3
        assert store.attrs["backend_version"].startswith("opencv")


def test_parsing_foreground_backend_reads_a_parsing_record():
    from pipeline.stages.store import encode_png

    labels = np.zeros((6, 4), np.uint8)
    labels[1:5, 1:3] = 7
    backend = build("silhouettes", "parsing")
    out = backend(np.zeros((6, 4, 3), np.uint8), Item(0, "x.jpg", {"parsing": {"labels_png": encode_png(labels),
                                                                                  "found": np.bool_(True)}}))
    assert out["found"] and out["area"] == pytest.approx(8 / 24)
    with pytest.raises(ValueError, match="needs a parsing store"):
        backend(np.zeros((6, 4, 3), np.uint8), Item(0, "x.jpg"))


def grace_hopper() -> np.ndarray:
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def grace_hopper_pose(image: np.ndarray) -> dict:
    pose = build("keypoints", "mediapipe")
    try:
        return pose(image, Item(0, "grace_hopper.jpg"))
    finally:
        pose.close()


def test_mediapipe_backends_find_a_real_person():
    """A real photo shipped in matplotlib: Grace Hopper, head and shoulders."""
    image = grace_hopper()
    h, w = image.shape[:2]
    kp = grace_hopper_pose(image)
    assert kp["found"]
    nose, left_eye, right_eye = kp["keypoints"][0], kp["keypoints"][1], kp["keypoints"][2]
    # the face is in the upper half, centred; the subject's left eye is on the image's right
    assert 0.2 * w < nose[0] < 0.8 * w and nose[1] < 0.5 * h and nose[2] > 0.5
    assert left_eye[0] > right_eye[0] and abs(left_eye[1] - right_eye[1]) < 0.1 * h
    shoulders = kp["keypoints"][5:7]
    assert (shoulders[:, 1] > nose[1]).all()
    seg = build("silhouettes", "mediapipe")
    mask = cv2.imdecode(seg(image, Item(0, "grace_hopper.jpg"))["mask_png"], cv2.IMREAD_UNCHANGED) > 0
    seg.close()
    assert mask[int(nose[1]), int(nose[0])]  # the face is inside the person mask
    assert 0.3 < mask.mean() < 0.95 and not mask[:h // 10, :w // 10].all()  # not the whole frame


def test_cli_runs_shards_merges_and_exports_alphapose_json(pack, tmp_path, capsys):
    images = str(pack["images"])
    for k in range(2):
        assert stages_main(["run", "--stage", "keypoints", "--backend", "groundtruth", "--images", images,
                            "--shard", str(k), "--num-shards", "2", "--out", str(tmp_path / f"{k}.h5"),
                            "--model-file", gt_file(pack)]) == 0
    assert stages_main(["merge", "--images", images, "--out", str(tmp_path / "kp.h5"), "--summary",
                        str(tmp_path / "kp.json"), str(tmp_path / "0.h5"), str(tmp_path / "1.h5")]) == 0
    summary = json.loads((tmp_path / "kp.json").read_text())
    assert summary["found_rate"] == 1.0 and summary["images"] == len(ImagePack(images))
    assert stages_main(["export-alphapose", "--store", str(tmp_path / "kp.h5"), "--images", images,
                        "--out", str(tmp_path / "alphapose-results.json")]) == 0
    results = json.loads((tmp_path / "alphapose-results.json").read_text())
    first = results[0]
    assert len(results) == summary["found"] and first["category_id"] == 1 and len(first["keypoints"]) == 51
    assert first["image_id"] == ImagePack(images).paths[0] and len(first["box"]) == 4


def test_missing_or_wrong_model_file_stops_before_any_work(pack, tmp_path, capsys):
    images = str(pack["images"])
    args = ["run", "--stage", "keypoints", "--backend", "groundtruth", "--images", images,
            "--out", str(tmp_path / "o.h5")]
    assert stages_main(args + ["--model-file", str(tmp_path / "fast_res50_256x192.pth")]) == 2
    assert "fast_res50_256x192.pth: model file missing" in capsys.readouterr().err
    assert stages_main(args + ["--model-file", gt_file(pack), "--sha256", "0" * 64]) == 2
    err = capsys.readouterr().err
    assert "groundtruth.h5: sha256" in err and "expected " + "0" * 64 in err
    assert not (tmp_path / "o.h5").exists()


# --- real backends with weights: official key names and shapes, random values --------------------------

def official_fastpose_keys() -> dict[str, tuple[int, ...]]:
    """Key names and shapes of AlphaPose's fast_res50_256x192.pth, written from the official
    fastpose.py / SE_Resnet.py / DUC.py (not from ccreid's module): SEResnet-50 under `preact`, a
    squeeze-excitation (Linear C->C twice) in the block that downsamples, DUC 512->1024 and 256->512,
    conv_out 128->17."""
    keys: dict[str, tuple[int, ...]] = {}

    def bn(prefix, c):
        keys.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                     f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    keys["preact.conv1.weight"] = (64, 3, 7, 7)
    bn("preact.bn1", 64)
    inplanes = 64
    for layer, (planes, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), start=1):
        for b in range(blocks):
            p = f"preact.layer{layer}.{b}"
            keys[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            bn(f"{p}.bn1", planes)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            keys[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{p}.bn3", planes * 4)
            if b == 0:
                keys[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * 4)
                for fc in (0, 2):
                    keys[f"{p}.se.fc.{fc}.weight"] = (planes * 4, planes * 4)
                    keys[f"{p}.se.fc.{fc}.bias"] = (planes * 4,)
            inplanes = planes * 4
    keys["duc1.conv.weight"] = (1024, 512, 3, 3)
    bn("duc1.bn", 1024)
    keys["duc2.conv.weight"] = (512, 256, 3, 3)
    bn("duc2.bn", 512)
    keys["conv_out.weight"], keys["conv_out.bias"] = (17, 128, 3, 3), (17,)
    return keys


def fake_checkpoint(path, keys: dict, prefix: str = "") -> None:
    import torch

    g = torch.Generator().manual_seed(0)
    state = {prefix + k: (torch.tensor(0) if s == () else torch.randn(s, generator=g) * 0.05) for k, s in keys.items()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = state[k].abs() + 1
    torch.save(state, path)


@pytest.mark.slow
def test_fastpose_loads_a_checkpoint_with_the_official_keys_and_runs(tmp_path):
    from pipeline.stages.fastpose import FastPose, load_fastpose

    keys = official_fastpose_keys()
    assert {k: tuple(v.shape) for k, v in FastPose().state_dict().items()} == keys
    # DataParallel-saved files carry 'module.'; both load
    fake_checkpoint(tmp_path / "fast_res50_256x192.pth", keys, prefix="module.")
    model = load_fastpose(tmp_path / "fast_res50_256x192.pth")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(40.6e6, rel=0.01)
    backend = build("keypoints", "alphapose", {"flip": True, "device": "cpu"}, str(tmp_path / "fast_res50_256x192.pth"))
    image = np.random.default_rng(0).integers(0, 255, (180, 70, 3), dtype=np.uint8)
    out = backend(image, Item(0, "x.jpg"))
    kp = out["keypoints"]
    assert kp.shape == (17, 3) and np.isfinite(kp).all()
    # coordinates come back in the original image's frame: the 1.25-enlarged, 4:3 box around it
    assert (kp[:, 0] > -0.6 * 180).all() and (kp[:, 0] < 70 + 0.6 * 180).all()
    assert (kp[:, 1] > -0.2 * 180).all() and (kp[:, 1] < 1.2 * 180).all()
    # batched: the network's heatmaps equal one crop at a time; and with heatmaps that have one clear peak per
    # joint (random weights give nearly flat ones, whose argmax float noise moves), each crop's keypoints decode in
    # its own box, exactly as alone
    import torch

    x = torch.randn(3, 3, 256, 192)
    with torch.no_grad():
        torch.testing.assert_close(backend.model(x), torch.cat([backend.model(x[j:j + 1]) for j in range(3)]),
                                   rtol=1e-4, atol=1e-4)

    class Peaked(torch.nn.Module):  # a stand-in network: the peak of joint k moves with the crop's brightness
        def forward(self, crops):
            hm = torch.zeros(len(crops), 17, 64, 48)
            for j, crop in enumerate(crops):
                shift = int((crop.mean() + 1) * 10) % 16
                for k in range(17):
                    hm[j, k, (3 * k + shift) % 64, (5 * k + shift) % 48] = 1.0
            return hm

    backend.model = Peaked()
    rng = np.random.default_rng(1)
    images = [(rng.integers(0, 255, shape) * dim).astype(np.uint8)  # unlike brightness: unlike peaks
              for shape, dim in (((180, 70, 3), 0.3), ((120, 50, 3), 0.6), ((200, 90, 3), 1.0))]
    items = [Item(j, f"x{j}.jpg") for j in range(len(images))]
    batched = backend.batch(images, items)
    assert len({tuple(r["keypoints"][0, :2]) for r in batched}) == 3
    for got, image, item in zip(batched, images, items, strict=True):
        np.testing.assert_array_equal(got["keypoints"], backend(image, item)["keypoints"])


def test_fastpose_refuses_another_checkpoint(tmp_path):
    from pipeline.stages.fastpose import load_fastpose

    keys = official_fastpose_keys()
    keys["conv_out.weight"], keys["conv_out.bias"] = (26, 128, 3, 3), (26,)  # Halpe-26, not COCO-17
    fake_checkpoint(tmp_path / "halpe26.pth", keys)
    with pytest.raises(ValueError, match=r"halpe26.pth: not an AlphaPose FastPose.*wrong shapes \['conv_out.bias'"):
        load_fastpose(tmp_path / "halpe26.pth")


def test_sam_runs_through_the_checkpoint_path_and_follows_keypoint_prompts(tmp_path):
    """segment-anything's own Sam at a tiny size (random weights) through the loader the official
    checkpoints use; a vit_b checkpoint's keys are the package's own."""
    import torch

    from pipeline.stages.silhouettes import load_sam, sam_architecture

    torch.manual_seed(0)
    torch.save(sam_architecture("tiny").state_dict(), tmp_path / "sam_tiny.pth")
    backend = build("silhouettes", "sam", {"model_type": "tiny", "device": "cpu"}, str(tmp_path / "sam_tiny.pth"))
    assert backend.version == "segment-anything 1.0 tiny"
    image = np.random.default_rng(1).integers(0, 255, (160, 64, 3), dtype=np.uint8)
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0], kp[:, 1], kp[:, 2] = 32, np.linspace(10, 150, 17), 0.9
    with_points = backend(image, Item(0, "x.jpg", {"keypoints": {"keypoints": kp, "found": np.bool_(True)}}))
    box_only = backend(image, Item(0, "x.jpg"))
    for out in (with_points, box_only):
        assert cv2.imdecode(out["mask_png"], cv2.IMREAD_UNCHANGED).shape == (160, 64)
    # the prompts reach the decoder: the same image with and without points gives different masks
    assert not np.array_equal(with_points["mask_png"], box_only["mask_png"])
    # a batch: one encoder pass for images of several sizes; the embeddings equal one image at a time, and so
    # do the masks (up to pixels where a logit sits at the threshold within float noise)
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 255, shape, dtype=np.uint8) for shape in ((160, 64, 3), (100, 50, 3), (128, 128, 3))]
    items = [Item(0, "a.jpg", {"keypoints": {"keypoints": kp, "found": np.bool_(True)}}), Item(1, "b.jpg"),
             Item(2, "c.jpg")]
    batched = backend.batch(images, items)
    for got, image, item in zip(batched, images, items, strict=True):
        one = backend(image, item)
        mask = cv2.imdecode(got["mask_png"], cv2.IMREAD_UNCHANGED)
        assert mask.shape == image.shape[:2]
        assert np.mean(mask == cv2.imdecode(one["mask_png"], cv2.IMREAD_UNCHANGED)) >= 0.995
    predictor = backend.predictor
    inputs = [predictor.model.preprocess(torch.as_tensor(predictor.transform.apply_image(im)).permute(2, 0, 1)[None])
              for im in images]
    with torch.no_grad():
        torch.testing.assert_close(predictor.model.image_encoder(torch.cat(inputs)),
                                   torch.cat([predictor.model.image_encoder(x) for x in inputs]), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="not a SAM vit_b checkpoint"):
        load_sam("vit_b", str(tmp_path / "sam_tiny.pth"), "cpu")
    assert "image_encoder.patch_embed.proj.weight" in sam_architecture("vit_b").state_dict()


@pytest.mark.slow
def test_grabcut_seeded_by_mediapipe_finds_a_real_person():
    image = grace_hopper()
    kp = grace_hopper_pose(image)
    out = build("silhouettes", "grabcut")(image, Item(0, "grace_hopper.jpg", {"keypoints": kp}))
    mask = cv2.imdecode(out["mask_png"], cv2.IMREAD_UNCHANGED) > 0
    nose = kp["keypoints"][0]
    assert mask[int(nose[1]), int(nose[0])] and 0.2 < mask.mean() < 0.95
