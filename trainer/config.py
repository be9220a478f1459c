"""Method configuration: config/methods/<method>.yaml = paper defaults + named scales (demo, tiny, ...).

A method file may start from another (`base: baseline.yaml`, relative to it) and list only what it adds or
changes: its `defaults` are merged onto the base's (new keys allowed, existing ones keep their type), its
`scales` onto the base's scales of the same name (a scale only the base defines is inherited whole), and
`requires` / `body_model` are the base's unless it says otherwise. What is hashed and saved in
train_config.json is always the fully merged result.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

from pipeline.errors import InputError
from pipeline.yamlfile import load_yaml, loads_yaml


class ConfigError(InputError):
    pass


def _kind(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def coerce(default, value, where: str):
    """`value` in the type of `default`, the paper value it replaces: integers are accepted for numbers, and
    a string that reads as a number for a number (YAML 1.1 reads 5e-4 as a string); anything else of
    another type is refused, naming the key and the expected type."""
    if default is None:
        return copy.deepcopy(value)
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(default, float) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    elif isinstance(default, int) and isinstance(value, int):
        return value
    elif isinstance(default, str) and isinstance(value, str):
        return value
    elif isinstance(default, list) and isinstance(value, list):
        if not default:
            return copy.deepcopy(value)
        return [coerce(default[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ConfigError(f"{where}: expected {_kind(default)} (like the default {default!r}), got {value!r}")


def _merge(base: dict, override: dict, where: str, extend: bool = False) -> dict:
    """`override` onto a copy of `base`; a key must exist in `base` unless `extend` (a method file adding to
    the one it inherits), and a value takes the type of the one it replaces."""
    if not isinstance(override, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {override!r}")
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in out:
            if not extend:
                raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(out))})")
            out[key] = copy.deepcopy(value)
        elif isinstance(out[key], dict):
            out[key] = _merge(out[key], value, f"{where}.{key}", extend)
        else:
            out[key] = coerce(out[key], value, f"{where}.{key}")
    return out


METHOD_FILE_KEYS = {"method", "base", "requires", "body_model", "teacher", "defaults", "dataset_defaults", "scales"}


def read_method_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A method file with its `base` chain resolved: method, requires, body_model, teacher (the method whose
    model.pt this one trains from, or None), defaults, dataset_defaults (per dataset format: changes applied
    before the scale, e.g. a paper's per-dataset loss weights), scales, and the files read."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: `base` chain loops back to itself ({' -> '.join(str(p) for p in _seen)})")
    if not path.is_file():
        raise ConfigError(f"{path}: no such method file")
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: not a method file (expected a mapping with method and defaults)")
    unknown = sorted(set(raw) - METHOD_FILE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown}; known: {sorted(METHOD_FILE_KEYS)}")
    if "method" not in raw:
        raise ConfigError(f"{path}: missing top-level key 'method'")
    if "base" not in raw:
        if "defaults" not in raw:
            raise ConfigError(f"{path}: missing top-level key 'defaults'")
        return {"method": raw["method"], "requires": list(raw.get("requires", [])),
                "body_model": bool(raw.get("body_model", False)), "teacher": raw.get("teacher"),
                "defaults": raw["defaults"], "dataset_defaults": raw.get("dataset_defaults") or {},
                "scales": raw.get("scales") or {}, "files": [str(path)]}
    base = read_method_file(path.parent / raw["base"], (*_seen, path.resolve()))
    scales = dict(base["scales"])
    for name, changes in (raw.get("scales") or {}).items():
        scales[name] = _merge(scales.get(name, {}), changes, f"{path}:scales.{name}", extend=True)
    per_dataset = dict(base["dataset_defaults"])
    for name, changes in (raw.get("dataset_defaults") or {}).items():
        per_dataset[name] = _merge(per_dataset.get(name, {}), changes, f"{path}:dataset_defaults.{name}", extend=True)
    return {"method": raw["method"], "requires": list(raw.get("requires", base["requires"])),
            "body_model": bool(raw.get("body_model", base["body_model"])),
            "teacher": raw.get("teacher", base["teacher"]), "dataset_defaults": per_dataset,
            "defaults": _merge(base["defaults"], raw.get("defaults") or {}, f"{path}:defaults", extend=True),
            "scales": scales, "files": [*base["files"], str(path)]}


def set_dotted(cfg: dict, assignment: str, where: str = "override") -> dict:
    """Apply 'a.b.c=value' (value parsed as YAML) to a copy of cfg; the key must already exist and the value
    take its type (coerce)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r}: expected key.path=value")
    dotted, raw = assignment.split("=", 1)
    override: dict = {}
    node = override
    keys = dotted.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = loads_yaml(raw, f"{where} {assignment!r}")
    return _merge(cfg, override, where)


