"""Images per second of learned stage backends called one image at a time vs in batches (Backend.batch).

    python benchmarks/bench_batched_backends.py [--device cuda] [--faces 32] [--batch 16] [--size 256]
                                                [--schp-size 473] [--crops 32]

Random weights in the official layout (no download): the speed of a forward pass does not depend on the values.
Backends that batch today: GPEN (faces_restored) and SCHP (parsing). Each is timed on the same inputs at batch 1
and at --batch, after one warm-up call, and the outputs are checked to agree (GPEN: max |difference| in uint8;
SCHP: the fraction of equal labels). --schp-size 0 skips SCHP.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.stages.backends import Item, build  # noqa: E402
from pipeline.stages.store import decode_png, decode_rgb, encode_rgb  # noqa: E402


def gpen(size: int, device: str, tmp: Path):
    import torch

    from pipeline.stages.gpen import CONFIGS, FullGenerator

    torch.manual_seed(0)
    path = tmp / f"GPEN-BFR-{size}.pth"
    torch.save(FullGenerator(size, 512, 8, **CONFIGS[size]).state_dict(), path)
    return build("faces_restored", "gpen", {"size": size, "device": device}, str(path))


def schp(size: int, device: str, tmp: Path):
    import torch

    from pipeline.stages.schp import LABEL_SETS, SCHPNet

    torch.manual_seed(0)
    path = tmp / "exp-schp-201908261155-lip.pth"
    net = SCHPNet(len(LABEL_SETS["lip"]))
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    return build("parsing", "schp-lip", {"input_size": size, "device": device}, str(path))


def timed(backend, images, items, batch: int) -> tuple[float, list[dict]]:
    backend.batch(images[:batch], items[:batch])  # warm-up (allocator, cuDNN autotune)
    t0 = time.perf_counter()
    out = []
    for i in range(0, len(items), batch):
        out += backend.batch(images[i : i + batch], items[i : i + batch])
    if backend.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    return len(items) / (time.perf_counter() - t0), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--faces", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=256, choices=(256, 512))
    ap.add_argument("--schp-size", type=int, default=473, help="SCHP's input (LIP: 473); 0 skips SCHP")
    ap.add_argument("--crops", type=int, default=32, help="person crops (128×64) for SCHP")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    items = [Item(j, f"f{j}", {"faces": {"crop_png": encode_rgb(rng.integers(0, 256, (224, 224, 3), np.uint8)),
                                         "found": np.bool_(True)}}) for j in range(a.faces)]
    images = [np.zeros((8, 8, 3), np.uint8)] * a.faces
    with tempfile.TemporaryDirectory() as tmp:
        backend = gpen(a.size, a.device, Path(tmp))
        one, out1 = timed(backend, images, items, 1)
        many, outn = timed(backend, images, items, a.batch)
    diff = max(int(np.abs(decode_rgb(x["restored_png"]).astype(int) - decode_rgb(y["restored_png"]).astype(int)).max())
               for x, y in zip(out1, outn, strict=True))
    print(f"GPEN-BFR-{a.size} on {a.device}, {a.faces} faces: batch 1 {one:.2f} faces/s, batch {a.batch} "
          f"{many:.2f} faces/s, ratio {many / one:.2f}x; max |difference| {diff} (uint8)", flush=True)
    if a.schp_size:
        crops = [rng.integers(0, 256, (128, 64, 3), np.uint8) for _ in range(a.crops)]
        items = [Item(j, f"p{j}") for j in range(a.crops)]
        with tempfile.TemporaryDirectory() as tmp:
            backend = schp(a.schp_size, a.device, Path(tmp))
            one, out1 = timed(backend, crops, items, 1)
            many, outn = timed(backend, crops, items, a.batch)
        same = np.mean([np.mean(decode_png(x["labels_png"]) == decode_png(y["labels_png"]))
                        for x, y in zip(out1, outn, strict=True)])
        print(f"SCHP-LIP {a.schp_size}x{a.schp_size} on {a.device}, {a.crops} crops: batch 1 {one:.2f} img/s, batch "
              f"{a.batch} {many:.2f} img/s, ratio {many / one:.2f}x; labels equal {100 * same:.3f} %")


if __name__ == "__main__":
    main()
