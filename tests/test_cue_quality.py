"""What a merged store's outputs look like, without ground truth: the quality summary merge writes beside the found
rate (pipeline.stages.quality.cue_quality), printed in the merge log and shown in the dataset summary."""
import json

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.imagepack import ImagePack
from pipeline.stages.__main__ import main as stages_main
from pipeline.stages.backends import registered
from pipeline.stages.quality import CUE_QUALITY, ROWS_READ, cue_quality, describe
from pipeline.stages.store import Store, encode_png, encode_rgb, merge, shard_attrs, write_shard

MANIFEST = "m" * 64


def _mask(share: float, shape=(100, 50)) -> np.ndarray:
    """A 0/1 mask covering `share` of the image (whole pixels, top rows first)."""
    mask = np.zeros(shape, np.uint8)
    mask.flat[: round(share * mask.size)] = 1
    return mask


def _store(tmp_path, stage, records, manifest=MANIFEST, name="store"):
    shard = tmp_path / f"{name}.shard.h5"
    write_shard(shard, np.arange(len(records)), records, shard_attrs(stage, "x", manifest))
    out = tmp_path / f"{name}.h5"
    summary = merge([shard], out, len(records), manifest)
    return out, summary


def _quality(path):
    with Store(path, MANIFEST) as store:
        return cue_quality(store)


def _silhouettes(shares, found=None):
    found = [s > 0 for s in shares] if found is None else found
    return [{"mask_png": encode_png(_mask(s)), "area": np.float32(s), "found": np.bool_(f)}
            for s, f in zip(shares, found, strict=True)]


def test_every_stage_has_quality_measures():
    assert {stage for stage, _ in registered()} <= set(CUE_QUALITY)


def test_silhouettes_found_but_degenerate_are_counted(tmp_path):
    # 10 found: 3 cover 2 % of the image, 1 covers 99 %, 6 cover 30 %; 2 not found (not measured)
    shares = [0.02] * 3 + [0.99] + [0.3] * 6 + [0.0] * 2
    path, _ = _store(tmp_path, "silhouettes", _silhouettes(shares))
    q = _quality(path)["mask_share"]
    assert q["n"] == 10 and q["over"] == "found images" and q["unit"] == "share"
    assert q["flags"] == [{"below": 0.05, "count": 3}, {"above": 0.95, "count": 1}]
    assert q["quantiles"]["50"] == pytest.approx(0.3) and q["quantiles"]["5"] == pytest.approx(0.02)
    line = describe(q)
    assert "10 found images" in line and "3 below 5%" in line and "1 above 95%" in line and "median 30.0%" in line


def test_a_found_image_with_an_empty_mask_is_degenerate_not_missing(tmp_path):
    path, _ = _store(tmp_path, "silhouettes", _silhouettes([0.0, 0.5], found=[True, True]))
    assert _quality(path)["mask_share"]["flags"][0] == {"below": 0.05, "count": 1}


def test_parsing_and_cloth_masks_measure_their_masks(tmp_path):
    labels = [_mask(0.01) * 3, _mask(0.4) * 2, _mask(0.4)]
    path, _ = _store(tmp_path, "parsing", [{"labels_png": encode_png(m), "found": np.bool_(True)} for m in labels],
                     name="parsing")
    q = _quality(path)["foreground_share"]
    assert q["n"] == 3 and q["flags"][0]["count"] == 1 and q["quantiles"]["50"] == pytest.approx(0.4)
    cloth = [{"cloth_png": encode_png(_mask(s)), "erase_png": encode_png(_mask(0)), "body_png": encode_png(_mask(.5)),
              "merged_png": encode_png(_mask(.5)), "found": np.bool_(True)} for s in (0.0, 0.2, 0.97)]
    path, _ = _store(tmp_path, "cloth_masks", cloth, name="cloth")
    q = _quality(path)["cloth_share"]
    assert q["flags"] == [{"below": 0.05, "count": 1}, {"above": 0.95, "count": 1}]


def test_keypoints_with_few_confident_joints_are_counted(tmp_path):
    def pose(confident, score=0.9):
        kp = np.zeros((17, 3), np.float32)
        kp[:confident, 2] = score
        kp[confident:, 2] = 0.1
        return kp

    poses = [pose(17), pose(17), pose(5), pose(3), pose(0)]
    found = [True, True, True, True, False]
    path, _ = _store(tmp_path, "keypoints", [{"keypoints": k, "found": np.bool_(f)} for k, f in zip(poses, found,
                                                                                                    strict=True)])
    q = _quality(path)
    assert q["confident_joints"]["n"] == 4 and q["confident_joints"]["flags"] == [{"below": 6, "count": 2}]
    assert q["confident_joints"]["quantiles"]["50"] == pytest.approx(11)  # of 3, 5, 17, 17
    assert q["joint_score"]["n"] == 4 * 17 and q["joint_score"]["over"] == "joints of found images"
    assert "2 below 6" in describe(q["confident_joints"])


