"""Fake trees in each dataset's real naming scheme; expected labels worked out independently from
the public loaders' rules (docs/datasets.md#conventions and each dataset's section)."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from pipeline.datasets import FORMATS, NO_CLOTHES, DatasetLayoutError, load, pid2clothes

from .conftest import REPO


def touch(directory: Path, names):
    directory.mkdir(parents=True, exist_ok=True)
    for n in names:
        (directory / n).touch()


def labels(samples):
    return {Path(s.path).name: (s.pid, s.camid, s.clothes_id) for s in samples}


def test_ltcc_labels_and_the_full_path_pitfall(tmp_path):
    # a parent folder whose name would fool a regex applied to the full path
    root = tmp_path / "data_cc"
    base = root / "LTCC_ReID"
    touch(base / "train", ["010_2_c3_000001.png", "010_1_c1_000002.png", "004_1_c12_000003.png"])
    touch(base / "query", ["100_3_c2_000004.png"])
    touch(base / "test", ["100_1_c5_000005.png", "100_3_c7_000006.png", "055_1_c1_000007.png"])
    data = load("ltcc", root)
    # train pids 4->0, 10->1; clothes keys sorted: '004_1'->0, '010_1'->1, '010_2'->2; camid = c - 1
    assert labels(data.train) == {"010_2_c3_000001.png": (1, 2, 2), "010_1_c1_000002.png": (1, 0, 1),
                                  "004_1_c12_000003.png": (0, 11, 0)}
    # test: raw pids; clothes over query ∪ gallery: '055_1'->0, '100_1'->1, '100_3'->2
    assert labels(data.splits["query"]) == {"100_3_c2_000004.png": (100, 1, 2)}
    assert labels(data.splits["gallery"]) == {"100_1_c5_000005.png": (100, 4, 1), "100_3_c7_000006.png": (100, 6, 2),
                                              "055_1_c1_000007.png": (55, 0, 0)}
    assert {p.name: p.mode for p in data.protocols} == {"general": "general", "CC": "CC", "SC": "SC"}


def test_vcclothes_labels_and_camera_subset_protocols(tmp_path):
    base = tmp_path / "VC-Clothes"
    touch(base / "train", ["0002-01-03-01.jpg", "0002-04-01-02.jpg", "0001-02-01-01.jpg"])
    touch(base / "query", ["0301-03-02-01.jpg"])
    touch(base / "gallery", ["0301-04-01-01.jpg", "0300-02-02-01.jpg"])
    data = load("vcclothes", tmp_path)
    # clothes key = pid string + clothes string: '000101'->0, '000201'->1, '000203'->2
    assert labels(data.train) == {"0002-01-03-01.jpg": (1, 0, 2), "0002-04-01-02.jpg": (1, 3, 1),
                                  "0001-02-01-01.jpg": (0, 1, 0)}
    # test clothes over query ∪ gallery: '030002'->0, '030101'->1, '030102'->2
    assert labels(data.splits["query"]) == {"0301-03-02-01.jpg": (301, 2, 2)}
    assert labels(data.splits["gallery"]) == {"0301-04-01-01.jpg": (301, 3, 1), "0300-02-02-01.jpg": (300, 1, 0)}
    subsets = {p.name: p.cameras for p in data.protocols}
    assert subsets["sc_cams23"] == (1, 2) and subsets["cc_cams34"] == (2, 3) and subsets["general"] is None


def test_market_drops_junk_keeps_distractors_and_has_no_clothes(tmp_path, caplog):
    base = tmp_path / "market1501" / "Market-1501-v15.09.15"
    touch(base / "bounding_box_train", ["0007_c2s1_000151_01.jpg", "0002_c1s1_000451_03.jpg"])
    touch(base / "query", ["0001_c1s1_001051_00.jpg"])
    touch(base / "bounding_box_test", ["-1_c1s1_000401_03.jpg", "0000_c6s1_000001_01.jpg", "0001_c3s1_000101_01.jpg",
                                        "Thumbs.db"])
    data = load("market1501", tmp_path)
    assert labels(data.train) == {"0007_c2s1_000151_01.jpg": (1, 1, NO_CLOTHES),
                                  "0002_c1s1_000451_03.jpg": (0, 0, NO_CLOTHES)}
    assert labels(data.splits["gallery"]) == {"0000_c6s1_000001_01.jpg": (0, 5, NO_CLOTHES),
                                              "0001_c3s1_000101_01.jpg": (1, 2, NO_CLOTHES)}
    assert not data.has_clothes
    assert "Thumbs.db: not an image, skipped" in caplog.text
    with pytest.raises(ValueError, match="no clothes labels"):
        pid2clothes(data.train)


def test_duke_layout(tmp_path):
    base = tmp_path / "dukemtmc-reid" / "DukeMTMC-reID"
    touch(base / "bounding_box_train", ["0005_c2_f0046985.jpg"])
    touch(base / "query", ["0005_c1_f0046985.jpg"])
    touch(base / "bounding_box_test", ["0005_c8_f0046985.jpg"])
    data = load("dukemtmcreid", tmp_path)
    assert labels(data.splits["gallery"]) == {"0005_c8_f0046985.jpg": (5, 7, NO_CLOTHES)}


@pytest.mark.parametrize("fmt, version, train_dir, test_dir", [
    ("msmt17", "MSMT17_V1", "train", "test"),
    ("msmt17v2", "MSMT17_V2", "mask_train_v2", "mask_test_v2"),
])
def test_msmt17_lists(tmp_path, fmt, version, train_dir, test_dir):
    base = tmp_path / "msmt17" / version
    (base / train_dir).mkdir(parents=True)
    (base / test_dir).mkdir(parents=True)
    (base / "list_train.txt").write_text("0000/0000_000_01_0303morning_0015_0.jpg 0\n"
                                         "0001/0001_004_15_0303noon_0100_1.jpg 1\n")
    (base / "list_val.txt").write_text("0000/0000_001_02_0303morning_0016_0.jpg 0\n")
    (base / "list_query.txt").write_text("0000/0000_000_05_0303morning_0015_0.jpg 0\n")
    (base / "list_gallery.txt").write_text("0000/0000_003_07_0303morning_0015_0.jpg 0\n")
    data = load(fmt, tmp_path)
    assert [(s.path, s.pid, s.camid) for s in data.train] == [
        (f"msmt17/{version}/{train_dir}/0000/0000_000_01_0303morning_0015_0.jpg", 0, 0),
        (f"msmt17/{version}/{train_dir}/0001/0001_004_15_0303noon_0100_1.jpg", 1, 14)]
    assert data.splits["query"][0].camid == 4
    assert data.splits["gallery"][0].path.startswith(f"msmt17/{version}/{test_dir}/")
    (base / "list_query.txt").write_text("broken-line\n")
    with pytest.raises(DatasetLayoutError, match="list_query.txt:1"):
        load(fmt, tmp_path)


def test_unparseable_file_name_is_named(tmp_path):
    base = tmp_path / "LTCC_ReID"
    touch(base / "train", ["not-a-name.png"])
    touch(base / "query", ["100_3_c2_000004.png"])
    touch(base / "test", ["100_1_c5_000005.png"])
    with pytest.raises(DatasetLayoutError, match="not-a-name.png"):
        load("ltcc", tmp_path)


def test_schema_lists_exactly_the_registered_formats():
    schema = yaml.safe_load((REPO / "config/schema.yaml").read_text())
    enum = schema["properties"]["datasets"]["additionalProperties"]["properties"]["format"]["enum"]
    assert sorted(enum) == FORMATS.names()


def test_camera_subset_protocol_evaluates_only_those_cameras(tmp_path):
    from trainer.features import camera_subset

    np.testing.assert_array_equal(camera_subset(np.array([0, 1, 2, 3, 2]), (1, 2)), [False, True, True, False, True])


def test_camera_subsets_survive_protocol_json(tmp_path):
    from pipeline.listfile import read_protocol, write_lists

    base = tmp_path / "VC-Clothes"
    touch(base / "train", ["0001-02-01-01.jpg"])
    touch(base / "query", ["0301-03-02-01.jpg"])
    touch(base / "gallery", ["0301-04-01-01.jpg"])
    write_lists(load("vcclothes", tmp_path), tmp_path / "lists", "vc", tmp_path)
    protocols = {p.name: p for p in read_protocol(tmp_path / "lists")["protocols"]}
    assert protocols["cc_cams34"].cameras == (2, 3) and protocols["general"].cameras is None


def test_count_check_warns_on_mismatch_and_check_cli_reports(tmp_path, capsys):
    from pipeline.datasets.__main__ import main
    from pipeline.datasets.counts import compare_counts

    base = tmp_path / "market1501" / "Market-1501-v15.09.15"
    touch(base / "bounding_box_train", ["0007_c2s1_000151_01.jpg"])
    touch(base / "query", ["0001_c1s1_001051_00.jpg"])
    touch(base / "bounding_box_test", ["0001_c3s1_000101_01.jpg"])
    warnings = compare_counts(load("market1501", tmp_path))
    assert "market1501 train: 1 images, published 12936 (torchreid)" in warnings
    assert "market1501 train: 1 ids, published 751 (torchreid)" in warnings
    assert main(["check", "--format", "market1501", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "market1501: clothes labels: none" in out and "count(s) differ" in out
    assert main(["check", "--format", "ltcc", "--root", str(tmp_path)]) == 2
    assert "LTCC_ReID" in capsys.readouterr().err
    assert main([]) == 0 and "vcclothes" in capsys.readouterr().out


@pytest.mark.parametrize("fmt, folder", [("celebreid", "Celeb-reID"), ("celebreid_light", "Celeb-reID-light")])
def test_celeb_reid_camera_from_the_first_digit_of_y(tmp_path, fmt, folder):
    base = tmp_path / folder
    touch(base / "train", ["12_3_0.jpg", "7_15_1.jpg"])
    touch(base / "query", ["900_2_0.jpg"])
    touch(base / "gallery", ["900_41_1.jpg", "901_1_0.jpg"])
    data = load(fmt, tmp_path)
    # pid x; camera = first digit of y minus 1 (the official regex ([-\d]+)_(\d))
    assert labels(data.train) == {"12_3_0.jpg": (1, 2, NO_CLOTHES), "7_15_1.jpg": (0, 0, NO_CLOTHES)}
    assert labels(data.splits["gallery"]) == {"900_41_1.jpg": (900, 3, NO_CLOTHES), "901_1_0.jpg": (901, 0, NO_CLOTHES)}
    assert not data.has_clothes and [p.mode for p in data.protocols] == ["general"]


def test_ltcc_files_of_another_format_and_broken_links_are_skipped_with_a_warning(tmp_path, caplog):
    import logging

    from pipeline.datasets import load

    base = tmp_path / "LTCC_ReID"
    for split, names in {"train": ["001_1_c1_000001.png", "002_2_c2_000002.png"],
                         "query": ["001_3_c3_000003.png"],
                         "test": ["001_1_c4_000004.png", "002_2_c5_000005.png"]}.items():
        (base / split).mkdir(parents=True)
        for n in names:
            cv2.imwrite(str(base / split / n), np.zeros((8, 4, 3), np.uint8))
    cv2.imwrite(str(base / "train" / "003_4_c1_000006.jpg"), np.zeros((8, 4, 3), np.uint8))
    (base / "train" / "004_5_c1_000007.png").symlink_to(tmp_path / "gone.png")
    (base / "test" / "005_6_c1_000008.png").symlink_to(base / "test" / "005_6_c1_000008.png")
    with caplog.at_level(logging.WARNING, logger="ccreid.datasets"):
        data = load("ltcc", tmp_path)
    assert len(data.train) == 2 and len(data.splits["gallery"]) == 2
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "003_4_c1_000006.jpg: not a *.png image" in messages
    assert "004_5_c1_000007.png: a dangling symbolic link, skipped" in messages
    assert "005_6_c1_000008.png: a symbolic link loop, skipped" in messages


def test_a_file_name_that_is_not_utf8_is_named_by_lists_and_counted_by_the_fingerprint(tmp_path, tiny_dataset, capsys,
                                                                                      caplog):
    """List files are UTF-8: an image whose name is not is refused (never dropped from its split), with its bytes
    escaped; a stray non-image under such a name is skipped as other strays are. The workflow's fingerprint of the
    raw tree must not fail on it at plan time, and must see it."""
    import logging
    import os
    import shutil

    from pipeline.lists import main as lists_main
    from pipeline.rawtree import tree_fingerprint

    root = tmp_path / "raw"
    shutil.copytree(tiny_dataset["root"], root)
    pid_dir = sorted((root / "prcc/rgb/train").iterdir())[0]
    (pid_dir / "A_notes.txt").write_text("x")
    os.rename(pid_dir / "A_notes.txt", os.fsencode(pid_dir) + b"/A_notes\xe9.txt")
    before = tree_fingerprint(root / "prcc")
    with caplog.at_level(logging.WARNING, logger="ccreid.datasets"):
        assert lists_main(["--format", "prcc", "--root", str(root), "--out", str(tmp_path / "lists"),
                           "--no-count-check"]) == 0
    assert f"{pid_dir}/A_notes\\xe9.txt: not an image, skipped" in caplog.messages
    image = sorted(pid_dir.glob("A*.jpg"))[0]
    os.rename(image, os.fsencode(pid_dir) + b"/A_caf\xe9.jpg")  # Latin-1, as a copy from an older system has it
    after = tree_fingerprint(root / "prcc")
    assert after != before and after == tree_fingerprint(root / "prcc")  # the same size and time: only the name
    assert lists_main(["--format", "prcc", "--root", str(root), "--out", str(tmp_path / "lists2"),
                       "--no-count-check"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        f"error: {pid_dir}/A_caf\\xe9.jpg: the file name is not UTF-8, which list files need; rename it "
        "(convmv converts a whole tree)")
    assert not (tmp_path / "lists2" / "protocol.json").exists()
