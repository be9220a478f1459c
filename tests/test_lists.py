"""List files are checked where they are read: a duplicate, an out-of-range label or a path leaving the dataset
root stops pack, train and evaluate naming the line, instead of changing metrics or model sizes silently."""
import shutil

import pytest

from pipeline.listfile import read_list, read_lists, read_split
from pipeline.pack import main as pack_main
from trainer.config import load_method_config
from trainer.evaluate import main as evaluate_main
from trainer.train import main as train_main
from trainer.train import train

from .conftest import REPO


def copy_lists(tiny_dataset, tmp_path):
    lists = tmp_path / "lists"
    shutil.copytree(tiny_dataset["lists"], lists)
    return lists


def append(path, line):
    with path.open("a") as fh:
        fh.write(line + "\n")


def first_line(path):
    return path.read_text().splitlines()[0]


@pytest.mark.slow
def test_a_duplicated_gallery_line_stops_pack_train_and_evaluate(tmp_path, tiny_dataset, capsys):
    lists = copy_lists(tiny_dataset, tmp_path)
    gallery = lists / "gallery.txt"
    n = len(gallery.read_text().splitlines())
    append(gallery, first_line(gallery))
    expected = f"gallery.txt:{n + 1}: .* is listed twice \\(first on line 1\\)"
    assert pack_main(["--lists", str(lists), "--root", str(tiny_dataset["root"]), "--out", str(tmp_path / "i.h5")]) == 2
    assert "listed twice" in capsys.readouterr().err and not (tmp_path / "i.h5").exists()
    cfg = load_method_config(REPO / "config/methods/baseline.yaml", "tiny", ["epochs=1"])
    with pytest.raises(ValueError, match=expected):
        train(cfg, str(lists), str(tiny_dataset["images"]), tmp_path / "run")
    model = train(cfg, str(tiny_dataset["lists"]), str(tiny_dataset["images"]), tmp_path / "good")
    assert evaluate_main(["--model", str(model), "--lists", str(lists), "--images", str(tiny_dataset["images"]),
                          "--out", str(tmp_path / "m.json")]) == 2
    assert "listed twice" in capsys.readouterr().err and not (tmp_path / "m.json").exists()


def test_an_image_in_two_splits_is_refused(tmp_path, tiny_dataset):
    lists = copy_lists(tiny_dataset, tmp_path)
    append(lists / "query_diff.txt", first_line(lists / "gallery.txt"))
    with pytest.raises(ValueError, match="listed in both gallery.txt and query_diff.txt"):
        read_lists(lists)


@pytest.mark.parametrize("label, expected", [
    ("999", "training pids must be 0..N-1 with none skipped .* largest 999"),
    ("-1", "labels must be pid >= 0"),
])
def test_training_pids_must_be_dense_and_non_negative(tmp_path, tiny_dataset, label, expected, capsys):
    lists = copy_lists(tiny_dataset, tmp_path)
    path, _, cam, clothes = first_line(lists / "train.txt").split()
    append(lists / "train.txt", f"{path.rsplit('/', 1)[0]}/extra.jpg {label} {cam} {clothes}")
    with pytest.raises(ValueError, match=expected):
        read_split(lists, "train")
    code = train_main(["--method-config", str(REPO / "config/methods/baseline.yaml"), "--scale", "tiny", "--lists",
                       str(lists), "--images", str(tiny_dataset["images"]), "--out", str(tmp_path / "run")])
    assert code == 2 and "train.txt" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model.pt").exists()


def test_training_clothes_must_be_dense_or_all_missing(tmp_path):
    (tmp_path / "train.txt").write_text("a/1.jpg 0 0 0\na/2.jpg 1 0 5\n")
    (tmp_path / "protocol.json").write_text('{"splits": {"train": {}}, "protocols": []}')
    with pytest.raises(ValueError, match="training clothes ids must be 0..M-1 .* largest 5"):
        read_split(tmp_path, "train")
    (tmp_path / "train.txt").write_text("a/1.jpg 0 0 -1\na/2.jpg 1 0 0\n")
    with pytest.raises(ValueError, match="some training samples have clothes ids and some -1"):
        read_split(tmp_path, "train")
    (tmp_path / "train.txt").write_text("a/1.jpg 0 0 -1\na/2.jpg 1 0 -1\n")
    assert len(read_split(tmp_path, "train")) == 2


@pytest.mark.parametrize("path", ["../outside.jpg", "/etc/passwd", "a/../../b.jpg", "a//b.jpg", "./a.jpg", "C:/x.jpg"])
def test_list_paths_must_stay_inside_the_dataset_root(tmp_path, path):
    (tmp_path / "query.txt").write_text(f"ok/a.jpg 1 0 0\n{path} 1 0 0\n")
    with pytest.raises(ValueError, match=r"query.txt:2: path .* is not a plain relative path"):
        read_list(tmp_path / "query.txt")


def test_pack_refuses_a_path_leaving_the_root_before_reading_it(tmp_path, tiny_dataset, capsys):
    lists = copy_lists(tiny_dataset, tmp_path)
    secret = tmp_path / "secret.jpg"
    shutil.copy(tiny_dataset["root"] / first_line(lists / "train.txt").split()[0], secret)
    rel = "../" * (len(tiny_dataset["root"].relative_to(tmp_path.parent).parts) + 1)
    append(lists / "gallery.txt", f"{rel}{tmp_path.name}/secret.jpg 1 0 0")
    assert pack_main(["--lists", str(lists), "--root", str(tiny_dataset["root"]), "--out", str(tmp_path / "i.h5")]) == 2
    assert "gallery.txt" in capsys.readouterr().err and not (tmp_path / "i.h5").exists()


def test_frames_files_are_checked_too(tmp_path):
    (tmp_path / "query.txt").write_text("t/1 1 0 0\n")
    (tmp_path / "query.frames.txt").write_text("t/1/a.jpg 0\nt/1/a.jpg 0\n")
    with pytest.raises(ValueError, match="frames.txt:2: frame t/1/a.jpg is listed twice"):
        read_split(tmp_path, "query")
    (tmp_path / "query.frames.txt").write_text("../a.jpg 0\n")
    with pytest.raises(ValueError, match="not a plain relative path"):
        read_split(tmp_path, "query")
