"""Images per second of learned stage backends called one image at a time vs in batches (Backend.batch).

    python benchmarks/bench_batched_backends.py [--device cuda] [--batch 16] [--images 32]
                                                [--backends alphapose retinaface schp gpen sam] [--sam-type vit_b]

Random weights in the official layouts (no download): the speed of a forward pass does not depend on the values.
Each backend is timed on the same inputs (128×64 person crops; 224×224 face crops for GPEN) at batch 1 and at
--batch, after one warm-up call, and the outputs are compared: the fraction of images whose record is equal
within the backend's tolerance (keypoints 1e-3 px; RetinaFace's found flag and box 0.011 px, its 2-decimal
rounding; GPEN 1 in uint8; SCHP labels and SAM masks ≥ 99 % of pixels —
random weights leave argmaxes and thresholds near ties, so a few pixels may move).
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
from pipeline.stages.store import decode_png, encode_rgb  # noqa: E402


def random_backend(name: str, device: str, tmp: Path, sam_type: str):
    """(backend, inputs are faces?) with random weights saved in the backend's own checkpoint layout."""
    import torch

    torch.manual_seed(0)
    if name == "gpen":
        from pipeline.stages.gpen import CONFIGS, FullGenerator

        torch.save(FullGenerator(256, 512, 8, **CONFIGS[256]).state_dict(), tmp / "g.pth")
        return build("faces_restored", "gpen", {"size": 256, "device": device}, str(tmp / "g.pth")), True
    if name == "schp":
        from pipeline.stages.schp import LABEL_SETS, SCHPNet

        net = SCHPNet(len(LABEL_SETS["lip"]))
        torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp / "s.pth")
        return build("parsing", "schp-lip", {"device": device}, str(tmp / "s.pth")), False
    if name == "alphapose":
        from pipeline.stages.fastpose import FastPose

        torch.save(FastPose().state_dict(), tmp / "fast_res50_256x192.pth")
        return build("keypoints", "alphapose", {"device": device}, str(tmp / "fast_res50_256x192.pth")), False
    if name == "retinaface":
        from retinaface.predict_single import Model

        torch.save(Model(max_size=320).model.state_dict(), tmp / "retinaface.pth")
        # a low threshold: the random network's best anchors become detections, so boxes are compared too
        return build("faces", "retinaface", {"confidence": 0.5, "device": device}, str(tmp / "retinaface.pth")), False
    if name == "sam":
        from pipeline.stages.silhouettes import sam_architecture

        torch.save(sam_architecture(sam_type).state_dict(), tmp / "sam.pth")
        return build("silhouettes", "sam", {"model_type": sam_type, "device": device}, str(tmp / "sam.pth")), False
    raise SystemExit(f"unknown backend {name!r}")


def timed(backend, images, items, batch: int) -> tuple[float, list[dict]]:
    import torch

    backend.batch(images[:batch], items[:batch])  # warm-up (allocator, cuDNN autotune)
    t0 = time.perf_counter()
    out = []
    for i in range(0, len(items), batch):
        out += backend.batch(images[i : i + batch], items[i : i + batch])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(items) / (time.perf_counter() - t0), out


def agree(name: str, a: dict, b: dict) -> bool:
    if name == "retinaface":
        return bool(a["found"] == b["found"]) and (not a["found"] or np.allclose(a["box"], b["box"], atol=0.011))
    if name == "alphapose":
        return bool(np.allclose(a["keypoints"], b["keypoints"], atol=1e-3))
    if name == "gpen":
        x, y = (decode_png(r["restored_png"]).astype(int) for r in (a, b))
        return int(np.abs(x - y).max()) <= 1
    field = "labels_png" if name == "schp" else "mask_png"
    return float(np.mean(decode_png(a[field]) == decode_png(b[field]))) >= 0.99


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--backends", nargs="+", default=["alphapose", "retinaface", "schp", "gpen", "sam"])
    ap.add_argument("--sam-type", default="vit_b", choices=("vit_b", "vit_l", "vit_h", "tiny"))
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (128, 64, 3), np.uint8) for _ in range(a.images)]
    # face keypoints for RetinaFace's head region (the same square region in every crop, as real crops mostly give)
    kp = np.zeros((17, 3), np.float32)
    kp[:5] = [[32, 20, 0.9], [28, 17, 0.9], [36, 17, 0.9], [24, 19, 0.9], [40, 19, 0.9]]
    head = {"keypoints": {"found": np.bool_(True), "keypoints": kp}}
    faces = [encode_rgb(rng.integers(0, 256, (224, 224, 3), np.uint8)) for _ in range(a.images)]
    print(f"{'backend':<10} {'device':<6} {'images':>6} {'batch 1 img/s':>14} {f'batch {a.batch} img/s':>15} "
          f"{'ratio':>6}  agree", flush=True)
    for name in a.backends:
        with tempfile.TemporaryDirectory() as tmp:
            backend, on_faces = random_backend(name, a.device, Path(tmp), a.sam_type)
            items = [Item(j, f"x{j}", {"faces": {"crop_png": faces[j], "found": np.bool_(True)}} if on_faces else
                          head if name == "retinaface" else {}) for j in range(a.images)]
            one, out1 = timed(backend, crops, items, 1)
            many, outn = timed(backend, crops, items, a.batch)
        same = sum(agree(name, x, y) for x, y in zip(out1, outn, strict=True))
        print(f"{name:<10} {a.device:<6} {a.images:>6} {one:>14.2f} {many:>15.2f} {many / one:>5.2f}x  "
              f"{same}/{a.images}", flush=True)


if __name__ == "__main__":
    main()
