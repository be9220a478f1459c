"""Peak memory of one stage shard against its size: written in parts (streaming, the default) vs held whole.

    python benchmarks/bench_shard_memory.py [--sizes 1000 10000] [--part-rows 256]

A shard's records used to stay in memory until the shard ended, so its peak grew with its size (restored faces:
a 512×512 PNG per image). Here a benchmark stand-in backend ("bench-face", registered by this script only: not a
real backend) returns a 128×128 RGB noise PNG per image (~49 KB, incompressible, like a restored face crop) on a
pack of small synthetic crops. Each run is its own process; its peak is ru_maxrss. The baseline in the same run
is the same code with one part as large as the shard (every record in memory, as before).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = """
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {repo!r})
from pipeline.stages.backends import Backend, register
from pipeline.stages.store import encode_rgb
from pipeline.stages.__main__ import run

@register
class BenchFace(Backend):  # a benchmark stand-in, not a backend: noise the size of a face crop
    stage, name = "faces_restored", "bench-face"

    @property
    def version(self):
        return "benchmark stand-in"

    def __call__(self, image, item):
        rng = np.random.default_rng(item.index)
        return {{"restored_png": encode_rgb(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)),
                 "found": np.bool_(True)}}

t0 = time.time()
run("faces_restored", "bench-face", sys.argv[1], 0, 1, sys.argv[2], {{}}, part_rows=int(sys.argv[3]), progress=False)
print(json.dumps({{"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "s": time.time() - t0}}))
"""


def make_pack(n: int, work: Path) -> Path:
    from pipeline.imagepack import write_pack

    root = work / f"raw{n}"
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        rel = f"{i // 1000:03d}/{i:06d}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), rng.integers(0, 256, (64, 32, 3), dtype=np.uint8))
        paths.append(rel)
    out = work / f"images{n}.h5"
    write_pack(paths, root, out, f"bench{n}", progress=False)
    return out


def measure(pack: Path, rows: int, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO)), str(pack), str(out), str(rows)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--part-rows", type=int, default=256)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"{'images':>7} {'written':>22} {'peak MiB':>9} {'s':>6}")
        results = {}
        for n in a.sizes:
            pack = make_pack(n, work)
            for label, rows in ((f"in parts of {a.part_rows}", a.part_rows), ("whole (one part)", n)):
                r = measure(pack, rows, work / f"out{n}-{rows}.h5")
                results[n, label] = r
                print(f"{n:>7} {label:>22} {r['peak_mib']:>9.0f} {r['s']:>6.1f}", flush=True)
        small, large = min(a.sizes), max(a.sizes)
        for label in (f"in parts of {a.part_rows}", "whole (one part)"):
            grow = results[large, label]["peak_mib"] - results[small, label]["peak_mib"]
            print(f"{label}: peak grows {grow:+.0f} MiB from {small} to {large} images")


if __name__ == "__main__":
    main()
