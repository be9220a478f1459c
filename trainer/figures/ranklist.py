"""Rank lists: a few queries of a protocol, each beside its top gallery matches, the picture CC-ReID papers print.

The ranking and the marks come from the evaluation itself (trainer.evaluation: cosine distance of the saved
features, the protocol's camera subset, Simple-CCReID's good/junk rules), so the picture shows what the numbers
count: good matches framed green, other identities red, junk (same camera, and in CC mode same clothes) greyed
out with no rank, since the metric removes it from the ranking.
Queries are picked at evenly spaced quantiles of their first good match's rank, from best to worst: a page of
successes alone says nothing of the failures.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np

from pipeline.atomic import write_bytes
from pipeline.errors import InputError
from pipeline.imagepack import ImagePack
from pipeline.listfile import lists_digest, read_protocol, read_split

from ..evaluation import cosine_distance_blocks, good_junk_masks
from ..features import camera_subset
from .plotting import figure_png, pyplot

TILE = (64, 128)  # width, height: every tile alike, whatever the crops' own sizes
GOOD, WRONG, QUERY = "#1a9e3a", "#d62728", "#1f5fbf"


def pick_protocol(meta: dict, name: str | None):
    """The named protocol, or by default the clothes-changing one ("CC") where the dataset has it."""
    by_name = {p.name: p for p in meta["protocols"]}
    if name is None:
        name = "CC" if "CC" in by_name else meta["protocols"][0].name
    if name not in by_name:
        raise InputError(f"protocol {name!r}: {meta['dataset']} has {sorted(by_name)}")
    return by_name[name]


def check_features_lists(f: h5py.File, path: str | Path, lists_dir: str | Path) -> None:
    """features.h5 records the lists it was evaluated under; a picture of it over other lists is refused."""
    theirs = f.attrs.get("lists_sha256")
    if theirs is None:
        raise InputError(f"{path}: records no lists (written by an older ccreid); evaluate the model again")
    if theirs != lists_digest(lists_dir):
        raise InputError(f"{path}: evaluated under other lists than {lists_dir} (its lists {str(theirs)[:12]}…); "
                         "give the lists it was evaluated with")


def split_group(f: h5py.File, split: str, path: str | Path) -> h5py.Group:
    """One split of features.h5 (trainer.evaluate: features, pid, camid, clothes_id, path, pack_index)."""
    if split not in f:
        raise InputError(f"{path}: no split {split!r} (has {sorted(f)})")
    return f[split]


class SplitFeatures:
    """One split of features.h5: the method's features, labels and each row's image."""

    def __init__(self, f: h5py.File, split: str, lists_dir: str | Path, pack: ImagePack, path: str):
        g = split_group(f, split, path)
        self.features = g["features"][:].astype(np.float32)
        self.pids, self.camids, self.clothes = g["pid"][:], g["camid"][:], g["clothes_id"][:]
        paths = [p.decode() if isinstance(p, bytes) else p for p in g["path"][:]]
        if "pack_index" in g:
            self.image_rows = g["pack_index"][:]
        else:  # video: a tracklet is shown by its middle frame
            samples = read_split(lists_dir, split)
            if [s.path for s in samples] != paths:
                raise InputError(f"{path}: split {split} does not list what {lists_dir}/{split}.txt lists")
            self.image_rows = pack.indices([s.frames[len(s.frames) // 2] for s in samples])

    def take(self, rows: np.ndarray) -> None:
        for name in ("features", "pids", "camids", "clothes", "image_rows"):
            setattr(self, name, getattr(self, name)[rows])


def _tile(pack: ImagePack, row: int, grey: bool) -> np.ndarray:
    img = cv2.resize(pack.image(int(row)), TILE, interpolation=cv2.INTER_AREA)
    if grey:  # junk: shown, but faded, as the metric ignores it
        img = (0.35 * img + 0.65 * 200).astype(np.uint8)
    return img


def first_true_ranks(dist: np.ndarray, good: np.ndarray, junk: np.ndarray) -> dict[int, int]:
    """Each valid query's rank of its first good match in the junk-free ranking (what rank-k counts)."""
    ranks = {}
    for i in np.flatnonzero(good.any(1)):
        order = np.argsort(dist[i], kind="stable")
        ranks[int(i)] = int(np.cumsum(~junk[i][order])[good[i][order]][0])
    return ranks


