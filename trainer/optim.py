"""Optimisers by name (`optim.type`): every method builds its optimisers here from its `optim` config."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from pipeline.registry import Registry

# optim.type -> (parameters or parameter groups, optim config) -> optimiser; a group's own "lr" wins
OPTIMIZERS: Registry[Callable[[Iterable, dict], torch.optim.Optimizer]] = Registry("optimiser (optim.type)")
OPTIMIZERS.add("adam", lambda params, o: torch.optim.Adam(params, lr=o["lr"], weight_decay=o["weight_decay"]))
OPTIMIZERS.add("adamw", lambda params, o: torch.optim.AdamW(params, lr=o["lr"], weight_decay=o["weight_decay"]))
OPTIMIZERS.add("sgd", lambda params, o: torch.optim.SGD(params, lr=o["lr"], weight_decay=o["weight_decay"],
                                                        momentum=o["momentum"], nesterov=o["momentum"] > 0))


def build_optimizer(params: Iterable, optim: dict) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(optim["type"])(params, optim)
