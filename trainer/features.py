"""Test-time features and protocol evaluation.

Images (Simple-CCReID's test.py; docs/protocols.md#image-features): f(x) + f(flip(x)), L2-normalised.
Video tracklets (docs/protocols.md#video-features): the BN features of all of a tracklet's test clips
averaged (not normalised first), then L2-normalised; no flip.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.imagepack import ImagePack
from pipeline.listfile import read_lists

from .data import PackedClips, PackedImages
from .evaluation import average_results, evaluate_features, single_shot_galleries, summarise
from .transforms import TestTransform


@torch.no_grad()
def extract(net: torch.nn.Module, dataset, device: torch.device, batch_size: int = 64, workers: int = 0,
            flip: bool = True, normalise: bool = True, desc: str = "features") -> np.ndarray:
    was_training = net.training
    net.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    out = []
    for images, *_ in tqdm(loader, desc=desc, disable=None, leave=False):
        images = images.to(device, non_blocking=True)
        f = net(images)
        if flip:
            f = f + net(torch.flip(images, dims=[3]))
        f = f.float()
        out.append((F.normalize(f, dim=1) if normalise else f).cpu())
    net.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def average_by_owner(features: np.ndarray, owner: np.ndarray, count: int) -> np.ndarray:
    """Row i of the result: the L2-normalised mean of the feature rows whose owner is i."""
    sums = np.zeros((count, features.shape[1]), np.float64)
    np.add.at(sums, owner, features)
    sizes = np.bincount(owner, minlength=count)
    if (sizes == 0).any():
        raise ValueError(f"tracklet {int(np.argmin(sizes))} has no clip features")
    mean = sums / sizes[:, None]
    return (mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def split_features(net, pack: ImagePack, samples, height: int, width: int, device: torch.device, video: dict | None,
                   batch_size: int = 64, workers: int = 0, desc: str = "features") -> np.ndarray:
    """One L2-normalised feature per listed sample (image or tracklet)."""
    transform = TestTransform(height, width)
    if video is None:
        return extract(net, PackedImages(pack, samples, transform), device, batch_size, workers, desc=desc)
    clips = PackedClips(pack, samples, transform, train=False, seq_len=video["seq_len"], stride=video["stride"])
    clip_features = extract(net, clips, device, batch_size, workers, flip=False, normalise=False, desc=desc)
    return average_by_owner(clip_features, clips.owner, len(samples))


def _camera_subset(camids: np.ndarray, cameras) -> np.ndarray:
    return np.ones(len(camids), bool) if cameras is None else np.isin(camids, list(cameras))


class SplitLabels:
    """A split's samples and their label arrays."""

    def __init__(self, samples):
        self.samples = samples
        self.pids = np.array([s.pid for s in samples], np.int64)
        self.camids = np.array([s.camid for s in samples], np.int64)
        self.clothes = np.array([s.clothes_id for s in samples], np.int64)


def evaluate_protocols(net, pack: ImagePack, lists_dir: str, height: int, width: int, device: torch.device,
                       batch_size: int = 64, workers: int = 0) -> tuple[dict, dict]:
    """Features for every split a protocol uses (each once), then every protocol's metrics."""
    meta, listed = read_lists(lists_dir)  # every line checked: paths, duplicates within and across splits
    splits = {s for p in meta["protocols"] for s in (p.query, p.gallery)}
    data = {s: SplitLabels(listed[s]) for s in sorted(splits)}
    feats = {s: split_features(net, pack, d.samples, height, width, device, meta.get("video"), batch_size, workers, s)
             for s, d in data.items()}
    metrics = {}
    for p in meta["protocols"]:
        q, g = data[p.query], data[p.gallery]
        qs = np.flatnonzero(_camera_subset(q.camids, p.cameras))
        gs = np.flatnonzero(_camera_subset(g.camids, p.cameras))
        galleries = [gs[t] for t in single_shot_galleries(g.pids[gs], p.single_shot_trials, p.seed)] \
            if p.single_shot_trials else [gs]
        result = average_results([
            evaluate_features(feats[p.query][qs], feats[p.gallery][gi], q.pids[qs], g.pids[gi], q.camids[qs],
                              g.camids[gi], q.clothes[qs], g.clothes[gi], mode=p.mode) for gi in galleries])
        metrics[p.name] = {"query": p.query, "gallery": p.gallery, "mode": p.mode, **summarise(result)}
    return metrics, {"features": feats, "datasets": data}
