"""The training loop: epochs, checkpoint every epoch (atomic), resume from the last one, logging.

Knows no method by name: it calls `method.train_step` and checkpoints the method's named modules,
optimisers and schedulers together with every random-number state, so a resumed run continues as
if it had never stopped.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pipeline.atomic import write_text
from pipeline.errors import InputError, UserError
from pipeline.progress import progress as show_progress
from pipeline.weights import load_torch_file, save_torch_file

from . import distributed as D
from .methods import Method
from .precision import Precision
from .run_identity import changed, run_key
from .runtime import git_commit
from .transforms import finish_batch


def to_device(x, device: torch.device):
    """A batch's inputs: one tensor, or a dict of them (a method that trains on more than the image; an image the
    device augments is itself a dict: trainer.transforms.finish_batch)."""
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    return x.to(device, non_blocking=True)


def _unwrap(m):
    return m.module if hasattr(m, "module") else m


CHECKPOINT_HINT = "remove the run's checkpoints/ folder to start over"


class TrainingDiverged(UserError, ArithmeticError):
    """A loss term or gradient became NaN or infinite: the training stops at that step and writes no model."""


def check_finite_step(stats: dict[str, float], precision: Precision, epoch: int, epochs: int, step: int,
                      steps: int, device: torch.device) -> None:
    """Stop at the first step whose loss terms (a method's stats) or gradients are not finite. Under DDP every
    process stops at the same step, whichever saw it (one stopping alone would leave the others waiting)."""
    terms = [k for k, v in stats.items() if not math.isfinite(v)]
    problems = precision.take_problems()
    if D.any_rank(bool(terms or problems), device):
        finite = ", ".join(f"{k}={v:.4g}" for k, v in stats.items() if k not in terms)
        what = (", ".join(f"{k}={stats[k]}" for k in terms) if terms
                else "; ".join(problems) if problems else "another process's loss or gradient")
        raise TrainingDiverged(
            f"training diverged at epoch {epoch + 1}/{epochs}, step {step + 1}/{steps}: {what} is not finite "
            f"(the step's other values: {finite or 'none'}); no model was written (lower optim.lr, or check the "
            f"inputs). Checkpoints of the finished epochs are kept")


def _rng_state() -> dict:
    """Every random-number state, as tensors and plain values (a checkpoint must load with weights_only)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    n = rng["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(rng["python"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_checkpoint(path: Path, method: Method, epoch: int, identity: dict, precision: Precision,
                    history: list[dict]) -> None:
    """history: every epoch's record so far; a resumed run rewrites history.jsonl from it, so the file never
    misses or repeats an epoch whenever the process was killed."""
    state = {
        "kind": "ccreid training checkpoint",
        "epoch": epoch,
        "run": identity,
        "history": history,
        "git_commit": git_commit(Path(__file__).parent),
        "modules": {k: _unwrap(m).state_dict() for k, m in method.modules.items()},
        "optimizers": {k: o.state_dict() for k, o in method.optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in method.schedulers.items()},
        "grad_scaler": precision.scaler.state_dict(),
        "rng": _rng_state(),
    }
    save_torch_file(state, path)


def load_checkpoint(path: Path, method: Method, identity: dict, precision: Precision) -> tuple[int, list[dict]]:
    """Restore everything; returns the next epoch to run and the history so far. A checkpoint of another
    run is refused."""
    state = load_torch_file(path, "training checkpoint", CHECKPOINT_HINT)
    if not isinstance(state, dict) or state.get("kind") != "ccreid training checkpoint":
        raise InputError(f"{path}: not a ccreid training checkpoint; {CHECKPOINT_HINT}")
    if state["run"] != identity:
        raise InputError(f"{path}: checkpoint of another run ({', '.join(changed(state['run'], identity))} differ); "
                         f"{CHECKPOINT_HINT}")
    if state.get("git_commit") != git_commit(Path(__file__).parent) and D.rank() == 0:
        print(f"note: {path} was written by code at {state.get('git_commit')}; resuming with "
              f"{git_commit(Path(__file__).parent)}", flush=True)
    for k, m in method.modules.items():
        _unwrap(m).load_state_dict(state["modules"][k])
    for k, o in method.optimizers.items():
        o.load_state_dict(state["optimizers"][k])
    for k, s in method.schedulers.items():
        s.load_state_dict(state["schedulers"][k])
    precision.scaler.load_state_dict(state["grad_scaler"])
    _set_rng_state(state["rng"])
    return state["epoch"] + 1, list(state["history"])


def checkpoint_path(out: Path, identity: dict) -> Path:
    """out/checkpoints/<run key>/last.pt: a run that reads anything different gets another folder."""
    return out / "checkpoints" / run_key(identity) / "last.pt"


def discard_other_runs(out: Path, keep: Path, identity: dict) -> None:
    """Checkpoints of runs over other data or config can never be resumed by this target: remove them,
    saying what differed, so a rerun after a data change starts over and disk does not fill with them."""
    root = out / "checkpoints"
    if not root.is_dir():
        return
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p != keep.parent):
        what = ""
        if (folder / "last.pt").is_file():
            try:
                previous = load_torch_file(folder / "last.pt", "training checkpoint")
                what = f" ({', '.join(changed(previous['run'], identity))} changed)"
            except (InputError, KeyError, TypeError):  # unreadable or foreign: it goes either way
                what = " (unreadable)"
        print(f"discarding {folder}: a checkpoint of an earlier run{what}; this run starts over", flush=True)
        shutil.rmtree(folder)


