"""Optimisers (`optim.type`) and learning-rate schedules (`optim.scheduler`) by name: every method builds
its optimisers and schedulers here from its `optim` config."""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable

import torch

from pipeline.errors import InputError
from pipeline.registry import Registry

# optim.type -> (parameters or parameter groups, optim config) -> optimiser; a group's own "lr" wins
OPTIMIZERS: Registry[Callable[[Iterable, dict], torch.optim.Optimizer]] = Registry("optimiser (optim.type)")
OPTIMIZERS.add("adam", lambda params, o: torch.optim.Adam(params, lr=o["lr"], weight_decay=o["weight_decay"]))
OPTIMIZERS.add("adamw", lambda params, o: torch.optim.AdamW(params, lr=o["lr"], weight_decay=o["weight_decay"]))
OPTIMIZERS.add("sgd", lambda params, o: torch.optim.SGD(params, lr=o["lr"], weight_decay=o["weight_decay"],
                                                        momentum=o["momentum"], nesterov=o["momentum"] > 0))


def build_optimizer(params: Iterable, optim: dict) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(optim["type"])(params, optim)


def warmup_cosine_factor(epoch: int, warmup: int, epochs: int, min_ratio: float) -> float:
    """DeSKPro's WarmupCosineAnnealingLR (its optim/warmup_cosine_scheduler.py, multiplier 1), as a factor of
    the base lr: (e+1)/warmup for e < warmup; then min + (1 − min)·(1 + cos(π(e − warmup)/(epochs − warmup − 1)))/2
    up to e = epochs; beyond, a linear decay from there over 500 more epochs, as the official code continues."""
    if epoch < warmup:
        return (epoch + 1) / warmup
    span = epochs - warmup - 1
    if span <= 0:
        raise InputError(f"optim.epochs_cosine {epochs} leaves no cosine phase after {warmup} warm-up epochs")

    def cosine(e: int) -> float:
        return min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * (e - warmup) / span)) / 2

    if epoch <= epochs:
        return cosine(epoch)
    return min_ratio + (cosine(epochs) - min_ratio) * (1 - (epoch - epochs) / 500)


# optim.scheduler -> (optimiser, optim config) -> scheduler stepped once per epoch
SCHEDULERS: Registry[Callable[[torch.optim.Optimizer, dict], torch.optim.lr_scheduler.LRScheduler]] = Registry(
    "learning-rate schedule (optim.scheduler)")
SCHEDULERS.add("multistep", lambda opt, o: torch.optim.lr_scheduler.MultiStepLR(opt, o["milestones"], o["gamma"]))
SCHEDULERS.add("warmup_cosine", lambda opt, o: torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(
    warmup_cosine_factor, warmup=o["warmup_epochs"], epochs=o["epochs_cosine"], min_ratio=o["min_lr_ratio"])))


def build_scheduler(optimizer: torch.optim.Optimizer, optim: dict) -> torch.optim.lr_scheduler.LRScheduler:
    return SCHEDULERS.get(optim["scheduler"])(optimizer, optim)
