"""A named experiment's configuration: the workflow config with the experiment's overlay applied.

`experiments: {<name>: <overlay>}` in the workflow config (docs/experiments.md) runs a method again with other
stage backends, backend params, cloth schemes, scales or method overrides, its results beside the default run's.
The overlay is read as "the default, changed by this":

- mappings merge key by key (`backends: {silhouettes: {grabcut: {params: {iterations: 3}}}}` changes one param);
- `overrides` add to the method's configured overrides (applied after them, so they win);
- any other list replaces the configured one (a backend's `inputs`);
- `stages` apply to every dataset, over a dataset's own `datasets.<dataset>.stages`: an experiment that names a
  stage's backend gets that backend everywhere, rather than being silently undone by a dataset's choice.

Written here because it is these four rules, not a generic deep merge.
"""
from __future__ import annotations

import copy

OVERLAY_KEYS = ("stages", "backends", "cloth_schemes", "overrides", "scales")


def _merge(base: dict, overlay: dict) -> dict:
    out = dict(base)
    for key, value in overlay.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_overlay(config: dict, overlay: dict) -> dict:
    """A copy of `config` with `overlay` (one experiment's settings) applied; `config` is not changed."""
    unknown = sorted(set(overlay) - set(OVERLAY_KEYS))
    if unknown:
        raise ValueError(f"an experiment sets {unknown}; it may set only {', '.join(OVERLAY_KEYS)}")
    merged = _merge(copy.deepcopy(config), {k: v for k, v in overlay.items() if k != "overrides"})
    overrides = merged.setdefault("overrides", {})
    for method, sets in overlay.get("overrides", {}).items():
        overrides[method] = [*overrides.get(method, []), *sets]
    for dataset in merged.get("datasets", {}).values():
        own = dataset.get("stages")
        if own:
            dataset["stages"] = {s: v for s, v in own.items() if s not in overlay.get("stages", {})}
    return merged
