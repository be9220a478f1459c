"""Test-time features (reference.md §2.2): f(x) + f(flip(x)), L2-normalised; and protocol evaluation."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.imagepack import ImagePack
from pipeline.listfile import read_protocol, read_split

from .data import PackedImages
from .evaluation import average_results, evaluate_features, single_shot_galleries, summarise
from .transforms import TestTransform


@torch.no_grad()
def extract(net: torch.nn.Module, dataset, device: torch.device, batch_size: int = 64, workers: int = 0,
            flip: bool = True, desc: str = "features") -> np.ndarray:
    was_training = net.training
    net.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    out = []
    for images, *_ in tqdm(loader, desc=desc, disable=None, leave=False):
        images = images.to(device, non_blocking=True)
        f = net(images)
        if flip:
            f = f + net(torch.flip(images, dims=[3]))
        out.append(F.normalize(f.float(), dim=1).cpu())
    net.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def _camera_subset(camids: np.ndarray, cameras) -> np.ndarray:
    return np.ones(len(camids), bool) if cameras is None else np.isin(camids, list(cameras))


def evaluate_protocols(net, pack: ImagePack, lists_dir: str, height: int, width: int, device: torch.device,
                       batch_size: int = 64, workers: int = 0) -> tuple[dict, dict]:
    """Features for every split a protocol uses (each once), then every protocol's metrics."""
    meta = read_protocol(lists_dir)
    transform = TestTransform(height, width)
    splits = {s for p in meta["protocols"] for s in (p.query, p.gallery)}
    data = {s: PackedImages(pack, read_split(lists_dir, s), transform) for s in sorted(splits)}
    feats = {s: extract(net, d, device, batch_size, workers, desc=s) for s, d in data.items()}
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