def _face(height, found=True, score=0.9):
    box = np.array([10, 20, 10 + height, 20 + height], np.float32) if found else np.full(4, np.nan, np.float32)
    return {"box": box, "landmarks": np.zeros((5, 2), np.float32), "score": np.float32(score if found else 0),
            "crop_png": encode_rgb(np.zeros((8, 8, 3), np.uint8)), "found": np.bool_(found)}


def test_tiny_face_boxes_are_counted_and_a_found_face_without_a_box_is_refused(tmp_path):
    path, _ = _store(tmp_path, "faces", [_face(h) for h in (8, 12, 40, 60, 80)] + [_face(0, found=False)])
    q = _quality(path)
    assert q["box_height"]["n"] == 5 and q["box_height"]["flags"] == [{"below": 16, "count": 2}]
    assert q["box_height"]["quantiles"]["50"] == pytest.approx(40) and "median 40 px" in describe(q["box_height"])
    assert q["score"]["quantiles"]["50"] == pytest.approx(0.9)
    broken = _face(20)
    broken["box"][:] = np.nan
    path, _ = _store(tmp_path, "faces", [broken], name="broken")
    with pytest.raises(InputError, match="broken.h5: 1 found face"):
        _quality(path)


def test_restored_faces_flat_or_unchanged_are_seen(tmp_path):
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 255, (16, 16, 3), np.uint8)
    import cv2

    upsampled = cv2.resize(lr, (32, 32), interpolation=cv2.INTER_CUBIC)
    records = [{"lr_png": encode_rgb(lr), "restored_png": encode_rgb(upsampled), "found": np.bool_(True)},
               {"lr_png": encode_rgb(lr), "restored_png": encode_rgb(np.full((32, 32, 3), 128, np.uint8)),
                "found": np.bool_(True)},
               {"lr_png": encode_rgb(lr), "restored_png": encode_rgb(np.zeros((32, 32, 3), np.uint8)),
                "found": np.bool_(False)}]
    path, _ = _store(tmp_path, "faces_restored", records)
    q = _quality(path)
    assert q["contrast"]["n"] == 2 and q["contrast"]["flags"] == [{"below": 2.0, "count": 1}]
    assert q["change"]["quantiles"]["95"] > 20
    path, _ = _store(tmp_path, "faces_restored", records[:1], name="upsampled")
    assert _quality(path)["change"]["quantiles"]["95"] < 0.5  # plain upsampling changes nothing


def test_nothing_found_gives_empty_distributions(tmp_path):
    path, _ = _store(tmp_path, "silhouettes", _silhouettes([0.0, 0.0]))
    q = _quality(path)["mask_share"]
    assert q["n"] == 0 and q["quantiles"] == {} and q["flags"][0]["count"] == 0
    assert "no found images" in describe(q)
    path, _ = _store(tmp_path, "keypoints", [], name="empty")  # a store of no images has no fields at all
    assert _quality(path) == {}


def test_merge_writes_the_summary_with_quality_and_logs_it(tiny_dataset, tmp_path, capsys):
    images = str(tiny_dataset["images"])
    pack = ImagePack(images)
    shares = [0.02, 0.99] + [0.3] * (len(pack) - 2)
    shard = tmp_path / "0.h5"
    write_shard(shard, np.arange(len(pack)), _silhouettes(shares), shard_attrs("silhouettes", "x",
                                                                                pack.manifest_sha256))
    assert stages_main(["merge", "--images", images, "--out", str(tmp_path / "s.h5"), "--summary",
                        str(tmp_path / "s.summary.json"), str(shard)]) == 0
    summary = json.loads((tmp_path / "s.summary.json").read_text())
    assert summary["found"] == len(pack)
    assert summary["quality"]["mask_share"]["flags"] == [{"below": 0.05, "count": 1}, {"above": 0.95, "count": 1}]
    out = capsys.readouterr().out
    assert "silhouettes/x: found" in out and "mask share of the image" in out and "1 below 5%" in out


def test_masks_are_read_a_span_at_a_time_and_every_row_is_measured(tmp_path):
    """More rows than one read (ROWS_READ), found rows scattered: each found row measured once, none skipped at a
    span's edge (its time: benchmarks/bench_cue_quality.py)."""
    shares = [0.1 + 0.8 * (i % 7) / 6 for i in range(3 * ROWS_READ + 5)]
    records = _silhouettes(shares)
    for i, r in enumerate(records):
        if i % 3 == 2:  # not found: no mask to measure
            r["found"] = np.bool_(False)
            r["mask_png"] = encode_png(np.zeros((4, 4), np.uint8))
    path, _ = _store(tmp_path, "silhouettes", records)
    found = [s for i, s in enumerate(shares) if i % 3 != 2]
    measure = _quality(path)["mask_share"]
    assert measure["n"] == len(found)
    assert measure["quantiles"]["50"] == pytest.approx(float(np.percentile(found, 50)), abs=0.02)
