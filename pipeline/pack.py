"""python -m pipeline.pack --lists LISTS_DIR --root RAW_ROOT --out images.h5

Packs every image named by the list files (train first, then the other splits, each path once;
for video datasets, every frame of every tracklet).
"""
from __future__ import annotations

import argparse
import sys

from .cli import reports_user_errors
from .datasets.base import listed_files
from .imagepack import write_pack
from .listfile import read_protocol, read_split


def listed_paths(lists_dir: str) -> list[str]:
    """Every image the lists name (a video's frames), each once, train first."""
    meta = read_protocol(lists_dir)
    seen: dict[str, None] = {}
    for split in meta["splits"]:
        for path in listed_files(read_split(lists_dir, split)):
            seen.setdefault(path)
    return list(seen)


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.pack", description=__doc__)
    ap.add_argument("--lists", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    meta = read_protocol(a.lists)
    paths = listed_paths(a.lists)
    digest = write_pack(paths, a.root, a.out, meta["dataset"])
    print(f"packed {len(paths)} images into {a.out} (manifest sha256 {digest[:16]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
