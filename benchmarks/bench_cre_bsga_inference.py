"""CRE+BSGA's inference cost with BSGA at test (every test image parsed for its body mask) and without it.

python benchmarks/bench_cre_bsga_inference.py [--batch 8] [--batches 3] [--threads 2] [--device cpu]
       [--backbone resnet50]

With BSGA at test an image needs its body mask: SCHP (ATR, 512×512 input, the parser CRE+BSGA names) runs first,
then the network with the attention; without it only the network runs and the stage-2 map passes unweighted.
Weights are random (the cost does not depend on them); features are flip-summed as evaluation computes them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_timing import params, parse_common, per_second  # noqa: E402

from pipeline.stages.schp import SCHPNet  # noqa: E402
from trainer.models.bsga import BSGANet  # noqa: E402

ATR_CLASSES, ATR_SIZE = 18, 512


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="resnet50")
    a, device = parse_common(ap)
    with_bsga = BSGANet(a.backbone, bsga=True, bsga_at_test=True).to(device).eval()
    without = BSGANet(a.backbone, bsga=True, bsga_at_test=False).to(device).eval()
    parser = SCHPNet(ATR_CLASSES).to(device).eval()
    b = a.batch
    image = torch.randn(b, 3, 256, 128, device=device)
    to_parse = torch.randn(b, 3, ATR_SIZE, ATR_SIZE, device=device)

    @torch.no_grad()
    def plain():
        without(image) + without(image.flip(3))

    @torch.no_grad()
    def parsed():
        logits = parser(to_parse)  # fusion logits at 1/4 of the input
        mask = torch.nn.functional.interpolate((logits.argmax(1, keepdim=True) > 0).float(), size=(256, 128))
        with_bsga({"image": image, "body_mask": mask}) + with_bsga({"image": image.flip(3), "body_mask": mask.flip(3)})

    fast, slow = per_second(plain, b, a.batches), per_second(parsed, b, a.batches)
    net_params = params(with_bsga)
    print(f"device {device}, {a.threads} threads, batch {b}, {a.batches} batches, {a.backbone}, flip-summed features")
    print(f"without BSGA at test (no parsing): {net_params / 1e6:.2f} M parameters, {fast:.2f} images/s")
    print(f"with BSGA at test (SCHP-ATR + net): {(net_params + params(parser)) / 1e6:.2f} M parameters, "
          f"{slow:.2f} images/s")
    print(f"BSGA's own parameters: {params(with_bsga.bsga)}; with / without: {fast / slow:.1f}x the time per image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
