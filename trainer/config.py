"""Method configuration: config/methods/<method>.yaml = paper defaults + named scales (demo, tiny, ...)."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import yaml

from pipeline.errors import InputError


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


def _merge(base: dict, override: dict, where: str) -> dict:
    if not isinstance(override, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {override!r}")
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in out:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(out))})")
        if isinstance(out[key], dict):
            out[key] = _merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = coerce(out[key], value, f"{where}.{key}")
    return out


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
    node[keys[-1]] = yaml.safe_load(raw)
    return _merge(cfg, override, where)


def load_method_config(path: str | Path, scale: str | None = None, overrides: list[str] | tuple = ()) -> dict:
    path = Path(path)
    raw = yaml.safe_load(path.read_text())
    for key in ("method", "defaults"):
        if key not in raw:
            raise ConfigError(f"{path}: missing top-level key {key!r}")
    cfg = copy.deepcopy(raw["defaults"])
    if scale and scale != "paper":
        scales = raw.get("scales", {})
        if scale not in scales:
            raise ConfigError(f"{path}: unknown scale {scale!r}; defined: paper, {', '.join(scales)}")
        cfg = _merge(cfg, scales[scale], f"{path}:scales.{scale}")
    for assignment in overrides:
        cfg = set_dotted(cfg, assignment, f"{path.name} override")
    cfg["method"] = raw["method"]
    cfg["scale"] = scale or "paper"
    return cfg


def config_hash(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
