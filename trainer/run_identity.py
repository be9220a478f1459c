"""What a training run is computed from, as digests: the key its checkpoints are stored and checked under.

A checkpoint may only be resumed by a run that reads exactly the same things: the merged method config, the
image pack (its manifest hash, over every image's bytes), the list files and protocol.json, every
preprocessing store it trains on (the store's provenance and size), the resources a method loads (3DSL's
body model and motion capture) and the number of processes (per-process batches and sampler shards
depend on it). When any of them changes, Snakemake reruns `train`, and the run must start over rather
than hand back the weights of the old data.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.digest import file_sha256
from pipeline.listfile import lists_digest

__all__ = ["lists_digest", "resource_digest", "run_identity", "run_key", "changed"]

STORE_ATTRS = ("stage", "backend", "backend_version", "params", "weights_sha256", "inputs", "manifest_sha256",
               "created", "num_images", "found_rate")


def resource_digest(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + bytes.fromhex(file_sha256(f)))
    return h.hexdigest()


def run_identity(config_hash: str, manifest_sha256: str, lists_dir: str | Path, stores: dict,
                 resources: dict[str, str | None], world_size: int) -> dict[str, str]:
    """Component -> digest. stores: stage -> an opened pipeline.stages.store.Store."""
    identity = {"config": config_hash, "images": manifest_sha256, "lists": lists_digest(lists_dir),
                "world_size": str(world_size)}
    for stage in sorted(stores):
        store = stores[stage]
        described = {k: str(store.attrs.get(k, "")) for k in STORE_ATTRS}
        described["bytes"] = str(Path(store.path).stat().st_size)
        identity[f"store:{stage}"] = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
    for name in sorted(resources):
        if resources[name]:
            identity[f"resource:{name}"] = resource_digest(resources[name])
    return identity


def run_key(identity: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def changed(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """The components whose digests differ (or that only one side has)."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
