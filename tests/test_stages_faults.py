"""Preprocessing stages under bad input: wrong parameters, a backend that finds nothing, a full disk,
truncated or foreign HDF5 files, unmerged shards given as stores, and broken weights files."""
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import cv2
import h5py
import numpy as np
import pytest
import yaml

from pipeline.errors import InputError
from pipeline.imagepack import ImagePack
from pipeline.stages.__main__ import main as stages_main
from pipeline.stages.__main__ import run
from pipeline.stages.backends import Item, build, check_params, registered
from pipeline.stages.store import Store, decode_png, merge, shard_indices

from .conftest import REPO
from .test_stages import gt_file


def cli(argv: list) -> int:
    return stages_main([str(a) for a in argv])


def one_line_error(capsys, rc: int, *parts) -> str:
    """The CLI stopped with exit 2 and exactly one `error:` line naming every part; returns the line."""
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for part in parts:
        assert str(part) in lines[0], (part, lines[0])
    return lines[0]


def truncate(src, dst):
    """A copy of src cut to half its bytes, as a killed copy or download leaves it."""
    data = open(src, "rb").read()
    with open(dst, "wb") as f:
        f.write(data[: len(data) // 2])
    return dst


@pytest.fixture(scope="module")
def kp(tiny_dataset, tmp_path_factory):
    """The groundtruth keypoints of the tiny dataset: its two shards and the merged store."""
    tmp = tmp_path_factory.mktemp("faults")
    images = str(tiny_dataset["images"])
    pack = ImagePack(images)
    shards = [tmp / f"{k}-of-2.h5" for k in range(2)]
    for k, shard in enumerate(shards):
        run("keypoints", "groundtruth", images, k, 2, str(shard), {}, gt_file(tiny_dataset))
    merge(shards, tmp / "keypoints.h5", len(pack), pack.manifest_sha256)
    return {"shards": shards, "store": tmp / "keypoints.h5", "images": images, "gt": gt_file(tiny_dataset)}


# --- 1. backend parameters ---------------------------------------------------------------------------

@pytest.mark.parametrize("stage, backend, params, expected", [
    ("silhouettes", "grabcut", {"iterations": "five"},
     "parameter 'iterations' is 'five' (a string); expected an integer >= 1"),
    ("silhouettes", "grabcut", {"iterations": True},
     "parameter 'iterations' is True (true/false); expected an integer"),
    ("silhouettes", "grabcut", {"iterations": 2.0}, "parameter 'iterations' is 2.0 (a number); expected an integer"),
    ("silhouettes", "grabcut", {"iterations": 0}, "parameter 'iterations' is 0; expected an integer >= 1"),
    ("silhouettes", "grabcut", {"margin": 0.5}, "parameter 'margin' is 0.5; expected a finite number in [0, 0.5)"),
    ("silhouettes", "grabcut", {"margin": float("nan")}, "parameter 'margin' is nan (a number); expected a finite"),
    ("silhouettes", "grabcut", {"margin": None}, "parameter 'margin' is None (a NoneType)"),
    ("silhouettes", "grabcut", {"seed_keypoints": "yes"},
     "parameter 'seed_keypoints' is 'yes' (a string); expected true/false"),
    ("silhouettes", "grabcut", {"seed_keypoints": 1},
     "parameter 'seed_keypoints' is 1 (an integer); expected true/false"),
    ("silhouettes", "grabcut", {"min_score": 1.5}, "parameter 'min_score' is 1.5; expected a finite number in [0, 1]"),
    ("silhouettes", "sam", {"model_type": "vit_x"},
     "parameter 'model_type' is 'vit_x'; expected a string, one of 'vit_b'"),
    ("silhouettes", "sam", {"device": "gpu"},
     "parameter 'device' is 'gpu'; expected a string, one of 'auto', 'cpu', 'cuda'"),
    ("silhouettes", "mediapipe", {"model_selection": 2},
     "parameter 'model_selection' is 2; expected an integer, one of 0, 1"),
    ("silhouettes", "mediapipe", {"threshold": "0.5"},
     "parameter 'threshold' is '0.5' (a string); expected a finite number"),
    ("keypoints", "mediapipe", {"upscale": 0}, "parameter 'upscale' is 0.0; expected a finite number > 0"),
    ("keypoints", "alphapose", {"flip": "false"}, "parameter 'flip' is 'false' (a string); expected true/false"),
    ("parsing", "schp-lip", {"input_size": -1}, "parameter 'input_size' is -1; expected an integer >= 0"),
    ("faces", "mediapipe", {"crop_size": 0}, "parameter 'crop_size' is 0; expected an integer >= 1"),
    ("faces", "retinaface", {"nms": 2}, "parameter 'nms' is 2.0; expected a finite number in [0, 1]"),
    ("faces_restored", "gpen", {"size": 384}, "parameter 'size' is 384; expected an integer, one of 256, 512"),
    ("cloth_masks", "parsing", {"cloth": "torso"}, "parameter 'cloth' is 'torso' (a string); expected a list of names"),
    ("cloth_masks", "parsing", {"merge7": {"head": "head"}},
     "parameter 'merge7' is {'head': 'head'}; expected a mapping"),
])
def test_a_parameter_of_the_wrong_type_or_range_is_refused_naming_it(stage, backend, params, expected):
    with pytest.raises(ValueError) as caught:
        check_params(stage, backend, params)
    assert str(caught.value).startswith(f"{stage} backend {backend!r}: ") and expected in str(caught.value)
    if not registered()[(stage, backend)].needs_file:  # building checks the same way, before loading anything
        with pytest.raises(ValueError, match="parameter"):
            build(stage, backend, params)


def test_check_params_fills_defaults_converts_numbers_and_names_the_known_backends():
    checked = check_params("silhouettes", "grabcut", {"margin": 0, "iterations": 3})
    assert checked == {"iterations": 3, "margin": 0.0, "seed_keypoints": True, "min_score": 0.5, "limb_thickness": 0.04}
    assert type(checked["margin"]) is float
    # a backend that needs weights is checked without them (nothing is built)
    assert check_params("silhouettes", "sam", {"model_type": "tiny", "device": "cuda:1"})["device"] == "cuda:1"
    with pytest.raises(ValueError, match="unknown silhouettes backend 'grabcutt'; known: grabcut, groundtruth, "
                                         "mediapipe, parsing, sam"):
        check_params("silhouettes", "grabcutt", {})
    with pytest.raises(ValueError, match="unknown stage 'silhouette'; stages: keypoints, silhouettes"):
        check_params("silhouette", "grabcut", {})
    with pytest.raises(ValueError, match="parameters must be a mapping"):
        check_params("silhouettes", "grabcut", [3])


def test_every_backends_defaults_pass_its_limits_and_the_config_passes_too():
    """The declared limits fit the defaults, and config/config.yaml's params and cloth schemes pass them; the
    learned backends name the config's download address (or where to get the file by hand) in their errors."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    for (stage, name), cls in registered().items():
        assert set(cls.limits) <= set(cls.defaults), (stage, name)
        assert check_params(stage, name, cls.defaults) == cls.defaults
        spec = config["backends"].get(stage, {}).get(name)
        if spec is None:
            continue
        check_params(stage, name, spec.get("params", {}))
        if cls.needs_file and ("url" in spec or "source" in spec):
            assert cls.weights_source in (spec.get("url"), spec.get("source")), (stage, name)
    for parser, scheme in config["cloth_schemes"].items():
        check_params("cloth_masks", "parsing", {"label_set": parser, **scheme})


def test_gpen_sizes_are_the_configurations_gpen_defines():
    from pipeline.stages.faces import GPEN_SIZES
    from pipeline.stages.gpen import CONFIGS

    assert sorted(GPEN_SIZES) == sorted(CONFIGS)


def test_the_registry_and_parameter_checks_import_no_model_library():
    code = ("import sys\n"
            "from pipeline.stages.backends import check_params, registered\n"
            "for (stage, name), cls in registered().items():\n"
            "    check_params(stage, name, cls.defaults)\n"
            "print([m for m in ('torch', 'torchvision', 'mediapipe', 'segment_anything', 'retinaface', 'alphapose')"
            " if m in sys.modules])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_grabcut_does_not_swallow_errors_it_does_not_expect():
    backend = build("silhouettes", "grabcut")
    backend.params["iterations"] = "five"  # past the parameter check: OpenCV's own argument error must surface
    image = np.random.default_rng(0).integers(0, 255, (60, 30, 3), dtype=np.uint8)
    with pytest.raises(cv2.error, match="iterCount"):
        backend(image, Item(0, "x.jpg"))


@pytest.mark.parametrize("shape, margin", [((60, 30), 0.0), ((1, 1), 0.05), ((8, 4), 0.05)])
def test_grabcut_without_a_background_margin_finds_nothing(shape, margin):
    """With no margin left around the rectangle GrabCut has no background to model: not found, no error."""
    backend = build("silhouettes", "grabcut", {"margin": margin})
    image = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    out = backend(image, Item(0, "x.jpg"))
    assert not out["found"] and decode_png(out["mask_png"]).shape == shape


def test_a_shard_with_nothing_found_fails_unless_allowed(kp, tmp_path, capsys):
    """GrabCut without a margin finds nothing anywhere: the shard is an error naming stage, backend, shard
    and count, and is not written, unless --allow-none-found (run's allow_none_found) says so."""
    out = tmp_path / "grabcut.h5"
    n = len(shard_indices(len(ImagePack(kp["images"])), 1, 2))
    args = ["run", "--stage", "silhouettes", "--backend", "grabcut", "--images", kp["images"], "--shard", "1",
            "--num-shards", "2", "--params", json.dumps({"margin": 0}), "--out", str(out)]
    line = one_line_error(capsys, cli(args), f"silhouettes backend 'grabcut', shard 2 of 2: found 0 of {n} images",
                          "--allow-none-found")
    assert str(out) in line and not out.exists()
    with pytest.raises(ValueError, match="found 0 of"):
        run("silhouettes", "grabcut", kp["images"], 1, 2, str(out), {"margin": 0})
    assert cli(args + ["--allow-none-found"]) == 0
    assert "found 0" in capsys.readouterr().out
    with h5py.File(out) as f:
        assert len(f["found"]) == n and not f["found"][:].any()
    assert run("silhouettes", "grabcut", kp["images"], 1, 2, str(out), {"margin": 0}, allow_none_found=True) == 0


def test_cli_params_that_are_not_json_or_of_a_wrong_type_are_one_line_errors(kp, tmp_path, capsys):
    args = ["run", "--stage", "silhouettes", "--backend", "grabcut", "--images", kp["images"], "--out",
            str(tmp_path / "o.h5")]
    one_line_error(capsys, cli(args + ["--params", "{iterations: 5}"]), "--params", "not JSON")
    one_line_error(capsys, cli(args + ["--params", '{"iterations": "five"}']),
                   "silhouettes backend 'grabcut': parameter 'iterations' is 'five'")
    assert not (tmp_path / "o.h5").exists()


# --- 2. a full disk ----------------------------------------------------------------------------------

LIMITED = """
import resource, signal, sys
from pipeline.stages.__main__ import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as ENOSPC fails
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
sys.exit(main(sys.argv[2:]))
"""


def cli_subprocess(args, limit: int | None = None) -> subprocess.CompletedProcess:
    """The stages CLI in its own process (a crash must not take pytest down), under a file size limit."""
    if limit is None:
        command = [sys.executable, "-m", "pipeline.stages", *map(str, args)]
    else:
        command = [sys.executable, "-c", LIMITED, str(limit), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)


def assert_disk_error(proc, out, reason: str):
    """One line naming the file that could not be written — the output, or for a shard one of its parts — and
    nothing under the output's name or a temporary one. A shard keeps its complete parts (a rerun resumes)."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    named = re.match(rf"error: ({re.escape(str(out))}(\.parts/\d{{6}}-of-\d{{6}}\.h5)?): {reason}", lines[0])
    assert lines == [lines[0]] and named, proc.stderr
    leftovers = sorted(p.name for p in out.parent.iterdir())
    parts = out.with_name(out.name + ".parts")
    assert leftovers in ([], [parts.name]), leftovers  # neither the output nor its temporary file
    if parts.is_dir():
        kept = sorted(p.name for p in parts.iterdir())
        assert all(re.fullmatch(r"\d{6}-of-\d{6}\.h5", name) for name in kept), kept  # complete parts only
        for name in kept:
            with h5py.File(parts / name) as f:
                assert "found" in f and f.attrs["part"] >= 0


@pytest.mark.parametrize("fraction", [0.05, 0.6])
def test_a_file_size_limit_during_run_and_merge_is_a_one_line_error_leaving_nothing(kp, tmp_path, fraction):
    """The limit cuts the write early (metadata) or late (data): HDF5 never sees the failure, the CLI names
    the file, exit 2, and no half-written file is left under the output's name or a temporary one."""
    full = os.path.getsize(kp["store"])
    limit = int(full * fraction)
    (tmp_path / "run").mkdir()
    out = tmp_path / "run" / "shard.h5"
    proc = cli_subprocess(["run", "--stage", "keypoints", "--backend", "groundtruth", "--images", kp["images"],
                           "--model-file", kp["gt"], "--out", out], limit)
    assert_disk_error(proc, out, "File too large")
    (tmp_path / "merge").mkdir()
    out = tmp_path / "merge" / "keypoints.h5"
    proc = cli_subprocess(["merge", "--images", kp["images"], "--out", out, "--summary",
                           tmp_path / "merge" / "summary.json", *kp["shards"]], limit)
    assert_disk_error(proc, out, "File too large")


def test_a_full_tmpfs_during_run_and_merge_is_a_one_line_error_leaving_nothing(kp, tmp_path):
    """The real thing where it can be had: a tiny tmpfs (needs permission to mount; skipped otherwise)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if sys.platform != "linux" or shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs Linux and root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        assert os.path.getsize(kp["store"]) > 16_000  # more than the filesystem holds
        out = mnt / "shard.h5"
        proc = cli_subprocess(["run", "--stage", "keypoints", "--backend", "groundtruth", "--images", kp["images"],
                               "--model-file", kp["gt"], "--out", out])
        assert_disk_error(proc, out, "No space left on device")
        shutil.rmtree(mnt / "shard.h5.parts", ignore_errors=True)  # its complete parts, kept for a rerun
        out = mnt / "keypoints.h5"
        proc = cli_subprocess(["merge", "--images", kp["images"], "--out", out, "--summary", tmp_path / "summary.json",
                               *kp["shards"]])
        assert_disk_error(proc, out, "No space left on device")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_after_a_failed_write_the_file_hdf5_sees_stays_whole(tmp_path, monkeypatch):
    """The guarded file keeps what the disk refused in memory, so HDF5 reads back exactly what it wrote and
    closes cleanly; the file's whole content then opens with every row intact, and new_h5 raises ENOSPC."""
    import io

    from pipeline import h5 as store

    real_pwrite, limit = os.pwrite, 30_000

    def pwrite(fd, data, offset):  # a disk that fills at `limit` bytes, with a short write at the edge
        if offset >= limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, bytes(data)[: limit - offset], offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 255, int(rng.integers(1, 2000)), dtype=np.uint8) for _ in range(200)]
    sink = store._GuardedFile(tmp_path / "f.h5")
    with h5py.File(sink, "w") as f:
        ds = f.create_dataset("crop_png", (len(rows),), dtype=h5py.vlen_dtype(np.uint8))
        for i, row in enumerate(rows):
            ds[i] = row
        f.create_dataset("score", data=np.arange(len(rows), dtype=np.float32))
        f.attrs["stage"] = "faces"
    assert sink.error is not None and sink.error.errno == errno.ENOSPC and os.path.getsize(tmp_path / "f.h5") <= limit
    image = bytearray(sink.seek(0, os.SEEK_END))
    sink.seek(0)
    sink.readinto(image)
    sink.close()
    with h5py.File(io.BytesIO(bytes(image)), "r") as f:
        assert all(np.array_equal(f["crop_png"][i], row) for i, row in enumerate(rows))
        assert np.array_equal(f["score"][:], np.arange(len(rows))) and f.attrs["stage"] == "faces"
    with pytest.raises(OSError) as caught:
        with store.new_h5(tmp_path / "g.h5") as (f, check):
            f.create_dataset("x", data=np.zeros(100_000, np.uint8))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "g.h5")
    assert sorted(os.listdir(tmp_path)) == ["f.h5"]


