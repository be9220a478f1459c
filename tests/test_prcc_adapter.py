from pathlib import Path

import numpy as np
import pytest

from pipeline.datasets import DatasetLayoutError, load
from pipeline.listfile import read_list, read_protocol, write_lists
from pipeline.lists import main as lists_main


def make_tree(root: Path, train: dict, test: dict, val: dict | None = None) -> Path:
    """train/val: {pid_folder: [file names]}; test: {cam: {pid_folder: count}}. Files are empty: the adapter
    reads names only."""
    rgb = root / "prcc" / "rgb"
    for split, spec in (("train", train), ("val", val or {})):
        for pid, names in spec.items():
            (rgb / split / pid).mkdir(parents=True, exist_ok=True)
            for n in names:
                (rgb / split / pid / n).touch()
    for cam, pids in test.items():
        for pid, count in pids.items():
            d = rgb / "test" / cam / pid
            d.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                (d / f"cropped_rgb{k:03d}.jpg").touch()
    return root


TEST = {"A": {"010": 2, "007": 1}, "B": {"010": 1, "007": 2}, "C": {"010": 2, "007": 1}}


def test_labels_follow_simple_ccreid(tmp_path):
    root = make_tree(tmp_path, train={
        "005": ["A_1.jpg", "B_2.jpg", "C_3.jpg"],
        "002": ["A_1.jpg", "C_2.jpg", "C_3.jpg"],
        "012": ["B_9.jpg"],
    }, test=TEST)
    data = load("prcc", root)
    train = {s.path: (s.pid, s.camid, s.clothes_id) for s in data.train}
    # pids relabelled over sorted ints: 2->0, 5->1, 12->2; clothes keys sorted as strings:
    # '002'->0, '002C'->1, '005'->2, '005C'->3, '012'->4
    assert train["prcc/rgb/train/002/A_1.jpg"] == (0, 0, 0)
    assert train["prcc/rgb/train/002/C_2.jpg"] == (0, 2, 1)
    assert train["prcc/rgb/train/005/A_1.jpg"] == (1, 0, 2)
    assert train["prcc/rgb/train/005/B_2.jpg"] == (1, 1, 2)  # A and B share an outfit
    assert train["prcc/rgb/train/005/C_3.jpg"] == (1, 2, 3)
    assert train["prcc/rgb/train/012/B_9.jpg"] == (2, 1, 4)
    np.testing.assert_array_equal(data.pid2clothes(), [[1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]])
    # test: raw pids, label over sorted pids of A (7->0, 10->1), clothes 2*label (+1 for C)
    gallery = {(s.pid, s.camid, s.clothes_id) for s in data.splits["gallery"]}
    assert gallery == {(7, 0, 0), (10, 0, 2)}
    assert {(s.pid, s.camid, s.clothes_id) for s in data.splits["query_same"]} == {(7, 1, 0), (10, 1, 2)}
    assert {(s.pid, s.camid, s.clothes_id) for s in data.splits["query_diff"]} == {(7, 2, 1), (10, 2, 3)}
    assert len(data.splits["gallery"]) == 3 and len(data.splits["query_same"]) == 3
    assert [(p.name, p.query, p.gallery, p.mode) for p in data.protocols][:2] == [
        ("SC", "query_same", "gallery", "general"), ("CC", "query_diff", "gallery", "general")]


def test_list_files_round_trip_and_cli(tmp_path):
    root = make_tree(tmp_path / "raw", train={"001": ["A_a.jpg", "C_b.jpg"]}, test=TEST)
    out = tmp_path / "lists"
    assert lists_main(["--format", "prcc", "--root", str(root), "--out", str(out), "--name", "mini"]) == 0
    meta = read_protocol(out)
    assert meta["dataset"] == "mini" and meta["splits"]["train"]["clothes"] == 2
    assert read_list(out / "train.txt") == load("prcc", root).train
    assert (out / "query_diff.txt").read_text().splitlines()[0].split()[1:] == ["7", "2", "1"]


@pytest.mark.parametrize("breakage, message", [
    (lambda r: None, "expected PRCC's layout"),
    (lambda r: (r / "prcc/rgb/train/abc").mkdir(parents=True), "named by an integer pid"),
    (lambda r: (r / "prcc/rgb/train/001").mkdir(parents=True) or (r / "prcc/rgb/train/001/D_1.jpg").touch(),
     "camera letter"),
])
def test_bad_layouts_name_the_path(tmp_path, breakage, message):
    if message != "expected PRCC's layout":
        make_tree(tmp_path, train={"002": ["A_1.jpg"]}, test=TEST)
    breakage(tmp_path)
    with pytest.raises(DatasetLayoutError, match=message) as err:
        load("prcc", tmp_path)
    assert str(tmp_path) in str(err.value)


def test_test_pid_missing_from_gallery_is_an_error(tmp_path):
    make_tree(tmp_path, train={"002": ["A_1.jpg"]}, test={**TEST, "C": {"099": 1}})
    with pytest.raises(DatasetLayoutError, match="test pid 99 has no gallery"):
        load("prcc", tmp_path)


def test_empty_query_split_is_an_error(tmp_path):
    make_tree(tmp_path, train={"002": ["A_1.jpg"]}, test=TEST)
    for f in (tmp_path / "prcc/rgb/test/B").rglob("*.jpg"):
        f.unlink()
    with pytest.raises(DatasetLayoutError, match="query_same"):
        load("prcc", tmp_path)


def test_unknown_format_and_missing_root(tmp_path):
    with pytest.raises(DatasetLayoutError, match="unknown dataset format 'prid2011'"):
        load("prid2011", tmp_path)
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        load("prcc", tmp_path / "nope")


def test_malformed_list_line_is_reported(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("a/b.jpg 1 2 3\na/c.jpg 1 two 3\n")
    with pytest.raises(ValueError, match=r"x.txt:2"):
        read_list(p)


def test_write_lists_is_complete_before_protocol_exists(tmp_path):
    root = make_tree(tmp_path / "raw", train={"001": ["A_a.jpg"]}, test=TEST)
    meta = write_lists(load("prcc", root), tmp_path / "l", "d", root)
    for split in meta["splits"]:
        assert (tmp_path / "l" / f"{split}.txt").is_file()


def test_cli_reports_a_bad_root_in_one_line(tmp_path, capsys):
    assert lists_main(["--format", "prcc", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing" in err and "Traceback" not in err


def test_prcc_defines_the_single_shot_protocols(tmp_path):
    root = make_tree(tmp_path, train={"002": ["A_1.jpg"]}, test=TEST)
    single = {p.name: (p.query, p.single_shot_trials, p.seed)
              for p in load("prcc", root).protocols if p.single_shot_trials}
    assert single == {"SC_single_shot": ("query_same", 10, 3), "CC_single_shot": ("query_diff", 10, 3)}
