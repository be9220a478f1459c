"""Re-ID ranking metrics with Simple-CCReID's exact good/junk rules (its tools/eval_metrics.py;
docs/protocols.md#good-and-junk), vectorised.

Gallery items are ranked by ascending distance; junk items are removed from the ranking; CMC marks
every rank from the first good match on; AP is the mean over good matches of (i / rank_i), ranks
counted after junk removal. Queries without a good match are skipped and reported. Ranks come from
binary search of the good matches' distances (see `_good_ranks`); where ties make the order
depend on the sort, np.argsort decides, as in the official code, so results agree exactly.

Work is done in blocks of query rows whose size follows a memory budget, so a 100k-image gallery
never needs more than the budget; with `evaluate_features` the full distance matrix is never built.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

from pipeline.errors import InputError

MODES = ("general", "CC", "SC")
_BYTES_PER_CELL = 12  # the distance block (float32/64) and a few boolean masks


def _rows_per_block(num_gallery: int, memory_bytes: int) -> int:
    return max(1, int(memory_bytes // (_BYTES_PER_CELL * max(num_gallery, 1))))


def good_junk_masks(q_pids, q_camids, q_clothes, gallery, mode):
    """good and junk (Q×G, gallery order) by Simple-CCReID's rules (docs/protocols.md#good-and-junk);
    gallery = (pids, camids, clothes). The rank-list figure marks its tiles with the same masks."""
    g_pids, g_camids, g_clothes = gallery
    same_pid = g_pids[None, :] == q_pids[:, None]
    same_cam = g_camids[None, :] == q_camids[:, None]
    if mode == "general":
        return same_pid & ~same_cam, same_pid & same_cam
    same_clothes = g_clothes[None, :] == q_clothes[:, None]
    if mode == "CC":
        return same_pid & ~same_cam & ~same_clothes, same_pid & (same_cam | same_clothes)
    return same_pid & ~same_cam & same_clothes, same_pid & (same_cam | ~same_clothes)


def _good_ranks(dist: np.ndarray, good: np.ndarray, junk: np.ndarray) -> np.ndarray:
    """1-based ranks of one query's good matches in the junk-free ranking, in rank order.

    Sorting the whole gallery is only needed to break ties. Without a tie between a good match and
    another kept item (or between two good matches), every sort orders the items alike, so a good
    match's rank is the number of kept items with a smaller distance, plus one: found by binary
    search of the few good distances, O(G log n_good) instead of O(G log G). With a tie, fall back
    to np.argsort exactly as the official code ranks (its unstable sort decides the order).
    """
    thresholds = np.sort(dist[good])
    others = dist[~(good | junk)]
    slot = np.searchsorted(thresholds, others, side="left")
    inside = slot < len(thresholds)
    tied = bool((thresholds[1:] == thresholds[:-1]).any()) or bool(
        (thresholds[slot[inside]] == others[inside]).any())
    if not tied:
        below = np.cumsum(np.bincount(slot, minlength=len(thresholds) + 1))[: len(thresholds)]
        return below + np.arange(1, len(thresholds) + 1)
    order = np.argsort(dist)
    kept_rank = np.cumsum(~junk[order])
    return kept_rank[good[order]]


class _Accumulator:
    def __init__(self, gallery: tuple, mode: str):
        self.gallery, self.mode = gallery, mode
        self.num_gallery = len(gallery[0])
        self.first_hit_hist = np.zeros(self.num_gallery + 1, np.int64)
        self.ap_sum = 0.0
        self.inp_sum = 0.0
        self.num_valid = 0
        self.num_queries = 0

    def add(self, dist_block: np.ndarray, q_pids, q_camids, q_clothes) -> None:
        good, junk = good_junk_masks(q_pids, q_camids, q_clothes, self.gallery, self.mode)
        self.num_queries += len(good)
        for r in np.flatnonzero(good.any(axis=1)):
            ranks = _good_ranks(dist_block[r], good[r], junk[r])
            n = len(ranks)
            self.ap_sum += float(np.mean(np.arange(1, n + 1) / ranks))
            self.first_hit_hist[ranks[0] - 1] += 1
            self.inp_sum += n / float(ranks[-1])
            self.num_valid += 1

    def result(self) -> dict:
        n = self.num_valid
        if n == 0:
            warnings.warn("evaluation: no query has a valid (good) gallery match; mAP and CMC are 0", stacklevel=3)
            return {"mAP": 0.0, "cmc": np.zeros(self.num_gallery), "mINP": 0.0, "num_valid": 0,
                    "num_queries": self.num_queries}
        cmc = np.cumsum(self.first_hit_hist[: self.num_gallery]) / n
        return {"mAP": self.ap_sum / n, "cmc": cmc, "mINP": self.inp_sum / n, "num_valid": n,
                "num_queries": self.num_queries}


def _check(mode, q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes):
    if mode not in MODES:
        raise InputError(f"evaluation mode must be one of {MODES}, got {mode!r}")
    if mode != "general" and (q_clothes is None or g_clothes is None):
        raise InputError(f"mode {mode!r} needs q_clothes and g_clothes")
    q_pids, g_pids, q_camids, g_camids = (np.asarray(a) for a in (q_pids, g_pids, q_camids, g_camids))
    if len(q_pids) != len(q_camids) or len(g_pids) != len(g_camids):
        raise ValueError("pids and camids must have one entry per query / gallery item")
    if mode == "general":
        q_clothes = g_clothes = None
    else:
        q_clothes, g_clothes = np.asarray(q_clothes), np.asarray(g_clothes)
        if len(q_clothes) != len(q_pids) or len(g_clothes) != len(g_pids):
            raise ValueError("clothes ids must have one entry per query / gallery item")
    return (q_pids, q_camids, q_clothes), (g_pids, g_camids, g_clothes)


def _run(blocks: Iterator[tuple[slice, np.ndarray]], query: tuple, gallery: tuple, mode: str) -> dict:
    acc = _Accumulator(gallery, mode)
    q_pids, q_camids, q_clothes = query
    for rows, dist in blocks:
        acc.add(np.asarray(dist), q_pids[rows], q_camids[rows], None if q_clothes is None else q_clothes[rows])
    return acc.result()


def evaluate(distmat, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None, mode: str = "general",
             memory_bytes: int = 256 << 20) -> dict:
    """Rank a (Q, G) distance matrix (any array-like, e.g. np.memmap). Returns mAP, cmc, mINP, num_valid."""
    query, gallery = _check(mode, q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes)
    q, g = distmat.shape
    if (q, g) != (len(query[0]), len(gallery[0])):
        raise ValueError(f"distmat is {q}×{g} but there are {len(query[0])} queries and "
                         f"{len(gallery[0])} gallery items")
    step = _rows_per_block(g, memory_bytes)
    blocks = ((slice(i, i + step), distmat[i : i + step]) for i in range(0, q, step))
    return _run(blocks, query, gallery, mode)


def cosine_distance_blocks(qf: np.ndarray, gf: np.ndarray, rows: int) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (rows, -q·gᵀ) blocks of L2-normalised features, Simple-CCReID's distance."""
    qf = qf / np.maximum(np.linalg.norm(qf, axis=1, keepdims=True), 1e-12)
    gf = gf / np.maximum(np.linalg.norm(gf, axis=1, keepdims=True), 1e-12)
    for i in range(0, len(qf), rows):
        yield slice(i, i + rows), -(qf[i : i + rows] @ gf.T)


def evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None,
                      mode: str = "general", memory_bytes: int = 256 << 20) -> dict:
    """Like `evaluate`, but distances are computed block by block: memory is bounded by the budget."""
    query, gallery = _check(mode, q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes)
    qf, gf = np.asarray(qf, np.float32), np.asarray(gf, np.float32)
    step = _rows_per_block(len(gf), memory_bytes)
    return _run(cosine_distance_blocks(qf, gf, step), query, gallery, mode)


def single_shot_galleries(g_pids, trials: int, seed: int) -> list[np.ndarray]:
    """Gallery index sets with one random image per identity, drawn as Simple-CCReID's PRCC loader does:
    Python's `random` seeded once, identities in order of first appearance, `random.choice` per identity."""
    import random

    by_pid: dict[int, list[int]] = {}
    for i, pid in enumerate(np.asarray(g_pids).tolist()):
        by_pid.setdefault(pid, []).append(i)
    rng = random.Random(seed)
    return [np.array([rng.choice(idx) for idx in by_pid.values()]) for _ in range(trials)]


def average_results(results: list[dict]) -> dict:
    """Mean of several evaluations of one protocol (single-shot trials)."""
    return {"mAP": float(np.mean([r["mAP"] for r in results])), "cmc": np.mean([r["cmc"] for r in results], axis=0),
            "mINP": float(np.mean([r["mINP"] for r in results])), "num_valid": results[0]["num_valid"],
            "num_queries": results[0]["num_queries"], "trials": len(results)}


CMC_RANKS = 50  # metrics.json keeps the CMC curve this far (torchreid's max_rank), for plots


def summarise(result: dict, ranks=(1, 5, 10, 20)) -> dict:
    """The numbers metrics.json records for one protocol: mAP, rank-k, mINP, counts and the CMC curve to rank 50
    (shorter when the gallery is)."""
    cmc = result["cmc"]
    out = {"mAP": float(result["mAP"])}
    for k in ranks:
        out[f"rank{k}"] = float(cmc[min(k, len(cmc)) - 1]) if len(cmc) else 0.0
    out["mINP"] = float(result["mINP"])
    out["num_valid_queries"] = int(result["num_valid"])
    out["num_queries"] = int(result["num_queries"])
    out["cmc"] = [round(float(v), 6) for v in np.asarray(cmc)[:CMC_RANKS]]
    if "trials" in result and result["trials"] > 1:
        out["trials"] = int(result["trials"])
    return out