# --- 3, 4. truncated, foreign and unmerged files given to the readers --------------------------------

def test_truncated_stores_shards_and_ground_truth_are_one_line_errors(kp, tmp_path, capsys):
    images = kp["images"]
    store = truncate(kp["store"], tmp_path / "keypoints.h5")
    shard = truncate(kp["shards"][0], tmp_path / "0-of-2.h5")
    gt = truncate(kp["gt"], tmp_path / "groundtruth.h5")
    rc = cli(["merge", "--images", images, "--out", tmp_path / "m.h5", "--summary", tmp_path / "m.json",
                      shard, kp["shards"][1]])
    one_line_error(capsys, rc, f"{shard}: stage shard cannot be opened as HDF5", "truncated", "rerun that shard")
    rc = cli(["run", "--stage", "silhouettes", "--backend", "grabcut", "--images", images,
                      "--input-store", store, "--out", tmp_path / "o.h5"])
    one_line_error(capsys, rc, f"{store}: stage store cannot be opened as HDF5", f"snakemake --force {store}")
    rc = cli(["quality", "--store", store, "--images", images, "--groundtruth", kp["gt"]])
    one_line_error(capsys, rc, f"{store}: stage store cannot be opened")
    rc = cli(["quality", "--store", kp["store"], "--images", images, "--groundtruth", gt])
    one_line_error(capsys, rc, f"{gt}: synthetic ground truth cannot be opened as HDF5", "synthetic_dataset rule")
    rc = cli(["contact-sheet", "--images", images, "--out", tmp_path / "sheet.png", store])
    one_line_error(capsys, rc, f"{store}: stage store cannot be opened")
    rc = cli(["export-alphapose", "--store", store, "--images", images, "--out", tmp_path / "a.json"])
    one_line_error(capsys, rc, f"{store}: stage store cannot be opened")
    rc = cli(["run", "--stage", "keypoints", "--backend", "groundtruth", "--images", images,
                      "--model-file", gt, "--out", tmp_path / "o.h5"])
    one_line_error(capsys, rc, f"{gt}: synthetic ground truth cannot be opened")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0-of-2.h5", "groundtruth.h5", "keypoints.h5"]


