import cv2
import numpy as np
import pytest

from pipeline.errors import InputError
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


def test_a_zero_byte_image_is_named_at_pack(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.jpg: listed image is an empty file"):
        write_pack(["empty.jpg"], tmp_path, tmp_path / "x.h5", "t", progress=False)


def _corrupt_one_image(pack_path, index: int, count: int = 300) -> None:
    """Overwrite `count` bytes in the middle of image `index`'s stored bytes, in place."""
    import h5py

    with h5py.File(pack_path, "r+") as f:
        data = f["encoded"][index].copy()
        mid = len(data) // 2
        data[mid: mid + count] = 0x5A
        f["encoded"][index] = data


def test_corrupt_bytes_inside_the_pack_are_an_error_naming_the_image(tmp_path, tiny_dataset, capsys):
    import shutil

    from pipeline.pack import main as pack_main

    copy = tmp_path / "images.h5"
    shutil.copy(tiny_dataset["images"], copy)
    _corrupt_one_image(copy, 5)
    pack = ImagePack(copy)
    pack.image(4)  # others still read
    with pytest.raises(ValueError, match=rf"image 5 \({pack.paths[5]}\) does not match its CRC-32"):
        pack.image(5)
    assert pack_main(["verify", str(copy)]) == 2
    assert "does not match its CRC-32" in capsys.readouterr().err
    assert pack_main(["verify", str(tiny_dataset["images"])]) == 0


def test_training_stops_at_a_corrupt_image(tmp_path, tiny_dataset):
    import shutil

    from trainer.config import load_method_config
    from trainer.train import train

    from .conftest import REPO

    copy = tmp_path / "images.h5"
    shutil.copy(tiny_dataset["images"], copy)
    _corrupt_one_image(copy, 0)  # the first training image
    cfg = load_method_config(REPO / "config/methods/baseline.yaml", "tiny", ["epochs=1"])
    with pytest.raises(ValueError, match="does not match its CRC-32"):
        train(cfg, str(tiny_dataset["lists"]), str(copy), tmp_path / "run")


@pytest.mark.parametrize("size", ["half", "empty"])
def test_a_truncated_pack_is_named(tmp_path, tiny_dataset, size):
    data = tiny_dataset["images"].read_bytes()
    bad = tmp_path / "images.h5"
    bad.write_bytes(data[: len(data) // 2] if size == "half" else b"")
    with pytest.raises(ValueError, match=rf"{bad}: image pack .*(truncated|empty)"):
        ImagePack(bad)


def test_a_pack_of_the_previous_format_is_refused_with_the_rebuild_command(tmp_path, tiny_dataset):
    import shutil

    import h5py

    old = tmp_path / "images.h5"
    shutil.copy(tiny_dataset["images"], old)
    with h5py.File(old, "r+") as f:
        f.attrs["format_version"] = 2  # before packs recorded their lists
        del f.attrs["lists_sha256"]
    with pytest.raises(ValueError, match="not an image pack of format version 3 .*found 2.*forcerun pack"):
        ImagePack(old)


def test_a_pack_records_the_lists_it_was_packed_from(tmp_path, tiny_dataset):
    from pipeline.pack import main

    pack = ImagePack(tiny_dataset["images"])
    pack.check_lists(tiny_dataset["lists"])
    assert main(["--lists", str(tiny_dataset["lists"]), "--root", str(tiny_dataset["root"]),
                 "--out", str(tmp_path / "images.h5")]) == 0
    again = ImagePack(tmp_path / "images.h5")
    assert again.lists_sha256 == pack.lists_sha256 and again.dataset == "tiny"
    unlisted = tmp_path / "unlisted.h5"
    write_pack(listed_paths(str(tiny_dataset["lists"])), tiny_dataset["root"], unlisted, "tiny", progress=False)
    with pytest.raises(InputError, match="packed without recording its lists"):
        ImagePack(unlisted).check_lists(tiny_dataset["lists"])


def test_a_full_disk_while_packing_is_one_line_naming_the_pack(tmp_path, tiny_dataset):
    """RLIMIT_FSIZE makes writes fail with EFBIG down the same paths as a full disk; HDF5 must not crash."""
    import subprocess
    import sys

    from .conftest import REPO

    script = ("import resource, signal, sys\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))\n"
              "from pipeline.pack import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    out = tmp_path / "images.h5"
    r = subprocess.run([sys.executable, "-c", script, "--lists", str(tiny_dataset["lists"]), "--root",
                        str(tiny_dataset["root"]), "--out", str(out)], capture_output=True, text=True, cwd=REPO,
                       timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith(f"error: {out}: File too large") and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_pack_another_process_holds_open_for_writing_is_named_as_locked_not_truncated(tmp_path, tiny_dataset):
    import subprocess
    import sys

    held = tmp_path / "images.h5"
    held.write_bytes(tiny_dataset["images"].read_bytes())
    writer = subprocess.Popen([sys.executable, "-c", "import sys, time, h5py\n"
                               f"f = h5py.File({str(held)!r}, 'a')\nprint('open', flush=True)\ntime.sleep(120)\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "open\n"
        with pytest.raises(InputError) as refused:
            ImagePack(held)
    finally:
        writer.kill()
        writer.wait()
    message = str(refused.value)
    assert message.startswith(f"{held}: image pack is locked by another process that has it open for writing")
    assert "wait for that process" in message and "truncated" not in message and "rebuild" not in message
    assert ImagePack(held).manifest_sha256  # once the writer is gone, the same file opens
