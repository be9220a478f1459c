"""The backend contract shared by every preprocessing stage, and the registry that names backends.

A backend is built from plain arguments (its params, the file it loads, the input stores it reads) and
turns one RGB image into one record: a dict of fields that always includes `found`. Parameters are
checked against the backend's defaults before anything is built: a misspelt key, a value of another type
than its default's, or one outside the backend's declared `limits` is an error naming it, never ignored
(`check_params` does this without building the backend: the workflow calls it while planning).

`registered()` imports only the modules that define backends, and none of them imports a model library
(torch, mediapipe, segment_anything) or a network module (fastpose, schp, gpen) at import time: a backend
imports those when it is built.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..configstrings import parse_scalar
from ..errors import InputError
from ..registry import Registry

STAGES = ("keypoints", "silhouettes", "parsing", "cloth_masks", "faces", "faces_restored")
BACKENDS: dict[str, Registry[type["Backend"]]] = {stage: Registry(f"{stage} backend") for stage in STAGES}


@dataclass
class Item:
    """What a backend may know about the image besides its pixels."""

    index: int  # row in images.h5
    path: str  # relative to the dataset root
    inputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # stage -> this image's record


@dataclass(frozen=True)
class Range:
    """The numbers a parameter may take; each bound is inclusive unless marked open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allows(self, value) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def expected(self, kind: str) -> str:
        return f"{kind} {self}"

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"{'<' if self.high_open else '<='} {self.high}"


@dataclass(frozen=True)
class OneOf:
    """An enumerated parameter; `pattern` (a regular expression, described by `shown`) admits a family."""

    values: tuple
    pattern: str = ""
    shown: str = ""

    def allows(self, value) -> bool:
        if value in self.values:
            return True
        return bool(self.pattern) and isinstance(value, str) and re.fullmatch(self.pattern, value) is not None

    def expected(self, kind: str) -> str:
        return f"{kind}, {self}"

    def __str__(self) -> str:
        return "one of " + ", ".join([repr(v) for v in self.values] + ([self.shown] if self.shown else []))


@dataclass(frozen=True)
class Names:
    """A list of strings, or (keyed) a mapping from strings to such lists."""

    keyed: bool = False

    def allows(self, value) -> bool:
        lists = value.values() if self.keyed else [value]
        return (not self.keyed or all(isinstance(k, str) for k in value)) and \
            all(isinstance(v, list) and all(isinstance(n, str) for n in v) for v in lists)

    def expected(self, kind: str) -> str:
        return "a mapping from names to lists of names" if self.keyed else "a list of names"


UNIT = Range(0, 1)  # scores, confidences, thresholds
AT_LEAST_1 = Range(1)  # pixel sizes, iteration counts
FRACTION = Range(0, 1, low_open=True)  # a length as a share of the image's width or height
DEVICE = OneOf(("auto", "cpu", "cuda"), r"cuda:\d+", "'cuda:<n>'")


def _type_name(value) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), f"a {type(value).__name__}")