def test_an_unmerged_shard_or_another_file_given_as_a_store_is_named(kp, tmp_path, capsys):
    shard, images = kp["shards"][0], kp["images"]
    rc = cli(["run", "--stage", "silhouettes", "--backend", "grabcut", "--images", images,
                      "--input-store", shard, "--out", tmp_path / "o.h5"])
    one_line_error(capsys, rc, f"{shard} is an unmerged shard of keypoints/groundtruth; merge it with "
                               f"`python -m pipeline.stages merge`")
    rc = cli(["export-alphapose", "--store", shard, "--images", images, "--out", tmp_path / "a.json"])
    one_line_error(capsys, rc, f"{shard} is an unmerged shard of keypoints/groundtruth")
    rc = cli(["export-alphapose", "--store", images, "--images", images, "--out", tmp_path / "a.json"])
    one_line_error(capsys, rc, f"{images}: an image pack, not a stage store")
    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    rc = cli(["quality", "--store", summary, "--images", images, "--groundtruth", kp["gt"]])
    one_line_error(capsys, rc, f"{summary}: stage store cannot be opened as HDF5")
    with pytest.raises(ValueError, match="not a stage store"):
        Store(kp["gt"])
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "a.json").exists()


def test_merge_refuses_a_store_and_shards_of_different_runs(kp, tmp_path, capsys):
    images = kp["images"]
    rc = cli(["merge", "--images", images, "--out", tmp_path / "m.h5", "--summary", tmp_path / "m.json",
                      kp["store"]])
    one_line_error(capsys, rc, f"{kp['store']}: a merged keypoints/groundtruth store, not a shard")
    other = tmp_path / "1-of-2.h5"
    shutil.copy(kp["shards"][1], other)
    with h5py.File(other, "r+") as f:
        f.attrs["params"] = json.dumps({"upscale": 3.0})
    rc = cli(["merge", "--images", images, "--out", tmp_path / "m.h5", "--summary", tmp_path / "m.json",
                      kp["shards"][0], other])
    one_line_error(capsys, rc, f"{other} and {kp['shards'][0]}: shards of different runs (their params differ")
    assert not (tmp_path / "m.h5").exists()


