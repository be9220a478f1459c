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
from pipeline.stages.store import Store, merge, shard_indices, write_shard


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
    return [{"found": np.bool_(i % 2 == 0), "score": np.float32(value + i), "mask_png": np.arange(i + 1, dtype=np.uint8)}
            for i in indices]


def test_merge_aligns_rows_to_the_manifest_whatever_the_shard_order(tmp_path):
    attrs = {"stage": "silhouettes", "backend": "x", "params": "{}", "manifest_sha256": "abc"}
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
    with pytest.raises(ValueError, match="unknown keypoints backend 'openpose'; available: alphapose|groundtruth"):
        build("keypoints", "openpose")


def test_groundtruth_store_scores_perfectly_and_a_shifted_one_does_not(pack, tmp_path):
    images = str(pack["images"])
    n = len(ImagePack(images))
    for stage in ("keypoints", "silhouettes"):
        run(stage, "groundtruth", images, 0, 1, str(tmp_path / f"{stage}.shard"), {}, gt_file(pack))
        merge([tmp_path / f"{stage}.shard"], tmp_path / f"{stage}.h5", n, ImagePack(images).manifest_sha256)
    kp = quality(str(tmp_path / "keypoints.h5"), images, gt_file(pack))
    sil = quality(str(tmp_path / "silhouettes.h5"), images, gt_file(pack))
    assert kp["pck@0.1"] == 1.0 and kp["found_rate"] == 1.0
    assert sil["mean_iou"] == 1.0
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


def test_grabcut_finds_the_drawn_person(pack, tmp_path):
    """On synthetic crops, GrabCut seeded by true keypoints overlaps the true silhouette well."""
    images = str(pack["images"])
    p = ImagePack(images)
    n = len(p)
    run("keypoints", "groundtruth", images, 0, 1, str(tmp_path / "kp.shard"), {}, gt_file(pack))
    merge([tmp_path / "kp.shard"], tmp_path / "kp.h5", n, p.manifest_sha256)
    run("silhouettes", "grabcut", images, 0, 2, str(tmp_path / "gc0"), {"iterations": 3}, None, (str(tmp_path / "kp.h5"),))
    run("silhouettes", "grabcut", images, 1, 2, str(tmp_path / "gc1"), {"iterations": 3}, None, (str(tmp_path / "kp.h5"),))
    merge([tmp_path / "gc0", tmp_path / "gc1"], tmp_path / "gc.h5", n, p.manifest_sha256)
    result = quality(str(tmp_path / "gc.h5"), images, gt_file(pack))
    assert result["found_rate"] == 1.0 and result["mean_iou"] > 0.6
    with Store(tmp_path / "gc.h5") as store:
        assert json.loads(store.attrs["inputs"])["keypoints"]["backend"] == "groundtruth"
        assert json.loads(store.attrs["params"])["iterations"] == 3 and store.attrs["backend_version"].startswith("opencv")


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


def test_mediapipe_backends_find_a_real_person():
    """A real photo shipped in matplotlib: Grace Hopper, head and shoulders."""
    image = grace_hopper()
    h, w = image.shape[:2]
    pose = build("keypoints", "mediapipe")
    kp = pose(image, Item(0, "grace_hopper.jpg"))
    pose.close()
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
    args = ["run", "--stage", "keypoints", "--backend", "groundtruth", "--images", images, "--out", str(tmp_path / "o.h5")]
    assert stages_main(args + ["--model-file", str(tmp_path / "fast_res50_256x192.pth")]) == 2
    assert "fast_res50_256x192.pth: model file missing" in capsys.readouterr().err
    assert stages_main(args + ["--model-file", gt_file(pack), "--sha256", "0" * 64]) == 2
    err = capsys.readouterr().err
    assert "groundtruth.h5: sha256" in err and "expected " + "0" * 64 in err
    assert not (tmp_path / "o.h5").exists()
