"""DeSKPro's inference cost against DeSKPro* (the teacher variant): parameters and images per second at test.

python benchmarks/bench_deskpro_inference.py [--batch 8] [--batches 3] [--threads 2] [--device cpu] [--gpen-size 512]

Both read the body (384×128) and a detected face; DeSKPro feeds the low-resolution crop to the student, DeSKPro*
first restores the face with GPEN (the paper's §3.3 point: "extra computational costs for face restoration")
and feeds it to the teacher. Face detection is common to both and not timed. Weights are random (the cost does
not depend on them); features are flip-summed as evaluation computes them (two passes per image).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_timing import params, parse_common, per_second  # noqa: E402

from pipeline.stages.gpen import CONFIGS, FullGenerator  # noqa: E402
from trainer.features import flip_images  # noqa: E402
from trainer.models.deskpro import deskpro_net  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpen-size", type=int, default=512, choices=sorted(CONFIGS))
    ap.add_argument("--identities", type=int, default=150, help="classifier width (PRCC: 150); not used at test")
    a, device = parse_common(ap)
    net = deskpro_net(a.identities).to(device).eval()
    gpen = FullGenerator(a.gpen_size, 512, 8, **CONFIGS[a.gpen_size]).to(device).eval()
    b = a.batch
    x = {"body": torch.randn(b, 3, 384, 128, device=device), "face": torch.randn(b, 3, 224, 224, device=device),
         "face_found": torch.ones(b, device=device)}
    lr_face = torch.randn(b, 3, a.gpen_size, a.gpen_size, device=device)

    @torch.no_grad()
    def deskpro():
        net.test_features({k: u + v for (k, u), v in zip(net(x).items(), net(flip_images(x)).values(), strict=True)})

    @torch.no_grad()
    def deskpro_star():
        restored = torch.nn.functional.interpolate(gpen(lr_face), size=224, mode="bilinear", antialias=True)
        deskpro_inputs = dict(x, face=restored)
        net.test_features({k: u + v for (k, u), v in zip(net(deskpro_inputs).items(),
                                                         net(flip_images(deskpro_inputs)).values(), strict=True)})

    # at test the classifiers are not used: count what runs
    classifier = sum(p.numel() for n, p in net.named_parameters() if n.endswith("classifier.weight"))
    test_params = params(net) - classifier
    fast = per_second(deskpro, b, a.batches)
    slow = per_second(deskpro_star, b, a.batches)
    print(f"device {device}, {a.threads} threads, batch {b}, {a.batches} batches, flip-summed test features")
    print(f"DeSKPro   (student on low-resolution faces): {test_params / 1e6:.2f} M parameters at test, "
          f"{fast:.2f} images/s")
    print(f"DeSKPro*  (GPEN-BFR-{a.gpen_size} + teacher):           {(test_params + params(gpen)) / 1e6:.2f} M "
          f"parameters at test, {slow:.2f} images/s")
    print(f"DeSKPro* / DeSKPro: {(test_params + params(gpen)) / test_params:.1f}x the parameters, "
          f"{fast / slow:.1f}x the time per image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
