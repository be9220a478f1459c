"""What the quality summary adds to a stage's merge: pipeline.stages.quality.cue_quality on a silhouettes store.

python benchmarks/bench_cue_quality.py [--images 1000] [--height 256 --width 128]

Writes a store of person-crop-sized masks (a third of them not found), then times cue_quality against the least
any measure of the masks must do: reading the same PNG rows and decoding each found one (the ratio is what the
quantiles and flags cost on top).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.stages.quality import cue_quality  # noqa: E402
from pipeline.stages.store import Store, decode_png, encode_png, merge, shard_attrs, write_shard  # noqa: E402

MANIFEST = "m" * 64


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=128)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    records = []
    for i in range(a.images):
        mask = np.zeros((a.height, a.width), np.uint8)
        mask[: rng.integers(1, a.height), : rng.integers(1, a.width)] = 1
        records.append({"mask_png": encode_png(mask), "area": np.float32(mask.mean()), "found": np.bool_(i % 3 != 2)})
    with tempfile.TemporaryDirectory() as tmp:
        shard, store = Path(tmp) / "s.h5", Path(tmp) / "store.h5"
        write_shard(shard, np.arange(a.images), records, shard_attrs("silhouettes", "bench", MANIFEST))
        merge([shard], store, a.images, MANIFEST)
        with Store(store, MANIFEST) as s:
            t0 = time.perf_counter()
            found = np.flatnonzero(s["found"][:])
            rows = s["mask_png"][:]
            decoded = sum(decode_png(rows[r]).size for r in found)
            baseline = time.perf_counter() - t0
            t0 = time.perf_counter()
            measures = cue_quality(s)
            measured = time.perf_counter() - t0
    n = measures["mask_share"]["n"]
    print(f"{a.images} masks of {a.height}x{a.width}, {n} found ({decoded} pixels decoded)")
    print(f"read + decode only: {baseline:.3f} s ({1000 * baseline / n:.3f} ms per found mask)")
    print(f"cue_quality:        {measured:.3f} s ({1000 * measured / n:.3f} ms per found mask), "
          f"{measured / baseline:.2f}x the read + decode")
    return 0


if __name__ == "__main__":
    sys.exit(main())