class Backend:
    stage: str = ""
    name: str = ""
    defaults: dict = {}
    limits: dict = {}  # per parameter: a Range, OneOf or Names its value must satisfy
    needs_file: bool = False  # weights (or the synthetic ground truth) the backend loads
    weights_source: str = ""  # where its weights come from (config.yaml backends.<stage>.<name>.url or .source)
    input_stages: tuple[str, ...] = ()  # stores it reads, by stage name
    optional_inputs: tuple[str, ...] = ()  # of those, the ones it can do without

    def __init__(self, params: dict | None = None, model_file: str | None = None):
        self.params = self.check_params(params)
        if self.needs_file and not model_file:
            raise InputError(f"{self.stage} backend {self.name!r} needs its model file (--model-file)")
        self.model_file = model_file

    @classmethod
    def check_params(cls, params: dict | None) -> dict:
        """The backend's defaults updated by `params`, each checked against its default's type and its limits."""
        where = f"{cls.stage} backend {cls.name!r}"
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise InputError(f"{where}: parameters must be a mapping of names to values, got {params!r}")
        unknown = sorted(set(params) - set(cls.defaults))
        if unknown:
            raise InputError(f"{where}: unknown parameter(s) {unknown}; known: {sorted(cls.defaults)}")
        checked = dict(cls.defaults)
        for key, value in params.items():
            checked[key] = cls._check_value(where, key, value)
        return checked

    @classmethod
    def params_from_strings(cls, params: dict) -> dict:
        """`params` with a string parsed where the default is a boolean or a number: Snakemake hands a nested
        `--config` value over as strings (pipeline/configstrings.py). What does not parse stays for check_params
        to refuse."""
        kinds = {bool: {"boolean"}, int: {"integer"}, float: {"number"}}
        return {k: parse_scalar(v, kinds[type(cls.defaults[k])])
                if isinstance(v, str) and k in cls.defaults and type(cls.defaults[k]) in kinds else v
                for k, v in params.items()}

    @classmethod
    def gpus(cls, params: dict | None) -> int:
        """GPUs a shard of this backend asks its scheduler for: a learned backend (one with a `device`
        parameter) one, unless its device is "cpu"; a classical one none. The workflow plans with this."""
        return int("device" in cls.defaults and cls.check_params(params)["device"] != "cpu")

    @classmethod
    def _check_value(cls, where: str, key: str, value):
        default, limit = cls.defaults[key], cls.limits.get(key)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):  # an integer is a number too (YAML writes 1, not 1.0)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, type(default))
        expected = "a finite number" if isinstance(default, float) else _type_name(default)
        if limit is not None:
            expected = limit.expected(expected)
        if not ok:
            raise InputError(f"{where}: parameter {key!r} is {value!r} ({_type_name(value)}); expected {expected}")
        value = float(value) if isinstance(default, float) else value
        if limit is not None and not limit.allows(value):
            raise InputError(f"{where}: parameter {key!r} is {value!r}; expected {expected}")
        return value

    @property
    def version(self) -> str:
        raise NotImplementedError

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        raise NotImplementedError

    def batch(self, images: list[np.ndarray], items: list[Item]) -> list[dict]:
        """Records of several images at once. A learned backend overrides this with one forward pass for the
        batch (equal to one image at a time within float tolerance); the default calls it per image."""
        return [self(image, item) for image, item in zip(images, items, strict=True)]

    def close(self) -> None:
        """Release native resources (detector graphs)."""

    def bind(self, input_attrs: dict[str, dict]) -> None:
        """Called once with the attributes of each input store (by stage) before any image."""

    def store_attrs(self) -> dict:
        """Extra attributes the store records (a parsing backend's label set)."""
        return {}

    @classmethod
    def weights_hint(cls) -> str:
        """Where to get a good copy of the backend's weights, for every error about the file."""
        return (f"Get it from {cls.weights_source} (backends.{cls.stage}.{cls.name}.url or .source in "
                f"config/config.yaml).")


def register(cls: type[Backend]) -> type[Backend]:
    return BACKENDS[cls.stage].add(cls.name, cls)


def registered() -> dict[tuple[str, str], type[Backend]]:
    """Every backend, by (stage, name); the modules register themselves on import."""
    from . import cloth, faces, keypoints, parsing, silhouettes  # noqa: F401

    return {(stage, name): cls for stage, registry in BACKENDS.items() for name, cls in registry.items()}


def backend_class(stage: str, name: str) -> type[Backend]:
    """The registered backend, or an error listing the stages or the stage's backends."""
    registered()
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return BACKENDS[stage].get(name)


def check_params(stage: str, name: str, params: dict | None = None) -> dict:
    """The parameters a backend would run with (defaults filled in), checked without building it: no
    model is loaded and no model library imported, so the workflow can call this while it plans."""
    return backend_class(stage, name).check_params(params)


