"""LTCC and VC-Clothes: flat train/query/gallery folders whose file names carry pid, camera and clothes.

Labels as Simple-CCReID's data/datasets/ltcc.py and vcclothes.py derive them (docs/datasets.md#ltcc,
docs/datasets.md#vc-clothes): training pids and clothes relabelled over sorted keys; test pids raw; test
clothes relabelled over query ∪ gallery.
Patterns are applied to file names only.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import DatasetSplits, Protocol, Sample, parse_names, register, relabel, require_dir

LTCC_IDS = re.compile(r"(\d+)_(\d+)_c(\d+)")
LTCC_CLOTHES = re.compile(r"(\w+)_c")
VC = re.compile(r"(\d+)-(\d+)-(\d+)-(\d+)")


def _split(entries, root: Path, train: bool) -> list[Sample]:
    """entries: (file, pid, camid, clothes_key)."""
    pid_map = relabel(e[1] for e in entries) if train else None
    clothes_map = relabel(e[3] for e in entries)
    return [Sample(f.relative_to(root).as_posix(), pid_map[pid] if train else pid, cam, clothes_map[key])
            for f, pid, cam, key in entries]


def _test(query, gallery, root: Path) -> dict[str, list[Sample]]:
    joint = _split(query + gallery, root, train=False)  # clothes relabelled jointly
    return {"query": joint[: len(query)], "gallery": joint[len(query):]}


def _ltcc_entries(directory: Path):
    entries = []
    for f, (pid, _, cam) in parse_names(directory, ".png", LTCC_IDS, "LTCC"):
        key = LTCC_CLOTHES.search(f.name).group(1)
        entries.append((f, int(pid), int(cam) - 1, key))
    return entries


@register("ltcc", layout="LTCC_ReID")
def load_ltcc(root: Path) -> DatasetSplits:
    base = root / "LTCC_ReID"
    require_dir(base, "LTCC's layout <ROOT>/LTCC_ReID/{train,query,test}")
    splits = {"train": _split(_ltcc_entries(base / "train"), root, train=True)}
    splits.update(_test(_ltcc_entries(base / "query"), _ltcc_entries(base / "test"), root))
    protocols = [Protocol("general", "query", "gallery", "general"), Protocol("CC", "query", "gallery", "CC"),
                 Protocol("SC", "query", "gallery", "SC")]
    return DatasetSplits("ltcc", splits, protocols, notes=["test/ is the gallery"])


def _vc_entries(directory: Path):
    return [(f, int(pid), int(cam) - 1, pid + clothes)
            for f, (pid, cam, clothes, _) in parse_names(directory, ".jpg", VC, "VC-Clothes")]


@register("vcclothes", layout="VC-Clothes")
def load_vcclothes(root: Path) -> DatasetSplits:
    base = root / "VC-Clothes"
    require_dir(base, "VC-Clothes' layout <ROOT>/VC-Clothes/{train,query,gallery}")
    splits = {"train": _split(_vc_entries(base / "train"), root, train=True)}
    splits.update(_test(_vc_entries(base / "query"), _vc_entries(base / "gallery"), root))
    protocols = [
        Protocol("general", "query", "gallery", "general"), Protocol("CC", "query", "gallery", "CC"),
        Protocol("SC", "query", "gallery", "SC"),
        # Simple-CCReID's vcclothes_sc (cameras 2&3) and vcclothes_cc (cameras 3&4), general rule on the subset
        Protocol("sc_cams23", "query", "gallery", "general", cameras=(1, 2)),
        Protocol("cc_cams34", "query", "gallery", "general", cameras=(2, 3)),
    ]
    return DatasetSplits("vcclothes", splits, protocols)