def rank_rows(dist: np.ndarray, good: np.ndarray, junk: np.ndarray, queries: int, top: int) -> list[dict]:
    """The rows of the picture: `queries` valid queries at evenly spaced quantiles of their first true rank
    (best first), each with its `top` nearest gallery items as (gallery row, mark, rank): mark "good",
    "wrong" or "junk"; rank counts kept items only, None for junk."""
    first = first_true_ranks(dist, good, junk)
    if not first:
        raise InputError("no query has a good match in the gallery")
    by_rank = sorted(first, key=lambda i: (first[i], i))
    picks = sorted(set(np.linspace(0, len(by_rank) - 1, min(queries, len(by_rank))).round().astype(int)))
    rows = []
    for k in picks:
        i = by_rank[k]
        # sorted again for the few picked queries: keeping every query's order would hold Q×G indices
        order = np.argsort(dist[i], kind="stable")
        kept_rank = np.cumsum(~junk[i][order])
        tiles = [(int(j), "junk" if junk[i, j] else "good" if good[i, j] else "wrong",
                  None if junk[i, j] else int(r)) for j, r in zip(order[:top], kept_rank[:top], strict=True)]
        rows.append({"query": i, "first_true": first[i], "tiles": tiles})
    return rows


def rank_list(features_h5: str | Path, images_h5: str | Path, lists_dir: str | Path, out: str | Path,
              protocol: str | None = None, queries: int = 6, top: int = 10) -> Path:
    if queries < 1 or top < 1:
        raise InputError(f"queries ({queries}) and top ({top}) must be at least 1")
    meta = read_protocol(lists_dir)
    p = pick_protocol(meta, protocol)
    pack = ImagePack(images_h5)
    pack.check_lists(lists_dir)
    with h5py.File(features_h5, "r") as f:
        if f.attrs.get("manifest_sha256") != pack.manifest_sha256:
            raise InputError(f"{features_h5} was extracted from other images than {images_h5} (manifest differs)")
        check_features_lists(f, features_h5, lists_dir)
        q = SplitFeatures(f, p.query, lists_dir, pack, str(features_h5))
        g = SplitFeatures(f, p.gallery, lists_dir, pack, str(features_h5))
    q.take(np.flatnonzero(camera_subset(q.camids, p.cameras)))
    g.take(np.flatnonzero(camera_subset(g.camids, p.cameras)))
    _, dist = next(cosine_distance_blocks(q.features, g.features, max(len(q.features), 1)))
    good, junk = good_junk_masks(q.pids, q.camids, q.clothes, (g.pids, g.camids, g.clothes), p.mode)
    if not good.any():
        raise InputError(f"{features_h5}: no query of protocol {p.name} has a good match in {p.gallery}")
    rows = rank_rows(dist, good, junk, queries, top)
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), top + 1, figsize=(1.0 * (top + 1), 2.3 * len(rows)), squeeze=False,
                             layout="constrained")
    colours = {"good": GOOD, "wrong": WRONG, "junk": None}
    for axrow, row in zip(axes, rows, strict=True):
        i = row["query"]
        tiles = [(q.image_rows[i], QUERY, f"query\nid {q.pids[i]} c{q.clothes[i]}\nfirst true: {row['first_true']}")]
        tiles += [(g.image_rows[j], colours[mark], f"{'junk' if rank is None else f'#{rank}'}\n"
                   f"id {g.pids[j]} c{g.clothes[j]}") for j, mark, rank in row["tiles"]]
        for ax, (image_row, colour, text) in zip(axrow, tiles, strict=False):
            grey = colour is None
            ax.imshow(_tile(pack, image_row, grey))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color(colour or "#bbbbbb")
                spine.set_linewidth(1 if grey else 3)
            ax.set_title(text, fontsize=6, color="#888888" if grey else "black")
        for ax in axrow[len(tiles):]:
            ax.axis("off")
    fig.suptitle(f"{meta['dataset']} {p.name}: {p.query} vs {p.gallery} ({p.mode}); green true match, red other "
                 "identity, greyed junk (not ranked)", fontsize=8)
    write_bytes(out, figure_png(fig))
    return Path(out)
