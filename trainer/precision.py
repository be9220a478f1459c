"""Mixed precision as one object: autocast + (on CUDA fp16) a GradScaler; a no-op when disabled.

It also watches every optimiser step for non-finite values: a loss that reaches backward or a gradient that is NaN
or infinite is recorded in `problems` and its step is not taken, so the weights keep their last finite values; the
engine stops the training at that step (trainer/engine.py). The one exception is the GradScaler's own business:
with fp16 it provokes inf gradients on purpose while it searches its scale, skips those steps itself and lowers the
scale; they are counted in `skipped_steps` (history.jsonl's amp_skipped_steps), not treated as divergence.
"""
from __future__ import annotations

import contextlib

import torch


def _grads(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


def gradients_finite(optimizer: torch.optim.Optimizer) -> bool:
    grads = _grads(optimizer)
    # one norm over all gradients: a single device sync, and NaN or inf anywhere makes it non-finite
    return not grads or bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))


class Precision:
    def __init__(self, device: torch.device, amp: bool):
        self.device_type = device.type
        self.enabled = amp
        self.dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")
        self.problems: list[str] = []  # what was non-finite since the engine last asked (take_problems)
        self.skipped_steps = 0  # steps the GradScaler skipped while finding its scale

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        if not bool(torch.isfinite(loss.detach()).all()):
            self.problems.append(f"the loss passed to backward is {loss.detach().float().sum().item()}")
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler.is_enabled():  # the scaler checks (unscaled) gradients itself and skips a step with inf
            self.scaler.step(optimizer)
            return
        self.step_unscaled(optimizer)

    def step_unscaled(self, optimizer: torch.optim.Optimizer) -> None:
        """A step of an optimiser whose loss was not scaled (a method's second optimiser, e.g. 3DSL's
        discriminator): taken only if the loss and its gradients are finite."""
        if not gradients_finite(optimizer):
            self.problems.append(f"a gradient of {type(optimizer).__name__} optimiser is NaN or infinite")
        if self.problems:
            return
        optimizer.step()

    def update(self) -> None:
        if not self.scaler.is_enabled():
            return
        before = self.scaler.get_scale()
        self.scaler.update()
        if self.scaler.get_scale() < before:  # the scaler lowers its scale exactly when it skipped the step
            self.skipped_steps += 1

    def take_problems(self) -> list[str]:
        problems, self.problems = self.problems, []
        return problems