# --- 5. broken weights files -------------------------------------------------------------------------

def bad_weights(tmp_path, kind: str, zipped: bool = False):
    """An empty, garbage, truncated or tensor-only file; zipped: inside a zip as retinaface-pytorch releases."""
    import torch

    path = tmp_path / f"{kind}{'.zip' if zipped else '.pth'}"
    inner = tmp_path / "inner.pth"
    if kind == "empty":
        inner.write_bytes(b"")
    elif kind == "garbage":
        inner.write_bytes(b"<html><body>Quota exceeded for this file</body></html>\n" * 20)
    elif kind == "tensor":
        torch.save(torch.zeros(4, 4), inner)
    else:
        torch.save({"conv.weight": torch.zeros(64, 64, 3, 3), "conv.bias": torch.zeros(64)}, inner)
    if zipped and kind != "empty":
        with zipfile.ZipFile(path, "w") as z:
            z.write(inner, "retinaface_resnet50_2020-07-20.pth")
    else:
        shutil.copy(inner, path)
    if kind == "truncated":
        truncate(path, path.with_suffix(".part"))
        os.replace(path.with_suffix(".part"), path)
    inner.unlink()
    return path


WEIGHTS_CASES = [
    ("keypoints", "alphapose", {}, False, "AlphaPose FastPose", "MODEL_ZOO"),
    ("silhouettes", "sam", {"model_type": "tiny"}, False, "SAM tiny", "no checkpoint is released"),
    ("silhouettes", "sam", {"model_type": "vit_b"}, False, "SAM vit_b", "sam_vit_b_01ec64.pth"),
    ("faces", "retinaface", {}, True, "RetinaFace", "retinaface_resnet50_2020-07-20-f168fae3c.zip"),
    ("parsing", "schp-atr", {}, False, "SCHP ResNet-101 atr", "ATR model"),
    ("faces_restored", "gpen", {"size": 256}, False, "GPEN-BFR-256", "GPEN-BFR-256.pth from the GPEN README"),
    ("faces_restored", "gpen", {}, False, "GPEN-BFR-512", "backends.faces_restored.gpen.url"),
]


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated", "tensor"])
@pytest.mark.parametrize("stage, backend, params, zipped, what, source", WEIGHTS_CASES,
                         ids=[f"{c[1]}-{c[4].split()[-1]}" for c in WEIGHTS_CASES])
