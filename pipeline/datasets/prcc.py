"""PRCC (docs/datasets.md#prcc; labels as Simple-CCReID's data/datasets/prcc.py derives them).

<ROOT>/prcc/rgb/{train,val}/<pid>/<cam>*.jpg   camera = first letter of the file name
<ROOT>/prcc/rgb/test/{A,B,C}/<pid>/*.jpg       camera = the folder
"""
from __future__ import annotations

from pathlib import Path

from .base import DatasetLayoutError, DatasetSplits, Protocol, Sample, image_files, register, require_dir

CAM2LABEL = {"A": 0, "B": 1, "C": 2}


def _pid(folder: Path) -> int:
    try:
        return int(folder.name)
    except ValueError:
        raise DatasetLayoutError(f"{folder}: PRCC identity folders are named by an integer pid") from None


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _train_like(directory: Path, root: Path) -> list[Sample]:
    """train/val: pids and clothes relabelled over sorted keys; A and B share one outfit, C another."""
    entries = []
    for pdir in sorted(p for p in directory.iterdir() if p.is_dir()):
        pid = _pid(pdir)
        for img in image_files(pdir):
            cam = img.name[0]
            if cam not in CAM2LABEL:
                raise DatasetLayoutError(f"{img}: PRCC file names start with the camera letter A, B or C")
            clothes_key = pdir.name if cam in ("A", "B") else pdir.name + cam
            entries.append((img, pid, cam, clothes_key))
    if not entries:
        raise DatasetLayoutError(f"{directory}: no images found (expected <pid>/<A|B|C>*.jpg)")
    pid2label = {pid: i for i, pid in enumerate(sorted({e[1] for e in entries}))}
    clothes2label = {key: i for i, key in enumerate(sorted({e[3] for e in entries}))}
    return [Sample(_rel(img, root), pid2label[pid], CAM2LABEL[cam], clothes2label[key])
            for img, pid, cam, key in entries]


def _test(test_dir: Path, root: Path) -> dict[str, list[Sample]]:
    """Test: raw pids; clothes = 2·label for A and B, 2·label+1 for C (label over sorted pids of A)."""
    for cam in CAM2LABEL:
        require_dir(test_dir / cam, f"PRCC test camera folder {cam}/")
    pids_a = sorted(_pid(p) for p in (test_dir / "A").iterdir() if p.is_dir())
    if not pids_a:
        raise DatasetLayoutError(f"{test_dir / 'A'}: no identity folders")
    pid2label = {pid: i for i, pid in enumerate(pids_a)}
    out: dict[str, list[Sample]] = {"gallery": [], "query_same": [], "query_diff": []}
    split_of = {"A": "gallery", "B": "query_same", "C": "query_diff"}
    for cam, split in split_of.items():
        for pdir in sorted(p for p in (test_dir / cam).iterdir() if p.is_dir()):
            pid = _pid(pdir)
            if pid not in pid2label:
                raise DatasetLayoutError(f"{pdir}: test pid {pid} has no gallery images in {test_dir / 'A'}")
            clothes = 2 * pid2label[pid] + (1 if cam == "C" else 0)
            out[split] += [Sample(_rel(img, root), pid, CAM2LABEL[cam], clothes) for img in image_files(pdir)]
    for split, samples in out.items():
        if not samples:
            raise DatasetLayoutError(f"{test_dir}: the {split} split (camera folder) holds no images")
    return out


@register("prcc", layout="prcc/rgb")
def load_prcc(root: Path) -> DatasetSplits:
    rgb = root / "prcc" / "rgb"
    if not rgb.is_dir():
        raise DatasetLayoutError(f"{rgb}: expected PRCC's layout <ROOT>/prcc/rgb/{{train,val,test}} "
                                 f"under the root {root}")
    splits = {"train": _train_like(require_dir(rgb / "train", "PRCC rgb/train/"), root)}
    if (rgb / "val").is_dir():
        splits["val"] = _train_like(rgb / "val", root)
    splits.update(_test(require_dir(rgb / "test", "PRCC rgb/test/"), root))
    protocols = [
        # Simple-CCReID test_prcc: both with the general rule; cameras always differ, multi-shot
        # (docs/protocols.md#prcc)
        Protocol("SC", query="query_same", gallery="gallery", mode="general"),
        Protocol("CC", query="query_diff", gallery="gallery", mode="general"),
        # PRCC's original single-shot protocol: one random gallery image per identity, 10 trials with
        # Python's random seeded 3 as Simple-CCReID draws them, averaged
        Protocol("SC_single_shot", query="query_same", gallery="gallery", mode="general", single_shot_trials=10,
                 seed=3),
        Protocol("CC_single_shot", query="query_diff", gallery="gallery", mode="general", single_shot_trials=10,
                 seed=3),
    ]
    return DatasetSplits("prcc", splits, protocols, has_clothes=True,
                         notes=["val is parsed like train and is used neither for training nor evaluation"])
