"""Standard Re-ID datasets without clothes labels (torchreid's loaders, KaiyangZhou/deep-person-reid
torchreid/data/datasets/image/*.py; docs/datasets.md#market-1501, docs/datasets.md#dukemtmc-reid,
docs/datasets.md#msmt17).

They carry clothes_id -1 (NO_CLOTHES) and has_clothes false: clothes labels are never invented.
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
    parse_names,
    register,
    relabel,
    require_dir,
)

DUKE_MARKET = re.compile(r"([-\d]+)_c(\d)")
GENERAL = [Protocol("general", "query", "gallery", "general")]


def _pid_cam_split(directory: Path, root: Path, pattern, fmt: str, train: bool, drop_junk: bool) -> list[Sample]:
    """(pid, camera) from each file name; training pids relabelled; camid = camera - 1; no clothes labels."""
    entries = [(f, int(pid), int(cam) - 1)
               for f, (pid, cam) in parse_names(directory, ".jpg", pattern, fmt)]
    if drop_junk:
        entries = [e for e in entries if e[1] != -1]  # junk detections; pid 0 (distractors) stays
    pid_map = relabel(e[1] for e in entries) if train else None
    return [Sample(f.relative_to(root).as_posix(), pid_map[p] if train else p, c, NO_CLOTHES) for f, p, c in entries]


def _market_style(base: Path, root: Path, fmt: str) -> DatasetSplits:
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    splits = {split: _pid_cam_split(base / folder, root, DUKE_MARKET, fmt, split == "train", drop_junk=True)
              for split, folder in folders.items()}
    return DatasetSplits(fmt, splits, GENERAL, has_clothes=False)


@register("market1501", layout="market1501/Market-1501-v15.09.15")
def load_market(root: Path) -> DatasetSplits:
    return _market_style(root / "market1501" / "Market-1501-v15.09.15", root, "market1501")


@register("dukemtmcreid", layout="dukemtmc-reid/DukeMTMC-reID")
def load_duke(root: Path) -> DatasetSplits:
    return _market_style(root / "dukemtmc-reid" / "DukeMTMC-reID", root, "dukemtmcreid")


def _msmt(root: Path, version: str, train_dir: str, test_dir: str, fmt: str) -> DatasetSplits:
    base = require_dir(root / "msmt17" / version, f"MSMT17's layout <ROOT>/msmt17/{version}")

    def read(list_name: str, folder: str) -> list[Sample]:
        list_file = base / list_name
        if not list_file.is_file():
            raise DatasetLayoutError(f"{list_file}: MSMT17 list file missing")
        out = []
        for n, line in enumerate(list_file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rel, pid = line.split()
                camid = int(Path(rel).name.split("_")[2]) - 1
            except (ValueError, IndexError):
                raise DatasetLayoutError(f"{list_file}:{n}: expected '<relpath> <pid>' with a <pid>_<idx>_<cam>_... "
                                         f"file name, got {line!r}") from None
            out.append(Sample(f"msmt17/{version}/{folder}/{rel}", int(pid), camid, NO_CLOTHES))
        if not out:
            raise DatasetLayoutError(f"{list_file}: empty")
        return out

    require_dir(base / train_dir, f"the {train_dir}/ folder")
    require_dir(base / test_dir, f"the {test_dir}/ folder")
    # pids are already 0-based in the lists and are not relabelled; val stays out of training (torchreid)
    splits = {"train": read("list_train.txt", train_dir), "val": read("list_val.txt", train_dir),
              "query": read("list_query.txt", test_dir), "gallery": read("list_gallery.txt", test_dir)}
    return DatasetSplits(fmt, splits, GENERAL, has_clothes=False)


@register("msmt17", layout="msmt17/MSMT17_V1")
def load_msmt17(root: Path) -> DatasetSplits:
    return _msmt(root, "MSMT17_V1", "train", "test", "msmt17")


@register("msmt17v2", layout="msmt17/MSMT17_V2")
def load_msmt17v2(root: Path) -> DatasetSplits:
    return _msmt(root, "MSMT17_V2", "mask_train_v2", "mask_test_v2", "msmt17v2")


CELEB = re.compile(r"([-\d]+)_(\d)")


def _celeb(root: Path, folder: str, fmt: str) -> DatasetSplits:
    """Celeb-reID(-light) as its official loader reads it (Huang-3/Celeb-reID
    reid/data_loader_1stream.py; docs/datasets.md#celeb-reid): pid = x of x_y_z.jpg, camera =
    first digit of y minus 1. No clothes labels; the official open-reid evaluation is the general rule."""
    base = require_dir(root / folder, f"Celeb-reID's layout <ROOT>/{folder}/{{train,query,gallery}}")

    splits = {split: _pid_cam_split(base / split, root, CELEB, fmt, split == "train", drop_junk=False)
              for split in ("train", "query", "gallery")}
    return DatasetSplits(fmt, splits, GENERAL, has_clothes=False)


@register("celebreid", layout="Celeb-reID")
def load_celeb(root: Path) -> DatasetSplits:
    return _celeb(root, "Celeb-reID", "celebreid")


@register("celebreid_light", layout="Celeb-reID-light")
def load_celeb_light(root: Path) -> DatasetSplits:
    return _celeb(root, "Celeb-reID-light", "celebreid_light")
