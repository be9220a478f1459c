"""Silhouette rendering cost: the soft rasteriser on a batch of 64 body meshes at the training resolutions,
forward + backward, time and peak memory — its written-out gradient against autograd's through the same
arithmetic (checkpointed chunks, as before the gradient was written out) — and, on one mesh, against a dense
rasteriser (every pixel × every face, the tensor the windowed one avoids), all in the same run.

python benchmarks/bench_renderer.py [--device cpu|cuda] [--batch 64]
Each measurement runs in its own process so its peak memory (RSS on CPU, CUDA allocator peak on GPU) is its own.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def measure(kind: str, batch: int, height: int, width: int, device: str) -> dict:
    """kind: analytic | autograd (the soft rasteriser's two gradients) | dense."""
    import torch

    from trainer.body.geometry import axis_angle_to_rotmat, project, to_pixels, upright_root
    from trainer.body.model import BodyModel
    from trainer.body.render import _nearest_edge, soft_silhouettes
    from trainer.body.standin import write_standin

    torch.manual_seed(0)
    path = tempfile.mkdtemp() + "/STANDIN_NEUTRAL.pkl"
    write_standin(path)
    body = BodyModel(path).to(device)
    aa = 0.2 * torch.randn(batch, 24, 3, device=device)
    aa[:, 0] = upright_root().to(device)
    aa[:, 16, 2], aa[:, 17, 2] = -1.1, 1.1
    vertices = body(torch.randn(batch, 10, device=device) * 0.5, axis_angle_to_rotmat(aa))[0]
    xy = to_pixels(project(vertices, torch.tensor([[0.9, 0.0, 0.0]], device=device).expand(batch, 3)), height, width)
    xy = xy.detach().requires_grad_()

    def dense():
        tri = xy[:, body.faces]  # B×F×3×2 against all pixels: B×(H·W)×F
        rows, cols = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device),
                                    indexing="ij")
        px = (cols.reshape(1, 1, -1) + 0.5).expand(batch, tri.shape[1], -1).reshape(-1, height * width)
        py = (rows.reshape(1, 1, -1) + 0.5).expand(batch, tri.shape[1], -1).reshape(-1, height * width)
        d2, inside = _nearest_edge(px, py, tri.reshape(-1, 3, 2))[:2]
        x = torch.where(inside, d2, -d2) / 0.25
        acc = -torch.nn.functional.softplus(x).view(batch, -1, height * width).sum(1)
        return 1 - torch.exp(acc)

    run = dense if kind == "dense" else (lambda: soft_silhouettes(xy, body.faces, height, width, 0.25, gradient=kind))
    run().sum().backward()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(3):
        xy.grad = None
        t0 = time.perf_counter()
        run().sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"kind": kind, "batch": batch, "size": f"{height}x{width}", "seconds": min(times), "peak_mib": peak / 2**20}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(a.one[0], int(a.one[1]), int(a.one[2]), int(a.one[3]), a.device)))
        return 0
    runs = [(kind, a.batch, h, w) for h, w in ((64, 32), (128, 64)) for kind in ("analytic", "autograd")]
    runs += [("analytic", 1, 64, 32), ("dense", 1, 64, 32)]
    results = []
    for kind, b, h, w in runs:
        out = subprocess.run([sys.executable, __file__, "--device", a.device, "--one", kind, str(b), str(h), str(w)],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{r['kind']:>8}  batch {r['batch']:>3}  {r['size']:>6}: forward+backward {r['seconds']:7.3f} s  "
              f"peak {'GPU' if a.device == 'cuda' else 'RSS'} {r['peak_mib']:8.0f} MiB", flush=True)
    for written, taped in ((results[0], results[1]), (results[2], results[3])):
        speedup = taped["seconds"] / written["seconds"]
        memory = written["peak_mib"] / taped["peak_mib"]
        print(f"batch {a.batch} at {written['size']}: written-out gradient {speedup:.1f}x faster than autograd's, "
              f"peak memory x{memory:.2f}")
    one_soft, one_dense = results[4], results[5]
    print(f"one mesh at 64x32: windowed vs dense — {one_dense['seconds'] / one_soft['seconds']:.1f}x faster, "
          f"{one_dense['peak_mib'] / one_soft['peak_mib']:.1f}x less peak memory "
          f"(dense for a batch of {a.batch} would need ~{a.batch} x the one-mesh tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
