"""CCVID, the clothes-changing video dataset (docs/datasets.md#ccvid; labels as Simple-CCReID's
data/datasets/ccvid.py).

<ROOT>/CCVID/{train,query,gallery}.txt   lines `<tracklet path> <pid> <clothes label>`
<ROOT>/CCVID/session{1,2,3}/<pid>_<walk>/  the tracklet's frames, in file-name order

Each sample is a tracklet: its path is the tracklet folder and `frames` its frames. Clip construction
for training and testing lives in trainer.clips; the protocol records the test clip parameters.
"""
from __future__ import annotations

from pathlib import Path

from .base import DatasetLayoutError, DatasetSplits, Protocol, Sample, image_files, register, relabel, require_dir

# Test clips as the official evaluation cuts them: Simple-CCReID's data/__init__.py (build_dataset) gives the
# CCVID class seq_len = AUG.SEQ_LEN = 8 and stride = AUG.SAMPLING_STRIDE = 4 (configs/default_vid.py), not the
# class's unused defaults of 16; the CAL paper (§5.2): "8-frame clips with a stride of 4".
TEST_CLIPS = {"seq_len": 8, "stride": 4}
SESSION3_CAMERA_OFFSET = 12


def _read_list(base: Path, split: str) -> list[tuple[str, str, str, list[str]]]:
    """(tracklet path, pid string, clothes key, frames relative to the CCVID folder's parent)."""
    list_file = base / f"{split}.txt"
    if not list_file.is_file():
        raise DatasetLayoutError(f"{list_file}: CCVID list file missing")
    out = []
    for n, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3 or not fields[1].isdigit():
            raise DatasetLayoutError(f"{list_file}:{n}: expected '<tracklet path> <pid> <clothes label>', got {line!r}")
        tracklet, pid, clothes = fields
        folder = require_dir(base / tracklet, f"the tracklet folder named in {list_file}:{n}")
        frames = image_files(folder)
        if not frames:
            raise DatasetLayoutError(f"{folder}: tracklet has no frames ({list_file}:{n})")
        out.append((tracklet, pid, f"{pid}_{clothes}", [f.relative_to(base.parent).as_posix() for f in frames]))
    if not out:
        raise DatasetLayoutError(f"{list_file}: empty")
    return out


def camera(tracklet: str) -> int:
    """The walk index of `<session>/<pid>_<walk>`, +12 in session3 (sessions 1 and 2 share indices:
    FVG, the source of those sessions, has no camera ids; Simple-CCReID issue #10)."""
    session, folder = tracklet.split("/")[0], tracklet.rstrip("/").split("/")[-1]
    try:
        walk = int(folder.split("_")[1])
    except (IndexError, ValueError):
        raise DatasetLayoutError(f"{tracklet}: CCVID tracklet folders are named <pid>_<walk>") from None
    return walk + SESSION3_CAMERA_OFFSET if session == "session3" else walk


def _tracklets(entries, pid_of, clothes_map) -> list[Sample]:
    return [Sample(f"CCVID/{t}", pid_of(pid), camera(t), clothes_map[key], tuple(frames))
            for t, pid, key, frames in entries]


@register("ccvid", layout="CCVID")
def load_ccvid(root: Path) -> DatasetSplits:
    base = require_dir(root / "CCVID", "CCVID's layout <ROOT>/CCVID/{train,query,gallery}.txt + session folders")
    train, query, gallery = (_read_list(base, s) for s in ("train", "query", "gallery"))
    # pids and clothes are relabelled over the sorted *strings* of the list files, as Simple-CCReID does
    train_pids = relabel(e[1] for e in train)
    test_clothes = relabel(e[2] for e in query + gallery)
    splits = {"train": _tracklets(train, train_pids.__getitem__, relabel(e[2] for e in train)),
              "query": _tracklets(query, int, test_clothes),
              "gallery": _tracklets(gallery, int, test_clothes)}
    protocols = [Protocol("general", "query", "gallery", "general"), Protocol("CC", "query", "gallery", "CC"),
                 Protocol("SC", "query", "gallery", "SC")]
    return DatasetSplits("ccvid", splits, protocols, video=dict(TEST_CLIPS),
                         notes=["tracklet-level lists; <split>.frames.txt gives each tracklet's frames",
                                "test features: every clip of a tracklet (seq_len 8, stride 4) averaged, then "
                                "L2-normalised; no flip"])