def fit(method: Method, loader, sampler, epochs: int, device: torch.device, precision: Precision,
        checkpoint: Path, identity: dict, history: Path | None = None,
        evaluate: Callable[[int], dict] | None = None, eval_every: int = 0,
        on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train from the checkpoint (if this run has one) to `epochs`; identity: what the run reads
    (trainer.run_identity), recorded in and checked against the checkpoint. on_epoch: called on rank 0 with
    each epoch's record once it is checkpointed and in history.jsonl."""
    start, records = load_checkpoint(checkpoint, method, identity, precision) if checkpoint.is_file() else (0, [])
    if start and D.rank() == 0:
        print(f"resuming from {checkpoint} at epoch {start}")
    if history is not None and D.rank() == 0:
        # what the checkpoint says happened: nothing for a fresh run, the resumed epochs otherwise
        write_text(history, "".join(json.dumps(r) + "\n" for r in records))
    record: dict = {}
    for epoch in range(start, epochs):
        sampler.set_epoch(epoch)
        method.train(True)
        sums: dict[str, float] = defaultdict(float)
        steps, t0, skipped = 0, time.time(), precision.skipped_steps
        for images, pids, camids, clothes in show_progress(loader, f"epoch {epoch + 1}/{epochs}", unit="steps",
                                                           leave=False):
            stats = method.train_step(finish_batch(to_device(images, device)), pids.to(device), camids.to(device),
                                      clothes.to(device), epoch, precision)
            check_finite_step(stats, precision, epoch, epochs, steps, len(loader), device)
            for k, v in stats.items():
                sums[k] += v
            steps += 1
        # the learning rates this epoch ran with (before the schedulers step), and its throughput
        lrs = {f"lr_{name}": opt.param_groups[0]["lr"] for name, opt in method.optimizers.items()}
        seconds = time.time() - t0
        method.end_epoch(epoch)
        record = {"epoch": epoch + 1, "seconds": round(seconds, 2), "steps": steps,
                  "images_per_second": round(steps * (loader.batch_size or 0) / max(seconds, 1e-9), 2), **lrs,
                  **{k: v / max(steps, 1) for k, v in sums.items()}}
        if precision.scaler.is_enabled():  # fp16 steps the GradScaler skipped (an inf gradient while it scales)
            record["amp_skipped_steps"] = precision.skipped_steps - skipped
        if evaluate is not None and eval_every and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            record["eval"] = evaluate(epoch)
        records.append(record)
        if D.rank() == 0:
            save_checkpoint(checkpoint, method, epoch, identity, precision, records)
            line = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in record.items() if k != "eval")
            print(line + (f" eval={json.dumps(record['eval'])}" if "eval" in record else ""), flush=True)
            if history is not None:
                with history.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
            if on_epoch is not None:  # e.g. TensorBoard (trainer/scalars.py): the record as history.jsonl has it
                on_epoch(record)
    return record
