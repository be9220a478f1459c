"""What the inference benchmarks share: parameter counts and a throughput timer."""
from __future__ import annotations

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
