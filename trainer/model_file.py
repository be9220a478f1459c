"""model.pt, the file training writes: loaded without running code and checked to be one, and its feature
network rebuilt (for evaluation, and for a method that trains from another's model, as DeSKPro's student
from its teacher)."""
from __future__ import annotations

from pathlib import Path

import torch

from pipeline.errors import InputError
from pipeline.weights import load_torch_file

from .models import build_feature_net

MODEL_HINT = "give the model.pt that `python -m trainer.train` (the workflow's train rule) writes"


def nonfinite_tensors(state_dict: dict) -> list[str]:
    """Names of the floating-point tensors holding NaN or an infinity."""
    return [k for k, v in state_dict.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def load_model_file(path: str | Path) -> dict:
    """model.pt's contents, loaded without running code (weights_only) and checked to be a model.pt."""
    state = load_torch_file(path, "trained model (model.pt)", MODEL_HINT)
    if isinstance(state, dict) and state.get("kind") == "ccreid training checkpoint":
        raise InputError(f"{path}: a training checkpoint (last.pt), not a trained model; training writes model.pt "
                         f"when it finishes — {MODEL_HINT}")
    missing = [k for k in ("feature_net", "config", "dataset") if not isinstance(state, dict) or k not in state]
    if missing:
        raise InputError(f"{path}: not a ccreid model.pt (no {missing}); {MODEL_HINT}")
    bad = nonfinite_tensors(state["feature_net"])
    if bad:  # written by a training that diverged before the engine stopped such runs: its features are NaN
        raise InputError(f"{path}: {len(bad)} of {len(state['feature_net'])} tensors of its feature net hold NaN or "
                         f"infinite values (first: {bad[0]}); the training that wrote it diverged — train it again")
    return state


def load_feature_net(path: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    state = load_model_file(path)
    m = state["config"]["model"]
    # model.pt files written before feature_net_spec existed all hold CAL's FeatureNet
    spec = state.get("feature_net_spec") or {"kind": "featurenet", "kwargs": {
        "backbone": m["backbone"], "last_stride": m["last_stride"], "pooling": m["pooling"]}}
    net = build_feature_net(spec)
    net.load_state_dict(state["feature_net"])
    return net.to(device).eval(), state
