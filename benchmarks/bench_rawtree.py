"""How long the raw-tree fingerprint (the lists rule's params trigger) takes on a dataset-sized tree.

python benchmarks/bench_rawtree.py [--files 100000] [--per-dir 100]

Builds a tree of small files in identity folders (PRCC-like: rgb/train/<pid>/<image>), then times the
fingerprint against a plain os.walk listing without stat (the least any change detection must do).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.rawtree import tree_fingerprint  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--per-dir", type=int, default=100)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "prcc" / "rgb" / "train"
        for i in range(a.files):
            d = root / f"{i // a.per_dir:05d}"
            if i % a.per_dir == 0:
                d.mkdir(parents=True)
            (d / f"{i:07d}.jpg").write_bytes(b"x" * 64)
        t0 = time.perf_counter()
        names = sum(len(files) for _, _, files in os.walk(root))
        walk = time.perf_counter() - t0
        t0 = time.perf_counter()
        fingerprint = tree_fingerprint(root)
        took = time.perf_counter() - t0
    print(f"{a.files} files in {a.files // a.per_dir} folders: os.walk (names only, {names}) {walk:.2f} s, "
          f"fingerprint (names, sizes, mtimes) {took:.2f} s = {took / walk:.1f}x the bare walk; {fingerprint[:40]}…")
    return 0


if __name__ == "__main__":
    sys.exit(main())
