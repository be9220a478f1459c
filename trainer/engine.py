"""The training loop: epochs, checkpoint every epoch (atomic), resume from the last one, logging.

Knows no method by name: it calls `method.train_step` and checkpoints the method's named modules,
optimisers and schedulers together with every random-number state, so a resumed run continues as
if it had never stopped.
"""
from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.atomic import atomic_path

from . import distributed as D
from .methods import Method
from .precision import Precision


def to_device(x, device: torch.device):
    """A batch's inputs: one tensor, or a dict of them (a method that trains on more than the image)."""
    if isinstance(x, dict):
        return {k: v.to(device, non_blocking=True) for k, v in x.items()}
    return x.to(device, non_blocking=True)


def _unwrap(m):
    return m.module if hasattr(m, "module") else m


def save_checkpoint(path: Path, method: Method, epoch: int, cfg_hash: str, precision: Precision) -> None:
    state = {
        "epoch": epoch,
        "config_hash": cfg_hash,
        "modules": {k: _unwrap(m).state_dict() for k, m in method.modules.items()},
        "optimizers": {k: o.state_dict() for k, o in method.optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in method.schedulers.items()},
        "grad_scaler": precision.scaler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, method: Method, cfg_hash: str, precision: Precision) -> int:
    """Restore everything; returns the next epoch to run."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["config_hash"] != cfg_hash:
        raise ValueError(f"{path}: checkpoint of config {state['config_hash']}, not {cfg_hash}; remove it to start over")
    for k, m in method.modules.items():
        _unwrap(m).load_state_dict(state["modules"][k])
    for k, o in method.optimizers.items():
        o.load_state_dict(state["optimizers"][k])
    for k, s in method.schedulers.items():
        s.load_state_dict(state["schedulers"][k])
    precision.scaler.load_state_dict(state["grad_scaler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state["epoch"] + 1


def fit(method: Method, loader, sampler, epochs: int, device: torch.device, precision: Precision,
        checkpoint: Path, cfg_hash: str, history: Path | None = None,
        evaluate: Callable[[int], dict] | None = None, eval_every: int = 0) -> dict:
    start = load_checkpoint(checkpoint, method, cfg_hash, precision) if checkpoint.is_file() else 0
    if start and D.rank() == 0:
        print(f"resuming from {checkpoint} at epoch {start}")
    if start == 0 and history is not None and D.rank() == 0 and history.exists():
        history.unlink()  # a fresh run (or a new config): the old history describes another run
    record: dict = {}
    for epoch in range(start, epochs):
        sampler.set_epoch(epoch)
        method.train(True)
        sums: dict[str, float] = defaultdict(float)
        steps, t0 = 0, time.time()
        for images, pids, camids, clothes in tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=None, leave=False):
            stats = method.train_step(to_device(images, device), pids.to(device), camids.to(device),
                                      clothes.to(device), epoch, precision)
            for k, v in stats.items():
                sums[k] += v
            steps += 1
        method.end_epoch(epoch)
        record = {"epoch": epoch + 1, "seconds": round(time.time() - t0, 2), "steps": steps,
                  **{k: v / max(steps, 1) for k, v in sums.items()}}
        if evaluate is not None and eval_every and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            record["eval"] = evaluate(epoch)
        if D.rank() == 0:
            save_checkpoint(checkpoint, method, epoch, cfg_hash, precision)
            line = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items() if k != "eval")
            print(line + (f" eval={json.dumps(record['eval'])}" if "eval" in record else ""), flush=True)
            if history is not None:
                with history.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
    return record
