"""Run-level facts recorded with results: device choice, seeding, git commit, the hardware that computed."""
from __future__ import annotations

import platform
import random
import subprocess
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import InputError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def git_commit(where: str | Path = ".") -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def hardware(device: torch.device) -> str:
    """The processor that computes on `device`, for a run's provenance: the same commit, seed and data give
    results that differ between processors (PyTorch, oneDNN and MKL pick kernels by instruction set), so a
    record says where it was made — e.g. 'AMD EPYC (AVX512 kernels)' or 'NVIDIA H100 80GB HBM3'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return str(device)
    return f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()} kernels)"


def cpu_model() -> str:
    """The CPU's model name: /proc/cpuinfo's on Linux (platform.processor() there is often empty), else what
    the platform module knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"
