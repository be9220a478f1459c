"""A Python API for notebooks: features from a trained model.pt for image files or arrays, evaluation of features
or a distance matrix under a protocol, and a preprocessing store's record for one image.

    from trainer import evaluate_retrieval, load_model, store_record
    model = load_model("results/synthetic/cal/model.pt")
    feats = model.features(["a.jpg", "b.jpg"])            # N×D, L2-normalised, flip-summed as in evaluation

No lists and no image pack are needed. Methods whose test items read preprocessing stores besides the image
(DeSKPro's faces, CRE+BSGA's body masks with test.bsga) are refused by `features`, naming what they need:
evaluate those with `python -m trainer.evaluate` and their stores.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.errors import InputError, MissingInputError
from pipeline.imagepack import ImagePack
from pipeline.stages.store import VLEN_SUFFIX, Store, decode_png, decode_rgb

from .evaluation import evaluate as evaluate_distances
from .evaluation import evaluate_features, summarise
from .features import extract
from .methods import method_class
from .model_file import load_feature_net
from .runtime import pick_device
from .transforms import TestTransform

__all__ = ["TrainedModel", "evaluate_retrieval", "load_model", "store_record"]


def _read_image(image: str | Path | np.ndarray, index: int) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"images[{index}]: an image array must be H×W×3 uint8 RGB, got {image.shape} "
                             f"{image.dtype}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise InputError(f"images[{index}]: an image array of shape {image.shape} has no pixels: H and W must "
                             "be at least 1")
        return image
    path = Path(image)
    if not path.is_file():
        raise MissingInputError(f"{path}: no such image")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"{path}: not an image OpenCV can read")
    return np.ascontiguousarray(bgr[..., ::-1])


class _Images(Dataset):
    """Image paths or arrays as test items (tensor, 0): what features.extract iterates."""

    def __init__(self, images: Sequence[str | Path | np.ndarray], transform: TestTransform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(_read_image(self.images[i], i)), 0


class TrainedModel:
    """A model.pt's feature network with its test transform. `config` is the merged config it trained with."""

    def __init__(self, net: torch.nn.Module, state: dict, device: torch.device):
        self.net, self.state, self.device = net, state, device
        self.config = state["config"]
        self.method = self.config["method"]
        d = self.config["data"]
        self.transform = TestTransform(d["height"], d["width"])

    def features(self, images: Sequence[str | Path | np.ndarray], batch_size: int = 32,
                 stream: str | None = None) -> np.ndarray:
        """One L2-normalised feature row per image (paths or H×W×3 uint8 RGB arrays): f(x) + f(flip x), then the
        method's own normalisation, as `trainer.evaluate` computes image features. stream: for a net with several
        (None: its result, the first)."""
        needs = self.config.get("test", {}).get("stores", [])
        if needs:
            raise InputError(f"{self.method} reads the {', '.join(needs)} store(s) at test time (test.stores), which "
                             "images alone do not give; use python -m trainer.evaluate with --store")
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        # evaluation's own extraction (flip-sum, the net's normalisation), over the images as a dataset
        streams = extract(self.net, _Images(images, self.transform), self.device, batch_size, progress=False)
        name = next(iter(streams)) if stream is None else stream
        if name not in streams:
            raise InputError(f"stream {stream!r}: this model has {list(streams)}")
        return streams[name]


def load_model(path: str | Path, device: str = "cpu") -> TrainedModel:
    """A trained model.pt (checked, loaded without running code) on `device` ("cpu", "cuda", "cuda:1", "auto")."""
    dev = pick_device(device)
    net, state = load_feature_net(path, dev)
    net = method_class(state["config"]).test_feature_net(net, state["config"])
    return TrainedModel(net.eval(), state, dev)


def evaluate_retrieval(query: np.ndarray, gallery: np.ndarray | None, q_pids, g_pids, q_camids, g_camids,
                       q_clothes=None, g_clothes=None, mode: str = "general") -> dict:
    """mAP, mINP and CMC (rank-1/5/10/20 and the curve to rank 50) under a protocol mode: "general", "CC"
    (same-clothes matches are junk) or "SC" (other-clothes matches are junk), Simple-CCReID's rules
    (docs/protocols.md). query, gallery: L2-normalised features (cosine distance); or query a Q×G distance matrix
    and gallery None."""
    if gallery is None:
        result = evaluate_distances(np.asarray(query), q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes, mode)
    else:
        result = evaluate_features(np.asarray(query, np.float32), np.asarray(gallery, np.float32), q_pids, g_pids,
                                   q_camids, g_camids, q_clothes, g_clothes, mode=mode)
    return summarise(result)


def store_record(store: str | Path, images: str | Path, image: str | Path | int) -> dict:
    """Every field of a stage store for one image of the pack (its path as listed, or its row: a Python or NumPy
    integer), PNG fields decoded (RGB crops as H×W×3, label maps as H×W)."""
    # a bool is an int to Python, but True as "row 1" is surely a mistake; a NumPy integer (a row taken from an
    # array of indices) is a row, not a path named "3"
    if isinstance(image, bool | np.bool_) or not isinstance(image, str | Path | int | np.integer):
        raise InputError(f"image {image!r}: expected the image's path as listed (str or Path) or its row in the "
                         f"pack (an integer), got {type(image).__name__}")
    pack = ImagePack(images)
    row = int(image) if isinstance(image, int | np.integer) else int(pack.indices([str(image)])[0])
    if not 0 <= row < len(pack):
        raise InputError(f"row {row}: the image pack has {len(pack)} images")
    with Store(store, pack.manifest_sha256) as s:
        record = {}
        for name in s.file:
            value = s[name][row]
            if name.endswith(VLEN_SUFFIX):
                value = decode_png(value)
                if value.ndim == 3:
                    value = decode_rgb(s[name][row])
            record[name] = value.item() if isinstance(value, np.generic) else value
    return record
