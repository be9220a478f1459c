"""Storage choice for images.h5, measured: size on disk and random single-image reads per second.

    python benchmarks/bench_imagepack.py [--images 1000]

Candidates, on synthetic person crops of varying size (as real Re-ID crops are):
  files      the JPEG files on disk, cv2.imread -> RGB       (the baseline: what scripts do today)
  encoded    original JPEG bytes as vlen uint8 + cv2.imdecode (what images.h5 stores)
  pixels     decoded uint8 pixels resized to 256×128, one dataset, no compression
  pixels-lzf the same with lzf compression
'pixels' must resize (one fixed shape), so it changes the data; 'encoded' is bit-exact to the raw files.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.imagepack import ImagePack, write_pack  # noqa: E402
from pipeline.synthetic import SyntheticSpec, generate  # noqa: E402


def reads_per_second(read, n, rng, seconds=3.0):
    order = rng.permutation(n)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        read(int(order[done % n]))
        done += 1
    return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        per_cam = max(1, a.images // (3 * 40))
        generate(SyntheticSpec(train_ids=30, test_ids=10, val_ids=0, images_per_camera=per_cam, min_height=200,
                               max_height=300), tmp / "raw", jobs=os.cpu_count() or 1, progress=False)
        files = sorted(str(p.relative_to(tmp / "raw")) for p in (tmp / "raw").rglob("*.jpg"))
        n = len(files)
        write_pack(files, tmp / "raw", tmp / "encoded.h5", "bench", progress=False)
        pixels = np.stack([cv2.resize(cv2.imread(str(tmp / "raw" / f)), (128, 256)) for f in files])
        for name, kw in (("pixels.h5", {}), ("pixels-lzf.h5", {"compression": "lzf", "chunks": (1, 256, 128, 3)})):
            with h5py.File(tmp / name, "w") as f:
                f.create_dataset("x", data=pixels, **kw)
        size_files = sum((tmp / "raw" / f).stat().st_size for f in files)
        pack = ImagePack(tmp / "encoded.h5")
        h_pix, h_lzf = h5py.File(tmp / "pixels.h5"), h5py.File(tmp / "pixels-lzf.h5")
        rows = [
            ("files (cv2.imread)", size_files,
             lambda i: cv2.cvtColor(cv2.imread(str(tmp / "raw" / files[i])), cv2.COLOR_BGR2RGB)),
            ("encoded (images.h5)", (tmp / "encoded.h5").stat().st_size, pack.image),
            ("pixels 256x128", (tmp / "pixels.h5").stat().st_size, lambda i: h_pix["x"][i]),
            ("pixels 256x128 lzf", (tmp / "pixels-lzf.h5").stat().st_size, lambda i: h_lzf["x"][i]),
        ]
        print(f"{n} synthetic crops, {pixels.shape[1]}x{pixels.shape[2]} after resize; "
              "random single reads, file kept open")
        base = None
        for name, size, read in rows:
            rate = reads_per_second(read, n, rng)
            base = base or rate
            print(f"  {name:<22} {size / 2**20:7.1f} MiB   {rate:8.0f} img/s   ({rate / base:.2f}x files)")


if __name__ == "__main__":
    main()
