"""Process-group helpers. One code path: a single process is world size 1; DDP on CPU uses gloo."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns whether it did."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return is_distributed()
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether `flag` is true on any process (itself when not distributed)."""
    if not is_distributed():
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class _GatherLocalGrad(torch.autograd.Function):
    """all_gather whose backward keeps only this process's slice of the gradient (as CAL's GatherLayer)."""

    @staticmethod
    def forward(ctx, x):
        out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        return grads[dist.get_rank()]


def gather_with_local_grad(x: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return x
    if not x.is_floating_point():
        out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out)
    return torch.cat(_GatherLocalGrad.apply(x))


def average_gradients(params) -> None:
    """All-reduce-average the gradients of parameters that DDP does not manage."""
    if not is_distributed():
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= dist.get_world_size()


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Give every process rank `src`'s parameters (DDP does this for the modules it wraps)."""
    if not is_distributed():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src)