def params_from_strings(stage: str, name: str, params: dict) -> dict:
    return backend_class(stage, name).params_from_strings(params)


def shard_gpus(stage: str, name: str, params: dict | None = None) -> int:
    return backend_class(stage, name).gpus(params)


def build(stage: str, name: str, params: dict | None = None, model_file: str | None = None) -> Backend:
    return backend_class(stage, name)(params, model_file)


GROUNDTRUTH_REBUILD = ("regenerate the synthetic dataset (delete data/raw/<dataset> and rerun the workflow's "
                       "synthetic_dataset rule, or python -m pipeline.synthetic)")


def open_groundtruth(path: str):
    """The synthetic dataset's groundtruth.h5, open for reading; an error names a missing, truncated or
    foreign file."""
    from ..h5 import open_h5

    f = open_h5(path, "synthetic ground truth", GROUNDTRUTH_REBUILD)
    if "path" not in f:
        f.close()
        raise InputError(f"{path}: not a synthetic ground truth file (no 'path' dataset); {GROUNDTRUTH_REBUILD}")
    return f


def part_label_names(truth_file, path: str) -> list[str]:
    """The synthetic truth's part label names in label order (its `part_labels` attribute: name -> value), which
    must be background = 0 and then 1, 2, ... — the label set of a groundtruth parsing store."""
    import json

    values = json.loads(truth_file.attrs["part_labels"])
    names = sorted(values, key=values.get)
    if [values[n] for n in names] != list(range(len(values))) or names[0] != "background":
        raise InputError(f"{path}: part labels {values} are not background = 0 and then 1, 2, ...")
    return names


class GroundTruth:
    """The synthetic dataset's groundtruth.h5, looked up by image path (relative to the dataset root)."""

    def __init__(self, path: str):
        self.path = path
        self.file = open_groundtruth(path)
        self.row = {p.decode() if isinstance(p, bytes) else p: i for i, p in enumerate(self.file["path"][:])}

    def __getitem__(self, key: tuple[str, str]):
        field, image_path = key
        if image_path not in self.row:
            raise InputError(f"{self.path}: no ground truth for {image_path}")
        return self.file[field][self.row[image_path]]

    def close(self) -> None:
        self.file.close()


def load_weights(backend: type[Backend] | Backend, path: str, what: str, hint: str | None = None) -> dict:
    """The state dict in a backend's weights file; an empty, truncated, corrupt or foreign file is an
    error naming it and saying where to get a good copy (hint: the backend's weights_hint by default).
    what: what the file should hold."""
    from ..weights import load_state_dict_file

    return load_state_dict_file(path, f"{what} ({backend.stage} backend {backend.name!r})",
                                backend.weights_hint() if hint is None else hint)


def load_state_strictly(model, state: dict, path, what: str, hint: str = ""):
    """Load `state` into `model`, or stop naming the keys and shapes that differ."""
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise InputError(f"{path}: not {what}: missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shapes "
                         f"{wrong[:3]} ({len(missing)}/{len(unexpected)}/{len(wrong)} in all). {hint}".rstrip())
    model.load_state_dict(state)
    return model


class GroundTruthBackend(Backend):
    """A backend that answers from the synthetic ground truth (its model file) instead of a model."""

    needs_file = True  # <synthetic root>/groundtruth/groundtruth.h5

    def __init__(self, params=None, model_file=None):
        super().__init__(params, model_file)
        self.truth = GroundTruth(self.model_file)

    @property
    def version(self) -> str:
        return "ccreid synthetic ground truth"

    def close(self) -> None:
        self.truth.close()


def resolve_device(name: str):
    """A backend's `device` param: 'auto' is the GPU when there is one."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise InputError(f"device {name!r}: torch sees {torch.cuda.device_count()} CUDA device(s) here; "
                         f"use 'auto' or 'cpu'")
    return device