def test_a_broken_weights_file_is_a_one_line_error_naming_it(kp, tmp_path, capsys, kind, stage, backend, params,
                                                             zipped, what, source):
    """The file is read before the network is built or any input store opened, so no store is needed here."""
    weights = bad_weights(tmp_path, kind, zipped)
    rc = cli(["run", "--stage", stage, "--backend", backend, "--images", kp["images"], "--params",
                      json.dumps({**params, "device": "cpu"}), "--model-file", weights, "--out", tmp_path / "o.h5"])
    line = one_line_error(capsys, rc, f"error: {weights}: ", what, f"{stage} backend {backend!r}", source)
    assert {"empty": "empty (0 bytes)", "garbage": "cannot be read", "truncated": "damaged zip archive",
            "tensor": "holds a Tensor, not a state dict"}[kind] in line
    assert not (tmp_path / "o.h5").exists()


def test_a_truncated_legacy_format_checkpoint_is_a_one_line_error(kp, tmp_path, capsys):
    import torch

    weights = tmp_path / "fast_res50_256x192.pth"
    torch.save({"conv.weight": torch.zeros(64, 64, 3, 3)}, weights, _use_new_zipfile_serialization=False)
    truncate(weights, tmp_path / "part")
    os.replace(tmp_path / "part", weights)
    rc = cli(["run", "--stage", "keypoints", "--backend", "alphapose", "--images", kp["images"],
                      "--params", '{"device": "cpu"}', "--model-file", weights, "--out", tmp_path / "o.h5"])
    assert "cannot be read: truncated" in one_line_error(capsys, rc, f"{weights}: ")


def test_weights_of_the_wrong_network_keep_naming_keys_and_source(tmp_path):
    weights = bad_weights(tmp_path, "state")
    with pytest.raises(ValueError, match=r"state.pth: not an AlphaPose FastPose.*unexpected \['conv.bias'.*MODEL_ZOO"):
        build("keypoints", "alphapose", {"device": "cpu"}, str(weights))


# --- 3. a shard that crashes half-way ----------------------------------------------------------------

def _count_calls(monkeypatch, cls, crash_after: int | None = None) -> list[int]:
    """Record the images a backend is called on; raise once it has done `crash_after` of them."""
    calls: list[int] = []
    original = cls.__call__

    def call(self, image, item):
        if crash_after is not None and len(calls) == crash_after:
            raise RuntimeError("simulated crash")
        calls.append(item.index)
        return original(self, image, item)

    monkeypatch.setattr(cls, "__call__", call)
    return calls


def _same_shard(a, b):
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert set(fa) == set(fb) and json.loads(fa.attrs["fields"]) == json.loads(fb.attrs["fields"])
        for key in fa:
            x, y = fa[key][:], fb[key][:]
            if x.dtype == object:  # PNG bytes
                assert all(np.array_equal(u, v) for u, v in zip(x, y, strict=True)), key
            else:
                np.testing.assert_array_equal(x, y, err_msg=key)


