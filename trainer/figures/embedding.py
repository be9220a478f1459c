"""A t-SNE map of test features (scikit-learn's TSNE), coloured by identity and marked by clothes: a model that
matches people across clothes puts each colour in one place whatever its markers; one that matches clothes
splits a colour into one island per marker."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from pipeline.atomic import write_bytes
from pipeline.errors import InputError
from pipeline.listfile import read_protocol

from .plotting import figure_png, pyplot
from .ranklist import check_features_lists, pick_protocol, split_group

MARKERS = "o^sDvP*Xh<>p"


def embedding_points(features_h5: str | Path, splits: list[str], max_ids: int, lists_dir: str | Path
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, pids, clothes) of the named splits of features.h5, concatenated, of the `max_ids` identities
    with the smallest ids (all of them when fewer)."""
    feats, pids, clothes = [], [], []
    with h5py.File(features_h5, "r") as f:
        check_features_lists(f, features_h5, lists_dir)
        for g in (split_group(f, split, features_h5) for split in splits):
            feats.append(g["features"][:].astype(np.float32))
            pids.append(g["pid"][:])
            clothes.append(g["clothes_id"][:])
    feats, pids, clothes = np.concatenate(feats), np.concatenate(pids), np.concatenate(clothes)
    keep = np.isin(pids, np.unique(pids)[:max_ids])
    return feats[keep], pids[keep], clothes[keep]


def plot_embedding(features_h5: str | Path, lists_dir: str | Path, out: str | Path, protocol: str | None = None,
                   max_ids: int = 20, seed: int = 0) -> Path:
    """The query and gallery splits of `protocol` (default: CC where the dataset has it), `max_ids` identities
    of them: t-SNE of thousands of colours is unreadable."""
    if max_ids < 2:
        raise InputError(f"max_ids must be at least 2, got {max_ids}")
    meta = read_protocol(lists_dir)
    p = pick_protocol(meta, protocol)
    feats, pids, clothes = embedding_points(features_h5, list(dict.fromkeys([p.query, p.gallery])), max_ids,
                                            lists_dir)
    if len(feats) < 5:
        raise InputError(f"{features_h5}: {len(feats)} test items: too few for a t-SNE map")
    from sklearn.manifold import TSNE  # heavy import, only for this figure

    feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)  # the evaluation's cosine
    xy = TSNE(2, perplexity=min(30.0, (len(feats) - 1) / 3), metric="cosine", init="pca",
              random_state=seed).fit_transform(feats)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    ids = np.unique(pids)
    cmap = plt.get_cmap("tab20" if len(ids) <= 20 else "hsv", max(len(ids), 2))
    for n, pid in enumerate(ids):
        mine = pids == pid
        # markers number each identity's outfits 0, 1, 2, ... (clothes ids are global and not comparable)
        for k, c in enumerate(np.unique(clothes[mine])):
            sel = mine & (clothes == c)
            ax.scatter(xy[sel, 0], xy[sel, 1], s=22, color=cmap(n), marker=MARKERS[k % len(MARKERS)],
                       edgecolors="black", linewidths=0.3)
    ax.set(xticks=[], yticks=[], title=f"{meta['dataset']} {p.name} ({p.query} + {p.gallery}): t-SNE of "
                                       f"{len(feats)} features, {len(ids)} identities\ncolour: identity; marker: "
                                       "that identity's outfit")
    write_bytes(out, figure_png(fig))
    return Path(out)
