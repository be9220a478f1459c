"""What the inference benchmarks share: their common options, parameter counts and a throughput timer."""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def per_second(fn: Callable[[], object], batch: int, batches: int) -> float:
    """Images per second of `fn` (one batch per call) over `batches` calls after one warm-up call."""
    fn()
    t0 = time.perf_counter()
    for _ in range(batches):
        fn()
    return batch * batches / (time.perf_counter() - t0)


def parse_common(ap: argparse.ArgumentParser) -> tuple[argparse.Namespace, torch.device]:
    """--batch, --batches, --threads, --device added to `ap` and parsed; torch's threads set; the device."""
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    return a, torch.device(a.device)