def test_a_crashed_shard_resumes_after_its_last_complete_part(kp, tmp_path, monkeypatch):
    from pipeline.stages.keypoints import GroundTruthKeypoints

    pack = ImagePack(kp["images"])
    out, parts = tmp_path / "s.h5", tmp_path / "s.h5.parts"
    _count_calls(monkeypatch, GroundTruthKeypoints, crash_after=25)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run("keypoints", "groundtruth", kp["images"], 0, 1, str(out), {}, kp["gt"], part_rows=10)
    assert not out.exists()
    blocks = -(-len(pack) // 10)
    assert sorted(p.name for p in parts.iterdir()) == [f"{k:06d}-of-{blocks:06d}.h5" for k in (0, 1)]
    monkeypatch.undo()
    calls = _count_calls(monkeypatch, GroundTruthKeypoints)
    run("keypoints", "groundtruth", kp["images"], 0, 1, str(out), {}, kp["gt"], part_rows=10)
    assert calls == list(range(20, len(pack)))  # the two complete parts were kept, nothing else
    assert not parts.exists()
    monkeypatch.undo()
    run("keypoints", "groundtruth", kp["images"], 0, 1, str(tmp_path / "clean.h5"), {}, kp["gt"], part_rows=10)
    _same_shard(out, tmp_path / "clean.h5")


def test_parts_of_other_params_are_discarded_not_mixed_in(kp, tmp_path, monkeypatch, capsys):
    from pipeline.stages.silhouettes import GrabCut

    out = tmp_path / "s.h5"
    args = ("silhouettes", "grabcut", kp["images"], 1, 2, str(out))
    _count_calls(monkeypatch, GrabCut, crash_after=15)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(*args, {"iterations": 1}, input_stores=(str(kp["store"]),), part_rows=10)
    monkeypatch.undo()
    calls = _count_calls(monkeypatch, GrabCut)
    run(*args, {"iterations": 2}, input_stores=(str(kp["store"]),), part_rows=10)
    assert "starting the shard over: 000000-of-" in capsys.readouterr().out
    pack = ImagePack(kp["images"])
    assert calls == shard_indices(len(pack), 1, 2).tolist()  # every image again: nothing of iterations=1 kept
    monkeypatch.undo()
    run("silhouettes", "grabcut", kp["images"], 1, 2, str(tmp_path / "clean.h5"), {"iterations": 2},
        input_stores=(str(kp["store"]),), part_rows=10)
    _same_shard(out, tmp_path / "clean.h5")


def test_a_shard_calls_its_backend_in_batches_that_never_cross_a_part(kp, tmp_path, monkeypatch):
    from pipeline.stages.keypoints import GroundTruthKeypoints

    sizes: list[int] = []
    original = GroundTruthKeypoints.batch

    def batch(self, images, items):
        sizes.append(len(items))
        return original(self, images, items)

    monkeypatch.setattr(GroundTruthKeypoints, "batch", batch)
    pack = ImagePack(kp["images"])
    run("keypoints", "groundtruth", kp["images"], 0, 1, str(tmp_path / "b.h5"), {}, kp["gt"], part_rows=10,
        batch_size=4)
    full, rest = divmod(len(pack), 10)
    assert sizes == [4, 4, 2] * full + ([4] * (rest // 4) + ([rest % 4] if rest % 4 else []))
    monkeypatch.undo()
    run("keypoints", "groundtruth", kp["images"], 0, 1, str(tmp_path / "one.h5"), {}, kp["gt"], part_rows=10)
    _same_shard(tmp_path / "b.h5", tmp_path / "one.h5")
    with pytest.raises(InputError, match="batch size must be at least 1"):
        run("keypoints", "groundtruth", kp["images"], 0, 1, str(tmp_path / "z.h5"), {}, kp["gt"], batch_size=0)


def test_images_decoded_by_workers_come_in_order_and_give_the_same_shard(kp, tmp_path):
    from pipeline.stages.__main__ import decoded_images

    pack = ImagePack(kp["images"])
    rows = np.array([5, 0, 3, 3, len(pack) - 1])
    for got, row in zip(decoded_images(pack, rows, workers=2), rows, strict=True):
        np.testing.assert_array_equal(got, pack.image(int(row)))
    run("keypoints", "groundtruth", kp["images"], 0, 1, str(tmp_path / "w.h5"), {}, kp["gt"], part_rows=10,
        batch_size=3, workers=2)
    run("keypoints", "groundtruth", kp["images"], 0, 1, str(tmp_path / "one.h5"), {}, kp["gt"])
    _same_shard(tmp_path / "w.h5", tmp_path / "one.h5")
    with pytest.raises(InputError, match="workers must be 0 or more"):
        decoded_images(pack, rows, workers=-1)


# --- 6. provenance: parts and stores computed from other inputs, damaged parts, the parts folder ------

def _build(tmp, images, stage, backend, params=None, model_file=None, inputs=(), name=None):
    """A merged store of one shard."""
    pack = ImagePack(images)
    name = name or f"{stage}-{backend}"
    run(stage, backend, images, 0, 1, str(tmp / f"{name}.shard.h5"), params or {}, model_file,
        tuple(str(i) for i in inputs))
    merge([tmp / f"{name}.shard.h5"], tmp / f"{name}.h5", len(pack), pack.manifest_sha256)
    return tmp / f"{name}.h5"


@pytest.fixture(scope="module")
def upstream(kp, tmp_path_factory):
    """Two keypoints stores of one backend and params, from other ground truth (kp_b's joints are 6 px off), so of
    different provenance; the true silhouettes; and GrabCut silhouettes seeded by kp_a."""
    tmp = tmp_path_factory.mktemp("upstream")
    shifted = tmp / "groundtruth.h5"
    shutil.copy(kp["gt"], shifted)
    with h5py.File(shifted, "r+") as f:
        joints = f["keypoints"][:]
        joints[..., :2] += 6
        f["keypoints"][...] = joints
    images = kp["images"]
    return {"kp_a": kp["store"], "kp_b": _build(tmp, images, "keypoints", "groundtruth", model_file=shifted),
            "sil": _build(tmp, images, "silhouettes", "groundtruth", model_file=kp["gt"]),
            "grabcut_a": _build(tmp, images, "silhouettes", "grabcut", {"iterations": 1}, inputs=(kp["store"],)),
            "gt_b": shifted}


def test_resumed_parts_of_a_shard_computed_from_another_upstream_store_start_it_over(kp, upstream, tmp_path,
                                                                                    monkeypatch, capsys):
    """The issue's case: the downstream shard crashes after part 0, its keypoints store is rebuilt from other
    ground truth (same backend and params), and the rerun must not keep part 0."""
    from pipeline.stages.parsing import KeypointGeometry

    n = len(ImagePack(kp["images"]))
    out = tmp_path / "parsing.h5"
    args = ("parsing", "keypoint-geometry", kp["images"], 0, 1, str(out), {})
    _count_calls(monkeypatch, KeypointGeometry, crash_after=15)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(*args, input_stores=(str(upstream["kp_a"]), str(upstream["sil"])), part_rows=10)
    assert (tmp_path / "parsing.h5.parts").is_dir()
    monkeypatch.undo()
    calls = _count_calls(monkeypatch, KeypointGeometry)
    run(*args, input_stores=(str(upstream["kp_b"]), str(upstream["sil"])), part_rows=10)
    log = capsys.readouterr().out
    assert "starting the shard over" in log and "inputs" in log and "resuming" not in log, log
    assert calls == list(range(n))
    monkeypatch.undo()
    clean_b = tmp_path / "clean-b.h5"
    run("parsing", "keypoint-geometry", kp["images"], 0, 1, str(clean_b), {},
        input_stores=(str(upstream["kp_b"]), str(upstream["sil"])))
    _same_shard(out, clean_b)
    clean_a = tmp_path / "clean-a.h5"
    run("parsing", "keypoint-geometry", kp["images"], 0, 1, str(clean_a), {},
        input_stores=(str(upstream["kp_a"]), str(upstream["sil"])))
    with Store(upstream["kp_a"]) as a, Store(upstream["kp_b"]) as b, h5py.File(clean_a) as fa, h5py.File(clean_b) as fb:
        assert (a.attrs["backend"], a.params) == (b.attrs["backend"], b.params) and a.provenance != b.provenance
        # each shard declares the very stores it was computed from, and its own digest covers theirs
        assert json.loads(fb.attrs["inputs"])["keypoints"]["provenance"] == b.provenance
        assert json.loads(fa.attrs["inputs"])["keypoints"]["provenance"] == a.provenance
        assert fa.attrs["params"] == fb.attrs["params"] and fa.attrs["provenance"] != fb.attrs["provenance"]


def test_merge_refuses_shards_computed_from_other_input_stores(kp, upstream, tmp_path, capsys):
    pack = ImagePack(kp["images"])
    shards = [tmp_path / "0-of-2.h5", tmp_path / "1-of-2.h5"]
    for k, keypoints in enumerate((upstream["kp_a"], upstream["kp_b"])):
        run("parsing", "keypoint-geometry", kp["images"], k, 2, str(shards[k]), {},
            input_stores=(str(keypoints), str(upstream["sil"])))
    with pytest.raises(InputError, match=r"shards of different runs \(their inputs, provenance differ"):
        merge(shards, tmp_path / "parsing.h5", len(pack), pack.manifest_sha256)
    assert not (tmp_path / "parsing.h5").exists()


def _edit_part(path, field):
    """Change one row of a part in place, as a bad disk or a stray write would, leaving its attributes alone."""
    with h5py.File(path, "r+") as f:
        if field == "keypoints":
            f["keypoints"][...] = 7.0
        else:  # a PNG row replaced by another valid PNG
            f[field][3] = f[field][4]


@pytest.mark.parametrize("stage, field", [("keypoints", "keypoints"), ("silhouettes", "mask_png")])
def test_a_part_whose_content_changed_is_recomputed_not_reused(kp, tmp_path, monkeypatch, capsys, stage, field):
    from pipeline.stages.keypoints import GroundTruthKeypoints
    from pipeline.stages.silhouettes import GroundTruthSilhouettes

    cls = {"keypoints": GroundTruthKeypoints, "silhouettes": GroundTruthSilhouettes}[stage]
    n = len(ImagePack(kp["images"]))
    out, parts = tmp_path / "s.h5", tmp_path / "s.h5.parts"
    args = (stage, "groundtruth", kp["images"], 0, 1, str(out), {}, kp["gt"])
    _count_calls(monkeypatch, cls, crash_after=25)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(*args, part_rows=10)
    first = sorted(parts.iterdir())[0]
    _edit_part(first, field)
    monkeypatch.undo()
    calls = _count_calls(monkeypatch, cls)
    run(*args, part_rows=10)
    log = capsys.readouterr().out
    assert f"resuming: 1 of {-(-n // 10)} parts already computed" in log and first.name in log, log
    assert "checksum" in log, log
    assert calls == list(range(10)) + list(range(20, n))  # the changed part again, the intact one kept
    monkeypatch.undo()
    run(stage, "groundtruth", kp["images"], 0, 1, str(tmp_path / "clean.h5"), {}, kp["gt"])
    _same_shard(out, tmp_path / "clean.h5")


@pytest.mark.parametrize("kind", ["file", "symlink", "dangling symlink"])
def test_a_parts_path_that_is_not_a_folder_is_an_error_before_any_work(kp, tmp_path, monkeypatch, capsys, kind):
    from pipeline.stages.keypoints import GroundTruthKeypoints

    out, parts, elsewhere = tmp_path / "s.h5", tmp_path / "s.h5.parts", tmp_path / "elsewhere"
    if kind == "file":
        parts.write_text("notes\n")
    else:
        elsewhere.mkdir()
        (elsewhere / "keep.txt").write_text("mine\n")
        os.symlink(elsewhere if kind == "symlink" else tmp_path / "gone", parts)
    calls = _count_calls(monkeypatch, GroundTruthKeypoints)
    rc = cli(["run", "--stage", "keypoints", "--backend", "groundtruth", "--images", kp["images"],
              "--model-file", kp["gt"], "--part-rows", 10, "--out", out])
    one_line_error(capsys, rc, f"{parts}: ", "a symlink" if "symlink" in kind else "a file", "remove it")
    assert calls == [] and not out.exists()
    if kind != "file":
        assert parts.is_symlink() and sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]


def test_run_refuses_input_stores_that_do_not_belong_together(kp, upstream, tmp_path, monkeypatch, capsys):
    """GrabCut silhouettes seeded by kp_a given beside kp_b: the parsing would pair joints and masks of
    different keypoints."""
    from pipeline.stages.parsing import KeypointGeometry

    calls = _count_calls(monkeypatch, KeypointGeometry)
    args = ["run", "--stage", "parsing", "--backend", "keypoint-geometry", "--images", kp["images"], "--out",
            tmp_path / "p.h5", "--input-store", upstream["grabcut_a"]]
    rc = cli(args + ["--input-store", upstream["kp_b"]])
    line = one_line_error(capsys, rc, upstream["grabcut_a"], upstream["kp_b"], "keypoints", "weights_sha256")
    assert "rebuild" in line and calls == [] and not (tmp_path / "p.h5").exists()
    rc = cli(args + ["--input-store", upstream["kp_b"], "--input-store", upstream["kp_a"]])
    one_line_error(capsys, rc, "two keypoints stores", upstream["kp_a"], upstream["kp_b"])
    assert cli(args + ["--input-store", upstream["kp_a"]]) == 0 and (tmp_path / "p.h5").exists()


def test_open_stores_refuses_a_store_computed_from_another_store_than_the_one_given_beside_it(kp, tmp_path):
    """DeSKPro's faces and faces_restored (training and evaluation open their stores through open_stores)."""
    from trainer.stores import close_stores, open_stores, store_provenance

    images, pack = kp["images"], ImagePack(kp["images"])
    faces = _build(tmp_path, images, "faces", "groundtruth", {"crop_size": 32}, kp["gt"], name="faces")
    other = _build(tmp_path, images, "faces", "groundtruth", {"crop_size": 48}, kp["gt"], name="other")
    restored = _build(tmp_path, images, "faces_restored", "bicubic", {"size": 64}, inputs=(faces,))
    with pytest.raises(InputError) as caught:
        open_stores({"faces": str(other), "faces_restored": str(restored)}, pack.manifest_sha256)
    message = str(caught.value)
    assert "\n" not in message and str(restored) in message and str(other) in message and "params" in message
    assert "crop_size" in message
    opened = open_stores({"faces": str(faces), "faces_restored": str(restored)}, pack.manifest_sha256)
    try:
        provenance = store_provenance(opened)
        assert provenance["faces"]["provenance"] == opened["faces"].provenance
        assert provenance["faces_restored"]["provenance"] == opened["faces_restored"].provenance
    finally:
        close_stores(opened)


@pytest.mark.parametrize("attr, value, expected", [
    ("params", 3, "its 'params' attribute is an integer, not JSON text"),
    ("params", "[1, 2]", "its 'params' attribute is a list, not a JSON mapping"),
    ("fields", "keypoints,found", "its 'fields' attribute is not JSON"),
    ("inputs", 5, "its 'inputs' attribute is an integer, not JSON text"),
    ("inputs", '{"silhouettes": "grabcut"}', "its 'inputs' attribute declares silhouettes as"),
    ("provenance", None, "no 'provenance' attribute"),
    ("provenance", "0" * 64, "does not match"),
    ("backend_version", "another", "does not match"),
])
def test_store_attributes_that_cannot_be_read_are_one_line_errors(kp, tmp_path, capsys, attr, value, expected):
    store = tmp_path / "keypoints.h5"
    shutil.copy(kp["store"], store)
    shard = tmp_path / "0-of-1.h5"
    run("keypoints", "groundtruth", kp["images"], 0, 1, str(shard), {}, kp["gt"])
    for path in (store, shard):
        with h5py.File(path, "r+") as f:
            if value is None:
                del f.attrs[attr]
            else:
                f.attrs[attr] = value
    rc = cli(["run", "--stage", "silhouettes", "--backend", "grabcut", "--images", kp["images"], "--input-store",
              store, "--out", tmp_path / "o.h5"])
    line = one_line_error(capsys, rc, f"{store}: ", expected)
    assert "rebuild" in line or "snakemake --force" in line
    rc = cli(["merge", "--images", kp["images"], "--out", tmp_path / "m.h5", "--summary", tmp_path / "m.json", shard])
    one_line_error(capsys, rc, f"{shard}: ", expected, "rerun")
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "m.h5").exists()