# Values a training cannot run with, by key name wherever the key sits in a method's config: (test, what it must be).
# Learning rates: those the optimisers take (lr_reference_batch and min_lr_ratio are not rates).
_TRAINABLE = {
    "seed": (lambda v: v >= 0, "0 or more"),
    "epochs": (lambda v: v >= 1, "at least 1"),
    "batch_size": (lambda v: v >= 1, "at least 1"),
    "num_instances": (lambda v: v >= 1, "at least 1"),
    "height": (lambda v: v > 0, "positive"),
    "width": (lambda v: v > 0, "positive"),
    "lr": (lambda v: v > 0, "positive"),
    "lr_3d": (lambda v: v > 0, "positive"),
    "weight_decay": (lambda v: v >= 0, "0 or more"),
    "workers": (lambda v: v >= 0, "0 or more"),
    "eval_every": (lambda v: v >= 0, "0 or more"),
    "epsilon": (lambda v: 0 <= v < 1, "in [0, 1)"),  # label smoothing and CAL's / DeSKPro's soft targets
}


def check_trainable(cfg: dict, where: str, prefix: str = "") -> None:
    """Refuse, naming the key, a value no training can run with: NaN or an infinity anywhere, and the ranges of
    _TRAINABLE (batch size 0, lr ≤ 0, ...). Checked where a config is merged, so the workflow's plan stops on it."""
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            check_trainable(value, where, f"{name}.")
            continue
        numbers = value if isinstance(value, list) else [value]
        for v in numbers:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if not math.isfinite(v):
                raise ConfigError(f"{where}: {name} is {v}; a training needs finite numbers")
            if key in _TRAINABLE and not _TRAINABLE[key][0](v):
                raise ConfigError(f"{where}: {name} is {v}; it must be {_TRAINABLE[key][1]}")


def load_method_config(path: str | Path, scale: str | None = None, overrides: list[str] | tuple = (),
                       dataset_format: str | None = None) -> dict:
    """defaults, then the dataset format's `dataset_defaults` (when the file has some for it), then the scale,
    then the overrides. `dataset_format` is recorded in the config only when it changed something."""
    path = Path(path)
    raw = read_method_file(path)
    cfg = copy.deepcopy(raw["defaults"])
    if dataset_format in raw["dataset_defaults"]:
        cfg = _merge(cfg, raw["dataset_defaults"][dataset_format], f"{path}:dataset_defaults.{dataset_format}")
    if scale and scale != "paper":
        scales = raw["scales"]
        if scale not in scales:
            raise ConfigError(f"{path}: unknown scale {scale!r}; defined: paper, {', '.join(scales)}")
        cfg = _merge(cfg, scales[scale], f"{path}:scales.{scale}")
    for assignment in overrides:
        cfg = set_dotted(cfg, assignment, f"{path.name} override")
    check_trainable(cfg, f"{path}" + (f" at scale {scale}" if scale and scale != "paper" else "")
                    + (f" with {', '.join(overrides)}" if overrides else ""))
    cfg["method"] = raw["method"]
    cfg["scale"] = scale or "paper"
    if dataset_format in raw["dataset_defaults"]:
        cfg["dataset_defaults"] = dataset_format
    return cfg


def run_scale(workflow_config: dict, dataset: str, method: str) -> str:
    """The scale `method` trains at on `dataset` in the workflow config: `scales.<dataset>.<method>` where it sets
    one, else the dataset's `scale` (default paper). One answer for the workflow's plan and ccreid-weights."""
    own = workflow_config.get("scales", {}).get(dataset, {}).get(method)
    return own or workflow_config["datasets"][dataset].get("scale", "paper")


def config_hash(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
