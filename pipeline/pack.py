"""python -m pipeline.pack --lists LISTS_DIR --root RAW_ROOT --out images.h5
python -m pipeline.pack verify images.h5

Packs every image named by the list files (train first, then the other splits; for video datasets,
every frame of every tracklet). The lists are checked first: an image listed twice, in one split or in
two, or a path leaving the dataset root, stops the pack naming the line. `verify` rereads every image
of a pack and checks it against the CRC-32 stored beside it.
"""
from __future__ import annotations

import argparse
import sys

from .cli import reports_user_errors
from .datasets.base import listed_files
from .imagepack import ImagePack, write_pack
from .listfile import lists_digest, read_lists, read_protocol


def listed_paths(lists_dir: str) -> list[str]:
    """Every image the lists name (a video's frames), train first; each must be listed once (read_lists)."""
    _, splits = read_lists(lists_dir)
    return [path for samples in splits.values() for path in listed_files(samples)]


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["verify"]:
        ap = argparse.ArgumentParser(prog="python -m pipeline.pack verify", description="check every packed image")
        ap.add_argument("images")
        a = ap.parse_args(argv[1:])
        pack = ImagePack(a.images)
        pack.verify()
        print(f"{a.images}: all {len(pack)} images match their CRC-32")
        return 0
    ap = argparse.ArgumentParser(prog="python -m pipeline.pack", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lists", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    meta = read_protocol(a.lists)
    paths = listed_paths(a.lists)
    digest = write_pack(paths, a.root, a.out, meta["dataset"], lists_sha256=lists_digest(a.lists))
    print(f"packed {len(paths)} images into {a.out} (manifest sha256 {digest[:16]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
