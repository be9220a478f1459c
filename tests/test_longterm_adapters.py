"""DeepChange, LaST and NKUP: fake trees in each dataset's naming scheme, labels worked out by hand from
Simple-CCReID's deepchange.py and last.py (docs/datasets.md#deepchange, docs/datasets.md#last) and the NKUP authors'
README / issue #2 (nkicsl/NKUP-dataset; docs/datasets.md#nkup)."""
from pathlib import Path

import numpy as np
import pytest

from pipeline.datasets import NO_CLOTHES, DatasetLayoutError, load, pid2clothes
from pipeline.datasets.counts import compare_counts
from trainer.evaluation import evaluate

from .test_adapters import labels, touch


def deepchange_tree(root: Path, lines: dict[str, list[str]]) -> Path:
    base = root / "DeepChangeDataset"
    for folder, entries in lines.items():
        touch(base / folder, [e.split(",")[0] for e in entries])
        (base / f"{folder}-bbox.txt").write_text("".join(e + "\n" for e in entries))
    return base


DEEPCHANGE = {
    "train-set": ["P00012_C03_20200715_10_0001_0001.jpg,5", "P00012_C07_20200901_14_0002_0001.jpg,6",
                  "P00003_C01_20200715_09_0003_0001.jpg,7"],
    "val-set-query": ["P00200_C01_20201010_08_0001_0001.jpg,1"],
    "val-set-gallery": ["P00200_C04_20201111_08_0001_0001.jpg,2"],
    "test-set-query": ["P00100_C02_20210101_08_0001_0001.jpg,40"],
    "test-set-gallery": ["P00100_C02_20210301_08_0002_0001.jpg,41", "P00100_C05_20210101_12_0003_0001.jpg,42",
                         "P00090_C01_20210101_08_0001_0001.jpg,43"],
}


def test_deepchange_labels_day_clothes_and_tracklet_cameras(tmp_path):
    deepchange_tree(tmp_path, DEEPCHANGE)
    data = load("deepchange", tmp_path)
    # train pids 3->0, 12->1; clothes keys P<pid>+<day> sorted: P0000320200715, P0001220200715, P0001220200901;
    # camid = the tracklet id of the list line
    assert labels(data.train) == {"P00012_C03_20200715_10_0001_0001.jpg": (1, 5, 1),
                                  "P00012_C07_20200901_14_0002_0001.jpg": (1, 6, 2),
                                  "P00003_C01_20200715_09_0003_0001.jpg": (0, 7, 0)}
    # test: raw pids; clothes over query ∪ gallery: P0009020210101, P0010020210101, P0010020210301
    assert labels(data.splits["query"]) == {"P00100_C02_20210101_08_0001_0001.jpg": (100, 40, 1)}
    assert labels(data.splits["gallery"]) == {"P00100_C02_20210301_08_0002_0001.jpg": (100, 41, 2),
                                              "P00100_C05_20210101_12_0003_0001.jpg": (100, 42, 1),
                                              "P00090_C01_20210101_08_0001_0001.jpg": (90, 43, 0)}
    # val relabels its own clothes over val query ∪ val gallery
    assert labels(data.splits["val_query"]) == {"P00200_C01_20201010_08_0001_0001.jpg": (200, 1, 0)}
    assert labels(data.splits["val_gallery"]) == {"P00200_C04_20201111_08_0001_0001.jpg": (200, 2, 1)}
    assert data.splits["train"][0].path == "DeepChangeDataset/train-set/P00012_C03_20200715_10_0001_0001.jpg"
    assert [p.name for p in data.protocols] == ["general"] and "day" in data.clothes_labels
    np.testing.assert_array_equal(pid2clothes(data.train), [[1, 0, 0], [0, 1, 1]])

    # the tracklet rule: the gallery image from the query's own camera C02 (another tracklet) is a true match
    q, g = data.splits["query"], data.splits["gallery"]
    dist = np.array([[0.1, 0.5, 0.9]])  # nearest: same camera C02, tracklet 41
    result = evaluate(dist, [s.pid for s in q], [s.pid for s in g], [s.camid for s in q], [s.camid for s in g])
    assert result["num_valid"] == 1 and result["cmc"][0] == 1.0 and result["mAP"] == pytest.approx(1.0)


