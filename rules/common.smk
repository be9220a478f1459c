# Helpers shared by the rules: configuration look-ups only (no torch imports here).
from pathlib import Path

import yaml

from pipeline.datasets import LAYOUT_DIRS


def dataset_cfg(dataset):
    if dataset not in config["datasets"]:
        raise ValueError(f"dataset {dataset!r} is not configured under datasets: in config/config.yaml")
    return config["datasets"][dataset]


def synthetic_datasets():
    return [d for d, c in config["datasets"].items() if "synthetic" in c]


def raw_input(wildcards):
    """Input of the lists step - the generated root for synthetic data, else the layout folder."""
    cfg = dataset_cfg(wildcards.dataset)
    if "synthetic" in cfg:
        return cfg["root"]
    return str(Path(cfg["root"]) / LAYOUT_DIRS[cfg["format"]])


def method_requires(method):
    spec = yaml.safe_load(Path(f"config/methods/{method}.yaml").read_text())
    return spec.get("requires", [])


def method_overrides(wildcards):
    return " ".join(f"--set {o}" for o in config.get("overrides", {}).get(wildcards.method, []))


def required_stores(wildcards):
    # stages arrive in later issues; a method that requires one cannot be wired yet
    needed = method_requires(wildcards.method)
    if needed:
        raise ValueError(f"method {wildcards.method} requires stages {needed}, which this workflow does not build yet")
    return []
