"""The backend contract shared by every preprocessing stage, and the registry that names backends.

A backend is built from plain arguments (its params, the file it loads, the input stores it reads) and
turns one RGB image into one record: a dict of fields that always includes `found`. Parameters are
checked against the backend's defaults, so a misspelt key is an error naming it, never ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

BACKENDS: dict[tuple[str, str], type["Backend"]] = {}
STAGES = ("keypoints", "silhouettes", "parsing", "cloth_masks", "faces", "faces_restored")


@dataclass
class Item:
    """What a backend may know about the image besides its pixels."""

    index: int  # row in images.h5
    path: str  # relative to the dataset root
    inputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # stage -> this image's record


class Backend:
    stage: str = ""
    name: str = ""
    defaults: dict = {}
    needs_file: bool = False  # weights (or the synthetic ground truth) the backend loads
    input_stages: tuple[str, ...] = ()  # stores it reads, by stage name
    optional_inputs: tuple[str, ...] = ()  # of those, the ones it can do without

    def __init__(self, params: dict | None = None, model_file: str | None = None):
        params = params or {}
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise InputError(f"{self.stage} backend {self.name!r}: unknown parameter(s) {unknown}; "
                             f"known: {sorted(self.defaults)}")
        self.params = {**self.defaults, **params}
        if self.needs_file and not model_file:
            raise InputError(f"{self.stage} backend {self.name!r} needs its model file (--model-file)")
        self.model_file = model_file

    @property
    def version(self) -> str:
        raise NotImplementedError

    def __call__(self, image: np.ndarray, item: Item) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        """Release native resources (detector graphs)."""

    def bind(self, input_attrs: dict[str, dict]) -> None:
        """Called once with the attributes of each input store (by stage) before any image."""

    def store_attrs(self) -> dict:
        """Extra attributes the store records (a parsing backend's label set)."""
        return {}


def register(cls: type[Backend]) -> type[Backend]:
    BACKENDS[(cls.stage, cls.name)] = cls
    return cls


def registered() -> dict[tuple[str, str], type[Backend]]:
    """Every backend, by (stage, name); the modules register themselves on import."""
    from . import cloth, faces, keypoints, parsing, silhouettes  # noqa: F401

    return BACKENDS


def build(stage: str, name: str, params: dict | None = None, model_file: str | None = None) -> Backend:
    registered()
    if (stage, name) not in BACKENDS:
        known = sorted(n for s, n in BACKENDS if s == stage)
        raise InputError(f"unknown {stage} backend {name!r}; available: {', '.join(known)}")
    return BACKENDS[(stage, name)](params, model_file)



class GroundTruth:
    """The synthetic dataset's groundtruth.h5, looked up by image path (relative to the dataset root)."""

    def __init__(self, path: str):
        import h5py

        self.path = path
        self.file = h5py.File(path, "r")
        self.row = {p.decode() if isinstance(p, bytes) else p: i for i, p in enumerate(self.file["path"][:])}

    def __getitem__(self, key: tuple[str, str]):
        field, image_path = key
        if image_path not in self.row:
            raise InputError(f"{self.path}: no ground truth for {image_path}")
        return self.file[field][self.row[image_path]]

    def close(self) -> None:
        self.file.close()


def load_checkpoint(path: str) -> dict:
    """A state dict from a checkpoint file: saved by torch, or zipped alone (retinaface-pytorch's releases);
    wrapped under 'state_dict' (SCHP) or not; DataParallel's 'module.' prefix removed (AlphaPose, SCHP,
    Pytorch_Retinaface)."""
    import io
    import zipfile

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        if not zipfile.is_zipfile(path):
            raise
        with zipfile.ZipFile(path) as z:
            members = [m for m in z.namelist() if not m.endswith("/")]
            if len(members) != 1:
                raise ValueError(f"{path}: expected one checkpoint inside the zip, found {members}") from None
            state = torch.load(io.BytesIO(z.read(members[0])), map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_state_strictly(model, state: dict, path, what: str):
    """Load `state` into `model`, or stop naming the keys and shapes that differ."""
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise ValueError(f"{path}: not {what}: missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shapes "
                         f"{wrong[:3]} ({len(missing)}/{len(unexpected)}/{len(wrong)} in all)")
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

    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