def test_deepchange_errors_name_the_line_or_the_missing_image(tmp_path):
    base = deepchange_tree(tmp_path, DEEPCHANGE)
    (base / "test-set-gallery" / "P00090_C01_20210101_08_0001_0001.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match="P00090_C01_20210101_08_0001_0001.jpg: listed in .*missing"):
        load("deepchange", tmp_path)
    deepchange_tree(tmp_path, {**DEEPCHANGE, "test-set-query": ["garbage-without-tracklet"]})
    with pytest.raises(DatasetLayoutError, match=r"test-set-query-bbox.txt:1"):
        load("deepchange", tmp_path)


def test_duplicate_image_across_splits_is_an_error_naming_it(tmp_path):
    # the same image listed in both test query and gallery would match itself
    dup = "P00100_C02_20210101_08_0001_0001.jpg,40"
    deepchange_tree(tmp_path, {**DEEPCHANGE, "test-set-gallery": DEEPCHANGE["test-set-gallery"] + [dup]})
    # the gallery's copy of the file lives in its own folder, so the paths differ: not a duplicate
    load("deepchange", tmp_path)
    base = tmp_path / "DeepChangeDataset"
    (base / "test-set-gallery-bbox.txt").write_text("".join(e + "\n" for e in DEEPCHANGE["test-set-gallery"] * 2))
    with pytest.raises(DatasetLayoutError, match="P00100_C02_20210301_08_0002_0001.jpg: listed twice in gallery"):
        load("deepchange", tmp_path)


def last_tree(root: Path) -> None:
    base = root / "last"
    touch(base / "train" / "000010", ["000010_c1_0001_0.jpg", "000010_c2_0002_1.jpg"])
    touch(base / "train" / "000002", ["000002_c1_0003_0.jpg"])
    touch(base / "val" / "query", ["000500_c1_0001_0.jpg"])
    touch(base / "val" / "gallery" / "000500", ["000500_c2_0002_0.jpg"])
    touch(base / "val" / "gallery" / "000501", ["000501_c2_0003_0.jpg"])
    touch(base / "test" / "query", ["000901_c1_0001_0.jpg", "000900_c1_0001_0.jpg"])
    touch(base / "test" / "gallery" / "000902", ["000902_c3_0003_1.jpg"])
    touch(base / "test" / "gallery" / "000900", ["000900_c2_0002_3.jpg"])


def test_last_labels_unique_cameras_and_no_invented_test_clothes(tmp_path):
    # a root whose name contains 'query' would make Simple-CCReID's `'query' in dir_path` read train flat
    root = tmp_path / "query_datasets"
    last_tree(root)
    data = load("last", root)
    # train, in sorted relative-path order: 000002/..., 000010/..._0, 000010/..._1; pids 2->0, 10->1;
    # clothes keys '<pid>_<last field>' sorted: 000002_0, 000010_0, 000010_1; camid = running index
    assert labels(data.train) == {"000002_c1_0003_0.jpg": (0, 0, 0), "000010_c1_0001_0.jpg": (1, 1, 1),
                                  "000010_c2_0002_1.jpg": (1, 2, 2)}
    # test: raw pids; query camids 0..Nq-1 in sorted order, gallery Nq..; no clothes labels
    assert labels(data.splits["query"]) == {"000900_c1_0001_0.jpg": (900, 0, NO_CLOTHES),
                                            "000901_c1_0001_0.jpg": (901, 1, NO_CLOTHES)}
    assert labels(data.splits["gallery"]) == {"000900_c2_0002_3.jpg": (900, 2, NO_CLOTHES),
                                              "000902_c3_0003_1.jpg": (902, 3, NO_CLOTHES)}
    assert labels(data.splits["val_gallery"]) == {"000500_c2_0002_0.jpg": (500, 1, NO_CLOTHES),
                                                  "000501_c2_0003_0.jpg": (501, 2, NO_CLOTHES)}
    assert data.has_clothes and pid2clothes(data.train).shape == (2, 3)
    summary = data.summary()
    assert summary["query"]["clothes"] == 0 and summary["train"]["clothes"] == 3


def nkup_tree(root: Path) -> None:
    base = root / "NKUP"
    touch(base / "bounding_box_train", ["0005_D0912_C03S01_00151.jpg", "0005_D1020_C11S02_00020.jpg",
                                        "0002_D0912_C01S01_00001.jpg"])
    touch(base / "query", ["0040_D1101_C02S01_00010.jpg"])
    touch(base / "bounding_box_test", ["0040_D0920_C05S03_00500.jpg", "0041_D0920_C02S01_00001.jpg"])


def test_nkup_labels_day_clothes_and_camera_from_the_c_field(tmp_path):
    nkup_tree(tmp_path)
    data = load("nkup", tmp_path)
    # pids 2->0, 5->1; clothes keys '<pid>_<day>' sorted: 0002_0912, 0005_0912, 0005_1020; camera C<nn> - 1
    assert labels(data.train) == {"0005_D0912_C03S01_00151.jpg": (1, 2, 1), "0005_D1020_C11S02_00020.jpg": (1, 10, 2),
                                  "0002_D0912_C01S01_00001.jpg": (0, 0, 0)}
    # test clothes over query ∪ gallery: 0040_0920, 0040_1101, 0041_0920
    assert labels(data.splits["query"]) == {"0040_D1101_C02S01_00010.jpg": (40, 1, 1)}
    assert labels(data.splits["gallery"]) == {"0040_D0920_C05S03_00500.jpg": (40, 4, 0),
                                              "0041_D0920_C02S01_00001.jpg": (41, 1, 2)}
    assert "day" in data.clothes_labels
    # the published counts (README: 40 ids / 5,336 train images) are compared
    assert any("nkup train: 3 images, published 5336" in w for w in compare_counts(data))
    touch(tmp_path / "NKUP" / "query", ["0040_1101_C02_00011.jpg"])
    with pytest.raises(DatasetLayoutError, match="0040_1101_C02_00011.jpg"):
        load("nkup", tmp_path)


def test_msmt17_published_train_count_includes_val(tmp_path):
    """torchreid's 32,621 training images are list_train + list_val: the check sums the two."""
    from pipeline.datasets.base import DatasetSplits, Sample

    train = [Sample(f"t{i}", i % 1041, 0, NO_CLOTHES) for i in range(30248)]
    val = [Sample(f"v{i}", i % 1041, 0, NO_CLOTHES) for i in range(2373)]
    query = [Sample(f"q{i}", 0, 0, NO_CLOTHES) for i in range(11659)]
    gallery = [Sample(f"g{i}", 0, 0, NO_CLOTHES) for i in range(82161)]
    data = DatasetSplits("msmt17", {"train": train, "val": val, "query": query, "gallery": gallery}, [], False)
    assert compare_counts(data) == []
    data.splits["val"] = val[:-1]
    assert compare_counts(data) == ["msmt17 train+val: 32620 images, published 32621 (torchreid)"]


def test_lists_cli_saves_the_summary_with_count_warnings(tmp_path, capsys):
    from pipeline.lists import main as lists_main

    nkup_tree(tmp_path / "raw")
    assert lists_main(["--format", "nkup", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "lists")]) == 0
    saved = (tmp_path / "lists" / "summary.txt").read_text()
    assert saved == capsys.readouterr().out
    assert "query                 1        1        1        1" in saved
    assert "clothes labels: approximated by (identity, recording day)" in saved
    assert "warning: nkup train: 3 images, published 5336 (official README)" in saved
