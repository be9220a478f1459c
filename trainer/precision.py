"""Mixed precision as one object: autocast + (on CUDA fp16) a GradScaler; a no-op when disabled."""
from __future__ import annotations

import contextlib

import torch


class Precision:
    def __init__(self, device: torch.device, amp: bool):
        self.device_type = device.type
        self.enabled = amp
        self.dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.step(optimizer)

    def update(self) -> None:
        self.scaler.update()
