"""Long-term clothes-changing datasets: DeepChange, LaST (Simple-CCReID's loaders,
data/datasets/deepchange.py and last.py; docs/datasets.md#deepchange, docs/datasets.md#last) and NKUP
(the authors' README, nkicsl/NKUP-dataset; no official loader exists; docs/datasets.md#nkup).

None of them annotates outfits the way PRCC, LTCC or VC-Clothes do, so each says where its clothes ids
come from (`clothes_labels`): DeepChange and NKUP approximate an outfit by (identity, recording day), as
Simple-CCReID does for DeepChange; LaST labels training outfits only.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import (
    NO_CLOTHES,
    DatasetLayoutError,
    DatasetSplits,
    Protocol,
    Sample,
    image_files,
    parse_names,
    register,
    relabel,
    require_dir,
    split_images,
)

GENERAL = [Protocol("general", "query", "gallery", "general")]


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _labelled(entries, root: Path, train: bool, clothes_map: dict) -> list[Sample]:
    """entries: (file, pid, camid, clothes_key); training pids relabelled over sorted pids."""
    pid_map = relabel(e[1] for e in entries) if train else None
    return [Sample(_rel(f, root), pid_map[pid] if train else pid, cam, clothes_map[key])
            for f, pid, cam, key in entries]


def _test_pair(query, gallery, root: Path, prefix: str = "") -> dict[str, list[Sample]]:
    """Query and gallery with raw pids and clothes relabelled jointly over query ∪ gallery."""
    clothes_map = relabel(e[3] for e in query + gallery)
    return {f"{prefix}query": _labelled(query, root, False, clothes_map),
            f"{prefix}gallery": _labelled(gallery, root, False, clothes_map)}


# --- DeepChange ----------------------------------------------------------------------------------------

DEEPCHANGE_SPLITS = {"train": "train-set", "val_query": "val-set-query", "val_gallery": "val-set-gallery",
                     "query": "test-set-query", "gallery": "test-set-gallery"}


def _deepchange_entries(base: Path, folder: str):
    """Lines `<image name>,<tracklet id>` of <folder>-bbox.txt. The name splits on '_' into P<pid>,
    C<camera>, <day>, ...; Simple-CCReID keys clothes by P<pid> + <day> and puts the tracklet id in the
    camera slot, so true matches from the same camera but another tracklet count (the paper's rule)."""
    folder_dir = require_dir(base / folder, f"DeepChange's {folder}/ folder")
    list_file = base / f"{folder}-bbox.txt"
    if not list_file.is_file():
        raise DatasetLayoutError(f"{list_file}: DeepChange list file missing")
    entries, missing = [], []
    for n, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            name, tracklet = line.strip().rsplit(",", 1)
            tokens = name.split(".")[0].split("_")
            if len(tokens) < 3 or not tokens[0].startswith("P"):
                raise ValueError
            pid, tracklet_id = int(tokens[0][1:]), int(tracklet)
        except ValueError:
            raise DatasetLayoutError(f"{list_file}:{n}: expected 'P<pid>_C<cam>_<day>_..._.jpg,<tracklet id>', "
                                     f"got {line!r}") from None
        image = folder_dir / name
        if not image.is_file():
            missing.append(image)
        entries.append((image, pid, tracklet_id, tokens[0] + tokens[2]))
    if missing:
        raise DatasetLayoutError(f"{missing[0]}: listed in {list_file} but missing "
                                 f"({len(missing)} listed images missing)")
    if not entries:
        raise DatasetLayoutError(f"{list_file}: empty")
    return entries


@register("deepchange", layout="DeepChangeDataset")
def load_deepchange(root: Path) -> DatasetSplits:
    base = require_dir(root / "DeepChangeDataset", "DeepChange's layout <ROOT>/DeepChangeDataset/{train-set,...}")
    entries = {split: _deepchange_entries(base, folder) for split, folder in DEEPCHANGE_SPLITS.items()}
    splits = {"train": _labelled(entries["train"], root, True, relabel(e[3] for e in entries["train"]))}
    splits.update(_test_pair(entries["val_query"], entries["val_gallery"], root, prefix="val_"))
    splits.update(_test_pair(entries["query"], entries["gallery"], root))
    return DatasetSplits("deepchange", splits, GENERAL, clothes_labels="approximated by (identity, recording day)",
                         notes=["camid holds the tracklet id, as in Simple-CCReID: a true match may come from the "
                                "same camera in another tracklet",
                                "val_query/val_gallery are listed for model selection; the protocol is the test split"])


# --- LaST ----------------------------------------------------------------------------------------------

def _nested_images(directory: Path) -> list[Path]:
    """<directory>/<pid>/*.jpg sorted by relative path, the order Simple-CCReID's sorted glob gives."""
    require_dir(directory, f"the {directory.name}/ split folder")
    files = sorted((f for d in directory.iterdir() if d.is_dir() for f in image_files(d) if f.suffix == ".jpg"),
                   key=lambda f: f.relative_to(directory).as_posix())
    if not files:
        raise DatasetLayoutError(f"{directory}: no <pid>/*.jpg images")
    return files


def _last_tokens(f: Path) -> tuple[int, str]:
    tokens = f.name.split(".")[0].split("_")
    try:
        return int(tokens[0]), tokens[0] + "_" + tokens[-1]
    except ValueError:
        raise DatasetLayoutError(f"{f}: LaST file names start with the integer pid, '<pid>_..._<outfit>.jpg'") from None


def _last_test(base: Path, root: Path, prefix: str) -> dict[str, list[Sample]]:
    """Raw pids; every image its own camera (query 0..Nq-1, gallery Nq..), so nothing is junk; no clothes."""
    query = split_images(base / "query", ".jpg")
    gallery = _nested_images(base / "gallery")
    out = {}
    for split, files, offset in ((f"{prefix}query", query, 0), (f"{prefix}gallery", gallery, len(query))):
        out[split] = [Sample(_rel(f, root), _last_tokens(f)[0], offset + i, NO_CLOTHES) for i, f in enumerate(files)]
    return out


@register("last", layout="last")
def load_last(root: Path) -> DatasetSplits:
    base = require_dir(root / "last", "LaST's layout <ROOT>/last/{train,val,test}")
    train_files = _nested_images(base / "train")
    keys = [_last_tokens(f) for f in train_files]
    # training camid is the running index too (Simple-CCReID's recam=0)
    entries = [(f, pid, i, key) for i, (f, (pid, key)) in enumerate(zip(train_files, keys, strict=True))]
    splits = {"train": _labelled(entries, root, True, relabel(k for _, k in keys))}
    splits.update(_last_test(require_dir(base / "val", "LaST's val/ folder"), root, "val_"))
    splits.update(_last_test(require_dir(base / "test", "LaST's test/ folder"), root, ""))
    return DatasetSplits("last", splits, GENERAL, clothes_labels="training only (pid + last file-name field); "
                         "val and test carry -1",
                         notes=["Simple-CCReID sets val/test clothes_id = pid; the general protocol never reads them, "
                                "so ccreid records -1 rather than a made-up label",
                                "every test image has its own camid: no gallery image is junk"])


# --- NKUP ----------------------------------------------------------------------------------------------

# <pid>_D<recording day>_C<camera>S<video of that camera that day>_<frame>.jpg (the authors' issue #2)
NKUP_NAME = re.compile(r"^(\d+)_D(\d+)_C(\d+)S\d+_")


def _nkup_entries(directory: Path):
    return [(f, int(pid), int(cam) - 1, f"{pid}_{day}")
            for f, (pid, day, cam) in parse_names(directory, ".jpg", NKUP_NAME, "NKUP")]


@register("nkup", layout="NKUP")
def load_nkup(root: Path) -> DatasetSplits:
    base = require_dir(root / "NKUP", "NKUP's layout <ROOT>/NKUP/{bounding_box_train,query,bounding_box_test}")
    train = _nkup_entries(base / "bounding_box_train")
    splits = {"train": _labelled(train, root, True, relabel(e[3] for e in train))}
    splits.update(_test_pair(_nkup_entries(base / "query"), _nkup_entries(base / "bounding_box_test"), root))
    return DatasetSplits("nkup", splits, GENERAL,
                         clothes_labels="approximated by (identity, recording day); the authors publish none and "
                                        "note that some people keep or change clothes within a day",
                         notes=["bounding_box_test/ is the gallery; every query was taken on another day than its "
                                "identity's gallery images, so the general protocol is clothes-changing"])
