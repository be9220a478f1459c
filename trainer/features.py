"""Test-time features and protocol evaluation.

Images (Simple-CCReID's test.py; docs/protocols.md#image-features): f(x) + f(flip(x)), L2-normalised — or,
for a net with several streams or parts, normalised by its own `test_features` (each stream evaluated).
Video tracklets (docs/protocols.md#video-features): the BN features of all of a tracklet's test clips
averaged (not normalised first), then L2-normalised; no flip.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from pipeline.errors import InputError
from pipeline.imagepack import ImagePack
from pipeline.listfile import read_lists
from pipeline.progress import progress as show_progress

from .data import PackedClips
from .engine import to_device
from .evaluation import average_results, evaluate_features, single_shot_galleries, summarise
from .stores import found_summary

MAIN = ""  # the name of a single-stream net's only feature


def flip_images(x):
    """Every image in a batch mirrored left-right: a B×C×H×W tensor, or each such tensor of a dict (a
    method with several inputs, e.g. body and face); other entries (flags, masks of rank < 4) as they are."""
    if isinstance(x, dict):
        return {k: flip_images(v) for k, v in x.items()}
    return torch.flip(x, dims=[3]) if x.dim() == 4 and x.is_floating_point() else x


def _add(a, b):
    return {k: a[k] + b[k] for k in a} if isinstance(a, dict) else a + b


def test_streams(net, f) -> dict[str, torch.Tensor]:
    """Named, normalised test features from a net's raw output: its own `test_features` when it has
    several streams or parts (DeSKPro: per-part L2, face ⊕ body), else {MAIN: L2(f)}. The first entry is the
    result metrics.json reports as the method's."""
    if hasattr(net, "test_features"):
        return net.test_features(f)
    return {MAIN: F.normalize(f, dim=1)}


@torch.no_grad()
def extract(net: torch.nn.Module, dataset, device: torch.device, batch_size: int = 64, workers: int = 0,
            flip: bool = True, normalise: bool = True, desc: str = "features",
            progress: bool | None = None) -> dict[str, np.ndarray]:
    """stream -> one feature row per dataset item: f(x) (+ f(flip x)), then test_streams (or raw).
    progress: as pipeline.progress takes it (None: a bar on a terminal, log lines otherwise; False: silent)."""
    was_training = net.training
    net.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    out: dict[str, list] = {}
    for images, *_ in show_progress(loader, desc, enabled=progress, unit="batches", leave=False):
        images = to_device(images, device)
        f = net(images)
        if flip:
            f = _add(f, net(flip_images(images)))
        if normalise:
            streams = test_streams(net, f)
        elif isinstance(f, dict):
            raise InputError("a multi-stream feature net cannot be averaged over video clips")
        else:
            streams = {MAIN: f}
        for name, value in streams.items():
            out.setdefault(name, []).append(value.float().cpu())
    net.train(was_training)
    if not out:
        return {MAIN: np.zeros((0, 0), np.float32)}
    return {name: torch.cat(rows).numpy() for name, rows in out.items()}


def average_by_owner(features: np.ndarray, owner: np.ndarray, count: int) -> np.ndarray:
    """Row i of the result: the L2-normalised mean of the feature rows whose owner is i."""
    sums = np.zeros((count, features.shape[1]), np.float64)
    np.add.at(sums, owner, features)
    sizes = np.bincount(owner, minlength=count)
    if (sizes == 0).any():
        raise ValueError(f"tracklet {int(np.argmin(sizes))} has no clip features")
    mean = sums / sizes[:, None]
    return (mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def split_features(net, dataset, device: torch.device, batch_size: int = 64, workers: int = 0,
                   desc: str = "features") -> dict[str, np.ndarray]:
    """stream -> one L2-normalised feature per listed sample: an image dataset's items directly, a video
    test set's clips averaged per tracklet (no flip)."""
    if isinstance(dataset, PackedClips):
        clip_features = extract(net, dataset, device, batch_size, workers, flip=False, normalise=False, desc=desc)
        return {MAIN: average_by_owner(clip_features[MAIN], dataset.owner, dataset.num_tracklets)}
    return extract(net, dataset, device, batch_size, workers, desc=desc)


def camera_subset(camids: np.ndarray, cameras) -> np.ndarray:
    return np.ones(len(camids), bool) if cameras is None else np.isin(camids, list(cameras))


class SplitLabels:
    """A split's samples and their label arrays."""

    def __init__(self, samples):
        self.samples = samples
        self.pids = np.array([s.pid for s in samples], np.int64)
        self.camids = np.array([s.camid for s in samples], np.int64)
        self.clothes = np.array([s.clothes_id for s in samples], np.int64)


def evaluate_protocols(net, pack: ImagePack, lists_dir: str, device: torch.device,
                       test_dataset: Callable[[list, dict | None], Dataset], batch_size: int = 64,
                       workers: int = 0, stores: dict | None = None) -> tuple[dict, dict]:
    """Features for every split a protocol uses (each once), then every protocol's metrics.

    test_dataset(samples, video) builds a split's test items (the method's Method.test_dataset); stores: those
    it reads, whose found rate on each split is printed. Returns
    (metrics of the first stream, {"features": split -> stream -> rows, "datasets": split -> labels,
    "streams": stream -> metrics for every stream, the first included})."""
    meta, listed = read_lists(lists_dir)  # every line checked: paths, duplicates within and across splits
    splits = {s for p in meta["protocols"] for s in (p.query, p.gallery)}
    data = {s: SplitLabels(listed[s]) for s in sorted(splits)}
    for s, d in data.items():
        for line in found_summary(stores or {}, pack, d.samples, s):
            print(line, flush=True)
    feats = {s: split_features(net, test_dataset(d.samples, meta.get("video")), device, batch_size, workers, s)
             for s, d in data.items()}
    streams = list(next(iter(feats.values()))) if feats else [MAIN]
    by_stream: dict[str, dict] = {name: {} for name in streams}
    for p in meta["protocols"]:
        q, g = data[p.query], data[p.gallery]
        qs = np.flatnonzero(camera_subset(q.camids, p.cameras))
        gs = np.flatnonzero(camera_subset(g.camids, p.cameras))
        galleries = [gs[t] for t in single_shot_galleries(g.pids[gs], p.single_shot_trials, p.seed)] \
            if p.single_shot_trials else [gs]
        for name in streams:
            qf, gf = feats[p.query][name], feats[p.gallery][name]
            result = average_results([
                evaluate_features(qf[qs], gf[gi], q.pids[qs], g.pids[gi], q.camids[qs], g.camids[gi], q.clothes[qs],
                                  g.clothes[gi], mode=p.mode) for gi in galleries])
            by_stream[name][p.name] = {"query": p.query, "gallery": p.gallery, "mode": p.mode, **summarise(result)}
    return by_stream[streams[0]], {"features": feats, "datasets": data, "streams": by_stream}
