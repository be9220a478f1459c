import cv2
import numpy as np
import pytest

from pipeline.imagepack import ImagePack, write_pack
from pipeline.pack import listed_paths


def test_pack_is_bit_exact_and_indexed_by_path(tiny_dataset):
    pack = ImagePack(tiny_dataset["images"])
    paths = listed_paths(str(tiny_dataset["lists"]))
    assert pack.paths == paths
    for i in (0, len(pack) // 2, len(pack) - 1):
        raw = (tiny_dataset["root"] / pack.paths[i]).read_bytes()
        assert pack.encoded(i).tobytes() == raw
        expected = cv2.cvtColor(cv2.imread(str(tiny_dataset["root"] / pack.paths[i])), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(pack.image(i), expected)
    assert pack.indices([paths[3], paths[1]]).tolist() == [3, 1]
    with pytest.raises(ValueError, match="not in the pack"):
        pack.indices(["nope.jpg"])


def test_manifest_hash_tracks_content(tmp_path, tiny_dataset):
    root = tiny_dataset["root"]
    paths = listed_paths(str(tiny_dataset["lists"]))[:5]
    a = write_pack(paths, root, tmp_path / "a.h5", "t", progress=False)
    b = write_pack(paths[::-1], root, tmp_path / "b.h5", "t", progress=False)
    assert a != b  # the index order is part of the manifest


def test_missing_undecodable_and_duplicate_images_are_named(tmp_path, tiny_dataset):
    root = tiny_dataset["root"]
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        write_pack(["missing.jpg"], root, tmp_path / "x.h5", "t")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.jpg: not a decodable image"):
        write_pack(["bad.jpg"], tmp_path, tmp_path / "y.h5", "t")
    assert not (tmp_path / "y.h5").exists(), "no partial output is left behind"
    with pytest.raises(ValueError, match="duplicate"):
        write_pack(["a.jpg", "a.jpg"], root, tmp_path / "z.h5", "t")
