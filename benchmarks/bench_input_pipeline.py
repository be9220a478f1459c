"""CPU time per training image in a loader worker: CAL's augmentation in the worker vs on the training device.

    python benchmarks/bench_input_pipeline.py [--height 384 --width 192] [--images 512] [--batch 32]
                                               [--device cuda]

Both pipelines read the same image pack (synthetic person crops 200-400 px tall, JPEG as images.h5 stores them),
draw the same augmentation (trainer.transforms.TrainTransform, CAL's probabilities 0.5 each) and give identical
tensors on the CPU (tests/test_transforms.py):
  worker   the worker decodes, resizes, crops ×1.125, flips, normalises to float, erases; the batch is float32
  device   the worker decodes, resizes and draws; the batch is uint8 + draws; apply_draws crops, flips, normalises
           and erases the whole batch on --device
A worker is one process with one torch thread, so the figures are timed that way: µs per image of the worker's
work (item + its share of collating the batch) and the images/s one worker can deliver, plus µs per image of the
batched work left to the device (on a CPU device that is the training process's time).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.imagepack import ImagePack, write_pack  # noqa: E402
from pipeline.synthetic import SyntheticSpec, generate  # noqa: E402
from trainer.samplers import Draw  # noqa: E402
from trainer.transforms import TrainTransform, finish_batch  # noqa: E402


def per_image_us(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e6 / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=192)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many passes")
    a = ap.parse_args()
    torch.set_num_threads(1)
    device = torch.device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        per_cam = max(1, a.images // (3 * 40))
        generate(SyntheticSpec(train_ids=30, test_ids=10, val_ids=0, images_per_camera=per_cam, min_height=200,
                               max_height=400), tmp / "raw", jobs=os.cpu_count() or 1, progress=False)
        files = sorted(str(p.relative_to(tmp / "raw")) for p in (tmp / "raw").rglob("*.jpg"))[: a.images]
        write_pack(files, tmp / "raw", tmp / "images.h5", "bench", progress=False)
        pack = ImagePack(tmp / "images.h5")
        n = len(files)
        keys = [Draw(i, 1000 + i) for i in range(n)]
        batches = [keys[i: i + a.batch] for i in range(0, n - a.batch + 1, a.batch)]
        used = len(batches) * a.batch

        def decode_only():
            for k in keys[:used]:
                pack.image(k.index)

        rows = {}
        for name, on_device in (("worker", False), ("device", True)):
            t = TrainTransform(a.height, a.width, 0.5, 0.5, 0.5, on_device=on_device)
            collated = []

            def worker(t=t, collated=collated):
                collated.clear()
                for b in batches:
                    collated.append(default_collate([t(pack.image(k.index), torch.Generator().manual_seed(k.seed))
                                                     for k in b]))

            def on_the_device(collated=collated):
                for batch in collated:
                    x = finish_batch({k: v.to(device) for k, v in batch.items()} if isinstance(batch, dict)
                                     else batch.to(device))
                if device.type == "cuda":
                    torch.cuda.synchronize()
                return x

            worker_us = min(per_image_us(worker, used) for _ in range(a.repeats))
            device_us = min(per_image_us(on_the_device, used) for _ in range(a.repeats)) if on_device else 0.0
            first = collated[0]
            nbytes = sum(v.numel() * v.element_size() for v in first.values()) if isinstance(first, dict) else \
                first.numel() * first.element_size()
            rows[name] = (worker_us, device_us, nbytes)
        decode_us = min(per_image_us(decode_only, used) for _ in range(a.repeats))

    print(f"{used} images ({n} packed), {a.height}×{a.width}, batch {a.batch}, one worker = 1 torch thread; "
          f"device {device}")
    print(f"decode alone: {decode_us:.0f} µs/image")
    print(f"{'pipeline':<8} {'worker µs/img':>14} {'images/s/worker':>16} {'device µs/img':>14} {'batch bytes':>12}")
    for name, (w, d, nbytes) in rows.items():
        print(f"{name:<8} {w:>14.0f} {1e6 / w:>16.0f} {d:>14.0f} {nbytes:>12,d}")
    (w0, _, b0), (w1, d1, b1) = rows["worker"], rows["device"]
    print(f"worker CPU time per image: {w0 / w1:.2f}× less on the device pipeline; batch bytes to copy: "
          f"{b0 / b1:.2f}× fewer; the device spends {d1:.0f} µs/image on what the worker no longer does")


if __name__ == "__main__":
    main()
