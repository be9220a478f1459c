"""CCVID video: tracklet lists, clip construction (worked examples from docs/protocols.md#ccvid-clips),
clip-averaged features, and a tiny video dataset trained and evaluated end to end."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.datasets import DatasetLayoutError, load
from pipeline.imagepack import ImagePack
from pipeline.listfile import read_protocol, read_split, write_lists
from pipeline.pack import listed_paths
from trainer.clips import dense_chunks, evaluation_clips, random_crop
from trainer.features import average_by_owner
from trainer.models import FeatureNet
from trainer.transforms import TrainTransform


def test_clips_of_exactly_one_block():
    # L = 64 = seq_len·stride: four interleaved clips, every 4th frame from offsets 0..3
    assert evaluation_clips(64, 16) == [list(range(j, 64, 4)) for j in range(4)]
    # CCVID's own setting, seq_len 8: two blocks of 32 frames, four clips each
    assert evaluation_clips(64) == [list(range(b + j, b + 32, 4)) for b in (0, 32) for j in range(4)]


def test_ccvid_setting_with_a_loop_padded_tail():
    clips = evaluation_clips(100)  # seq_len 8, stride 4: blocks of 32
    assert clips[:12] == [list(range(b + j, b + 32, 4)) for b in (0, 32, 64) for j in range(4)]
    assert clips[12] == [96, 97, 98, 99] * 2 and len(clips) == 13  # ceil(100 / 8); R = 4 < 8 gives no reduced clip


def test_clips_with_remainder_and_loop_padded_tail():
    clips = evaluation_clips(100, 16)
    assert clips[:4] == [list(range(j, 64, 4)) for j in range(4)]
    # R = 36 -> reduced stride 36 // 16 = 2: frames 64..95 in two interleaved clips
    assert clips[4] == list(range(64, 96, 2)) and clips[5] == list(range(65, 96, 2))
    # 100 mod 16 = 4 frames left (96..99), repeated cyclically to 16
    assert clips[6] == [96, 97, 98, 99] * 4
    assert len(clips) == 7  # ceil(100 / 16)


def test_short_tracklets():
    assert evaluation_clips(10, 16) == [list(range(10)) + list(range(6))]
    assert evaluation_clips(32, 16) == [list(range(0, 32, 2)), list(range(1, 32, 2))]
    assert evaluation_clips(16, 16) == [list(range(16))]


@pytest.mark.parametrize("length", range(1, 260))
@pytest.mark.parametrize("seq_len", [8, 16])
def test_clip_count_and_coverage(length, seq_len):
    clips = evaluation_clips(length, seq_len)
    assert len(clips) == -(-length // seq_len) and all(len(c) == seq_len for c in clips)
    assert set().union(*map(set, clips)) == set(range(length))  # every frame is used


def test_dense_chunks_for_training():
    assert dense_chunks(200, 64) == [range(0, 64), range(64, 128), range(128, 200)]  # last keeps the remainder
    assert dense_chunks(128, 64) == [range(0, 64), range(64, 128)]
    assert dense_chunks(50, 64) == [range(0, 50)]  # shorter than a chunk: whole
    assert dense_chunks(200, 0) == [range(0, 200)]  # dense sampling off


def test_random_crop_modes():
    g = torch.Generator().manual_seed(0)
    begins = set()
    for _ in range(300):
        crop = random_crop(40, 8, 4, g)  # 40 >= 8·4: a window of every 4th frame
        assert np.all(np.diff(crop) == 4) and crop[-1] <= 39
        begins.add(crop[0])
    assert begins == set(range(12))  # begin uniform over 0..40-28-1
    for _ in range(50):
        crop = random_crop(20, 8, 4, g)  # 8 segments of 20 // 8 = 2 frames, one from each
        assert all(2 * i <= f <= 2 * i + 1 for i, f in enumerate(crop))
        crop = random_crop(5, 8, 4, g)  # fewer frames than the clip: draws with replacement, sorted
        assert len(crop) == 8 and crop == sorted(crop) and max(crop) <= 4


def test_video_feature_is_the_normalised_mean_of_unnormalised_clip_features():
    clips = np.array([[10.0, 0.0], [0.0, 1.0], [0.0, 2.0]], np.float32)
    out = average_by_owner(clips, np.array([0, 0, 1]), 2)
    expected = np.array([5.0, 0.5]) / np.hypot(5.0, 0.5)  # normalising each clip first would give 45°
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)
    np.testing.assert_allclose(out[1], [0.0, 1.0])
    with pytest.raises(ValueError, match="tracklet 2 has no clip"):
        average_by_owner(clips, np.array([0, 0, 1]), 3)


def test_clip_model_averages_frame_features_over_time():
    torch.manual_seed(0)
    net = FeatureNet("resnet18", "none", 1, "max").eval()
    frames = torch.randn(5, 3, 64, 32)
    with torch.no_grad():
        clip = net(frames[None])
        manual = net.bn(net.pool(net.trunk(frames)).flatten(1).mean(0, keepdim=True))
        still = net(frames[:1].expand(4, -1, -1, -1)[None])  # a clip of one repeated image = that image
        image = net(frames[:1])
    torch.testing.assert_close(clip, manual)
    torch.testing.assert_close(still, image)


def test_clip_augmentation_draws_once_for_all_frames():
    torch.manual_seed(3)
    frame = np.random.default_rng(0).integers(0, 255, (40, 20, 3), dtype=np.uint8)
    out = TrainTransform(32, 16, crop_p=0.5, flip_p=0.5, erase_p=1.0)([frame] * 4)
    assert out.shape == (4, 3, 32, 16)
    for t in range(1, 4):  # per-frame draws would erase different rectangles
        torch.testing.assert_close(out[t], out[0])


# --- the adapter and the whole chain on a fake CCVID --------------------------------------------------

def write_frames(folder: Path, count: int, colour) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sum(map(ord, str(folder))) % 2**32)
    for i in range(count):
        img = np.clip(np.array(colour, float) + rng.normal(0, 20, (24, 12, 3)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{i + 1:05d}.jpg"), img)


def ccvid_tree(root: Path, frames: int = 12) -> Path:
    """4 training ids x 2 outfits (session1/2), 3 test ids seen in two outfits; session3 adds 12 to the camid."""
    base = root / "CCVID"
    lines = {"train": [], "query": [], "gallery": []}
    for pid in (3, 1, 10, 2):
        for walk, (session, outfit) in enumerate((("session1", "u1_l1"), ("session2", "u2_l1")), start=1):
            write_frames(base / session / f"{pid:03d}_{walk:02d}", frames, (pid * 20, walk * 60, 90))
            lines["train"].append(f"{session}/{pid:03d}_{walk:02d} {pid:03d} {outfit}")
    for pid in (101, 102, 103):
        write_frames(base / "session3" / f"{pid:03d}_01", 20, (pid - 60, 40, 200))
        write_frames(base / "session3" / f"{pid:03d}_02", 20, (pid - 60, 40, 210))
        write_frames(base / "session1" / f"{pid:03d}_03", 20, (pid - 60, 160, 30))
        lines["query"].append(f"session3/{pid:03d}_01 {pid:03d} u1_l1")
        lines["gallery"] += [f"session3/{pid:03d}_02 {pid:03d} u1_l1", f"session1/{pid:03d}_03 {pid:03d} u5_l2"]
    for split, entries in lines.items():
        (base / f"{split}.txt").write_text("".join(e + "\n" for e in entries))
    return base


def test_ccvid_tracklet_labels(tmp_path):
    ccvid_tree(tmp_path)
    data = load("ccvid", tmp_path)
    train = {s.path: (s.pid, s.camid, s.clothes_id) for s in data.train}
    # pid strings sorted '001','002','003','010' -> 0..3; clothes '<pid>_<label>' sorted over train
    assert train["CCVID/session1/010_01"] == (3, 1, 6) and train["CCVID/session2/010_02"] == (3, 2, 7)
    assert train["CCVID/session1/001_01"] == (0, 1, 0) and train["CCVID/session2/003_02"] == (2, 2, 5)
    # test: raw pids, camid = walk index (+12 in session3), clothes over query ∪ gallery
    # keys sorted: 101_u1_l1, 101_u5_l2, 102_u1_l1, 102_u5_l2, 103_u1_l1, 103_u5_l2
    query = {s.path: (s.pid, s.camid, s.clothes_id) for s in data.splits["query"]}
    gallery = {s.path: (s.pid, s.camid, s.clothes_id) for s in data.splits["gallery"]}
    assert query["CCVID/session3/102_01"] == (102, 13, 2)
    assert gallery["CCVID/session3/102_02"] == (102, 14, 2) and gallery["CCVID/session1/102_03"] == (102, 3, 3)
    first = data.train[0]
    assert first.frames[0] == f"{first.path}/00001.jpg" and len(first.frames) == 12
    assert data.summary()["gallery"] == {"ids": 3, "images": 120, "clothes": 6, "cameras": 2, "tracklets": 6}
    assert data.video == {"seq_len": 8, "stride": 4}  # Simple-CCReID passes AUG.SEQ_LEN = 8


def test_ccvid_errors_name_the_line(tmp_path):
    base = ccvid_tree(tmp_path)
    (base / "query.txt").write_text("session3/101_01 101\n")
    with pytest.raises(DatasetLayoutError, match=r"query.txt:1"):
        load("ccvid", tmp_path)
    (base / "query.txt").write_text("session9/101_01 101 u1\n")
    with pytest.raises(DatasetLayoutError,
                       match=r"session9/101_01: expected the tracklet folder named in .*query.txt:1"):
        load("ccvid", tmp_path)


def test_tracklet_lists_round_trip_and_pack_every_frame(tmp_path):
    ccvid_tree(tmp_path)
    data = load("ccvid", tmp_path)
    write_lists(data, tmp_path / "lists", "ccvid", tmp_path)
    assert (tmp_path / "lists" / "train.frames.txt").read_text().splitlines()[0] == "CCVID/session1/003_01/00001.jpg 0"
    assert read_split(tmp_path / "lists", "gallery") == data.splits["gallery"]
    assert read_protocol(tmp_path / "lists")["video"] == {"seq_len": 8, "stride": 4}
    assert len(listed_paths(str(tmp_path / "lists"))) == 8 * 12 + 9 * 20
    (tmp_path / "lists" / "query.frames.txt").write_text("CCVID/session3/101_01/00001.jpg 7\n")
    with pytest.raises(ValueError, match="query.frames.txt:1"):
        read_split(tmp_path / "lists", "query")


@pytest.mark.slow
def test_video_dataset_trains_and_evaluates_end_to_end(tmp_path):
    from trainer.config import load_method_config
    from trainer.evaluate import main as evaluate_main
    from trainer.train import train

    from .conftest import REPO

    ccvid_tree(tmp_path / "raw")
    lists = tmp_path / "lists"
    write_lists(load("ccvid", tmp_path / "raw"), lists, "ccvid", tmp_path / "raw")
    from pipeline.pack import main as pack_main

    assert pack_main(["--lists", str(lists), "--root", str(tmp_path / "raw"),
                      "--out", str(tmp_path / "images.h5")]) == 0
    assert len(ImagePack(tmp_path / "images.h5")) == 8 * 12 + 9 * 20
    cfg = load_method_config(REPO / "config/methods/cal.yaml", "tiny",
                             ["model.pooling=max", "data.video.seq_len=4", "data.video.dense_step=8"])
    model = train(cfg, str(lists), str(tmp_path / "images.h5"), tmp_path / "out", "cpu")
    assert evaluate_main(["--model", str(model), "--lists", str(lists), "--images", str(tmp_path / "images.h5"),
                          "--out", str(tmp_path / "metrics.json"), "--device", "cpu"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())["protocols"]
    assert set(metrics) == {"general", "CC", "SC"}
    # one query tracklet per id; the CC protocol keeps only the other-outfit gallery tracklet as a match
    assert metrics["general"]["num_valid_queries"] == 3 and metrics["CC"]["num_valid_queries"] == 3
    import h5py

    with h5py.File(tmp_path / "features.h5") as f:
        assert f["gallery/features"].shape == (6, 512)
        np.testing.assert_allclose(np.linalg.norm(f["gallery/features"][:], axis=1), 1.0, rtol=1e-5)
        assert f["gallery/path"][0].decode().startswith("CCVID/session") and "pack_index" not in f["gallery"]
