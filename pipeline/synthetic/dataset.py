"""Write a synthetic cloth-changing dataset in PRCC's published layout, with ground truth beside it.

Layout (Simple-CCReID's data/datasets/prcc.py; docs/datasets.md#prcc), under OUT:
    prcc/rgb/train/<pid>/<cam>_cropped_rgb<k>.jpg     cam ∈ {A, B, C} is the file name's first letter
    prcc/rgb/val/<pid>/<cam>_cropped_rgb<k>.jpg       held-out images of the first training identities
    prcc/rgb/test/<cam>/<pid>/cropped_rgb<k>.jpg      the camera folder gives the camera
    groundtruth/groundtruth.h5                        never inside the layout
    groundtruth/identities.json

Cameras A and B show an identity in its first outfit, camera C in its second (the PRCC protocol).
Every image has its own random stream keyed by (seed, split, pid, camera, k), so the output is the
same for a seed whatever the number of worker processes.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np

from ..errors import InputError, OutputExistsError
from ..progress import progress as show_progress
from .figure import COCO17, PART_LABELS, VIEWS, render_person, sample_pose
from .scene import background, light, sample_camera
from .traits import assign_outfits, sample_identity, sample_outfit

CAMERAS = ("A", "B", "C")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SyntheticSpec:
    seed: int = 0
    train_ids: int = 40
    test_ids: int = 24
    val_ids: int = 4  # training identities that also get held-out val images (PRCC's val is unused)
    images_per_camera: int = 5  # ±1 per (identity, camera)
    outfit_pool: int = 0  # 0: one outfit per three identities, so each outfit is worn by ~6 people
    min_height: int = 160
    max_height: int = 240
    jpeg_quality: int = 92
    # diagnostic variant: clothes pixels (top, bottom, shoes) painted one flat grey, so only identity
    # traits remain; it measures how learnable clothes-changing retrieval is without the clothes shortcut
    erase_clothes: bool = False
    # identity legibility (the benchmark's people): body proportions and head shape spread `trait_spread` times as
    # widely around the defaults' centres, heads `head_scale` times larger; 1 and 1 are the demo's people
    trait_spread: float = 1.0
    head_scale: float = 1.0

    def validate(self) -> None:
        for name in ("train_ids", "test_ids", "images_per_camera", "min_height"):
            if getattr(self, name) < 1:
                raise InputError(f"synthetic spec: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.val_ids <= self.train_ids:
            raise InputError(f"synthetic spec: val_ids must be in [0, train_ids], got {self.val_ids}")
        if self.max_height < self.min_height:
            raise InputError(f"synthetic spec: max_height {self.max_height} < min_height {self.min_height}")
        if not 0.5 <= self.trait_spread <= 3:
            raise InputError(f"synthetic spec: trait_spread must be in [0.5, 3], got {self.trait_spread}")
        if not 0.5 <= self.head_scale <= 2:
            raise InputError(f"synthetic spec: head_scale must be in [0.5, 2], got {self.head_scale}")
        if self.outfit_pool == 1 or self.outfit_pool < 0:
            raise InputError(f"synthetic spec: outfit_pool must be 0 (auto) or >= 2, got {self.outfit_pool}")

    @property
    def pool_size(self) -> int:
        return self.outfit_pool or max(2, (self.train_ids + self.test_ids) // 3)


@dataclass(frozen=True)
class _Job:
    split: str
    pid: int
    camera: str
    k: int
    relpath: str


def _world(spec: SyntheticSpec):
    """Identities, outfits, their assignment and cameras: everything shared between images."""
    num_ids = spec.train_ids + spec.test_ids
    identities = [sample_identity(np.random.default_rng([spec.seed, 1, pid]), spec.trait_spread, spec.head_scale)
                  for pid in range(1, num_ids + 1)]
    outfits = [sample_outfit(np.random.default_rng([spec.seed, 2, o])) for o in range(spec.pool_size)]
    pairs = assign_outfits(num_ids, spec.pool_size, np.random.default_rng([spec.seed, 4]))
    cameras = {c: sample_camera(np.random.default_rng([spec.seed, 3, i])) for i, c in enumerate(CAMERAS)}
    return identities, outfits, pairs, cameras


def _jobs(spec: SyntheticSpec) -> list[_Job]:
    jobs = []
    count_rng = np.random.default_rng([spec.seed, 5])
    train = range(1, spec.train_ids + 1)
    test = range(spec.train_ids + 1, spec.train_ids + spec.test_ids + 1)
    plan = ([("train", pid) for pid in train] + [("val", pid) for pid in train[: spec.val_ids]]
            + [("test", pid) for pid in test])
    for split, pid in plan:
        for cam in CAMERAS:
            n = 1 if split == "val" else max(1, spec.images_per_camera + int(count_rng.integers(-1, 2)))
            for k in range(1, n + 1):
                if split == "test":
                    rel = f"prcc/rgb/test/{cam}/{pid:03d}/cropped_rgb{k:03d}.jpg"
                else:
                    rel = f"prcc/rgb/{split}/{pid:03d}/{cam}_cropped_rgb{k:03d}.jpg"
                jobs.append(_Job(split, pid, cam, k, rel))
    return jobs


_STATE: dict = {}


def _init_worker(spec: SyntheticSpec, out: str) -> None:
    cv2.setNumThreads(1)
    _STATE.update(spec=spec, out=Path(out), world=_world(spec))


def _render(job: _Job):
    spec: SyntheticSpec = _STATE["spec"]
    identities, outfits, pairs, cameras = _STATE["world"]
    rng = np.random.default_rng([spec.seed, 6, SPLITS.index(job.split), job.pid, CAMERAS.index(job.camera), job.k])
    identity = identities[job.pid - 1]
    outfit_index = pairs[job.pid - 1][1 if job.camera == "C" else 0]
    camera = cameras[job.camera]
    h = int(rng.integers(spec.min_height, spec.max_height + 1))
    w = int(round(h * rng.uniform(0.40, 0.52)))
    body = min(0.97, identity.height * rng.uniform(0.93, 1.06)) * h
    top = rng.uniform(0.01 * h, max(0.011 * h, h - body - 0.01 * h))
    centre = w / 2 + rng.uniform(-0.1, 0.1) * w
    pose = sample_pose(rng)
    out = render_person(background((h, w), camera, rng), identity, outfits[outfit_index], pose, rng, centre, top, body)
    if spec.erase_clothes:
        clothes = np.isin(out.parts, [PART_LABELS["top"], PART_LABELS["bottom"], PART_LABELS["shoes"]])
        out.image[clothes] = 128
    image = light(out.image, camera, rng)
    path = _STATE["out"] / job.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])
    ok2, png = cv2.imencode(".png", out.parts)
    if not (ok and ok2):
        raise RuntimeError(f"could not encode {job.relpath}")
    path.write_bytes(jpeg.tobytes())
    return job, outfit_index, VIEWS.index(pose.view), out.keypoints, out.face_box, png.ravel(), (h, w)


def generate(spec: SyntheticSpec, out_dir: str | Path, jobs: int = 1, progress: bool | None = None) -> Path:
    """Write the dataset to `out_dir` (which must not exist); returns the ground-truth file's path."""
    spec.validate()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise OutputExistsError(f"{out_dir} already exists and is not empty; remove it or choose another --out")
    partial = out_dir.with_name(out_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    work = _jobs(spec)
    results = []
    if jobs > 1:
        with mp.get_context("fork").Pool(jobs, _init_worker, (spec, str(partial))) as pool:
            for r in show_progress(pool.imap(_render, work, chunksize=8), "synthetic", len(work), progress, "images"):
                results.append(r)
    else:
        _init_worker(spec, str(partial))
        results = [_render(j) for j in show_progress(work, "synthetic", enabled=progress, unit="images")]

    identities, outfits, pairs, _ = _world(spec)
    gt_dir = partial / "groundtruth"
    gt_dir.mkdir()
    _write_groundtruth(gt_dir / "groundtruth.h5", spec, results)
    meta = {
        "spec": asdict(spec),
        "identities": {str(pid): ident.to_json() for pid, ident in enumerate(identities, start=1)},
        "outfits": [o.to_json() for o in outfits],
        "outfit_of": {str(pid): {"A": a, "B": a, "C": c} for pid, (a, c) in enumerate(pairs, start=1)},
        "splits": {"train": [1, spec.train_ids], "val": [1, spec.val_ids],
                   "test": [spec.train_ids + 1, spec.train_ids + spec.test_ids]},
    }
    (gt_dir / "identities.json").write_text(json.dumps(meta, indent=1))
    if out_dir.exists():
        out_dir.rmdir()
    partial.rename(out_dir)
    return out_dir / "groundtruth" / "groundtruth.h5"


def _write_groundtruth(path: Path, spec: SyntheticSpec, results) -> None:
    n = len(results)
    with h5py.File(path, "w") as f:
        f.create_dataset("path", data=[r[0].relpath for r in results], dtype=h5py.string_dtype())
        f.create_dataset("split", data=[r[0].split for r in results], dtype=h5py.string_dtype())
        f.create_dataset("pid", data=np.array([r[0].pid for r in results], np.int32))
        f.create_dataset("camid", data=np.array([CAMERAS.index(r[0].camera) for r in results], np.int8))
        f.create_dataset("outfit", data=np.array([r[1] for r in results], np.int32))
        f.create_dataset("view", data=np.array([r[2] for r in results], np.int8))
        f.create_dataset("keypoints", data=np.stack([r[3] for r in results]) if n else np.zeros((0, 17, 3), np.float32))
        f.create_dataset("face_box", data=np.stack([r[4] for r in results]) if n else np.zeros((0, 4), np.float32))
        f.create_dataset("size", data=np.array([r[6] for r in results], np.int32).reshape(n, 2))
        parts = f.create_dataset("parts_png", (n,), dtype=h5py.vlen_dtype(np.uint8))
        for i, r in enumerate(results):
            parts[i] = r[5]
        f.attrs["part_labels"] = json.dumps(PART_LABELS)
        f.attrs["keypoint_names"] = json.dumps(COCO17)
        f.attrs["views"] = json.dumps(VIEWS)
        f.attrs["spec"] = json.dumps(asdict(spec))
        f.attrs["note"] = "paths are relative to the dataset root; parts_png are PNG-encoded H×W label maps"


def read_parts(gt_file: h5py.File, index: int) -> np.ndarray:
    """Decode one image's part-label map (H×W uint8, PART_LABELS)."""
    return cv2.imdecode(np.asarray(gt_file["parts_png"][index]), cv2.IMREAD_UNCHANGED)
