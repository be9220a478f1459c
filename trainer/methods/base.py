"""The contract between a method and the engine."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..models import FeatureNet
from ..precision import Precision

METHODS: dict[str, Callable[..., "Method"]] = {}


def register(name: str):
    def wrap(cls):
        METHODS[name] = cls
        return cls

    return wrap


def build_method(cfg: dict, num_pids: int, pid2clothes: np.ndarray | None, device: torch.device) -> "Method":
    name = cfg["method"]
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name](cfg, num_pids, pid2clothes, device)


class Method:
    """A method owns its modules, optimisers and schedulers and implements one training step.

    `modules`, `optimizers` and `schedulers` are dicts so the engine can checkpoint them by name.
    """

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]

    def feature_net(self) -> FeatureNet:
        raise NotImplementedError

    def wrap_distributed(self, device: torch.device) -> None:
        """Wrap the modules that carry the backbone in DDP (called once the process group exists)."""
        raise NotImplementedError

    def train_step(self, images, pids, camids, clothes, epoch: int, precision: Precision) -> dict[str, float]:
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> None:
        for s in self.schedulers.values():
            s.step()

    def train(self, mode: bool = True) -> None:
        for m in self.modules.values():
            m.train(mode)

    @staticmethod
    def ddp(module: nn.Module, device: torch.device) -> nn.Module:
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
