"""Re-ID ranking metrics with Simple-CCReID's exact good/junk rules (its tools/eval_metrics.py;
docs/protocols.md#good-and-junk), vectorised.

Gallery items are ranked by ascending distance; junk items are removed from the ranking; CMC marks
every rank from the first good match on; AP is the mean over good matches of (i / rank_i), ranks
counted after junk removal. Queries without a good match are skipped and reported. Ranks are computed for
a block of queries at once (`_block_ranks`: only kept items up to a query's last good match are ordered);
where ties make the order depend on the sort, np.argsort of the row decides, as in the official code, so
results agree exactly.

Work is done in blocks of query rows whose size follows a memory budget, so a 100k-image gallery
never needs more than the budget; with `evaluate_features` the full distance matrix is never built.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

from pipeline.errors import InputError

MODES = ("general", "CC", "SC")
# per cell of a block, at worst (every item before a query's last good match): the distances (float32/64), the
# comparison with the last good match, and per candidate its row and column (int64) and key (uint64) with the
# temporaries that build it
_BYTES_PER_CELL = 48


def _rows_per_block(num_gallery: int, memory_bytes: int) -> int:
    return max(1, int(memory_bytes // (_BYTES_PER_CELL * max(num_gallery, 1))))


def _rules(same_cam: np.ndarray, same_clothes: np.ndarray | None, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """good and junk among items of the query's identity (docs/protocols.md#good-and-junk)."""
    if mode == "general":
        return ~same_cam, same_cam
    if mode == "CC":
        return ~same_cam & ~same_clothes, same_cam | same_clothes
    return ~same_cam & same_clothes, same_cam | ~same_clothes


def good_junk_masks(q_pids, q_camids, q_clothes, gallery, mode):
    """good and junk (Q×G, gallery order) by Simple-CCReID's rules (docs/protocols.md#good-and-junk);
    gallery = (pids, camids, clothes). The rank-list figure marks its tiles with the same masks."""
    g_pids, g_camids, g_clothes = gallery
    same_pid = g_pids[None, :] == q_pids[:, None]
    same_cam = g_camids[None, :] == q_camids[:, None]
    same_clothes = None if mode == "general" else g_clothes[None, :] == q_clothes[:, None]
    good, junk = _rules(same_cam, same_clothes, mode)
    return same_pid & good, same_pid & junk


def _tied_ranks(dist: np.ndarray, good: np.ndarray, junk: np.ndarray) -> np.ndarray:
    """1-based ranks of one query's good matches in the junk-free ranking, in rank order, ordered exactly as the
    official code orders them: np.argsort of the whole row, whose unstable sort decides ties."""
    order = np.argsort(dist)
    kept_rank = np.cumsum(~junk[order])
    return kept_rank[good[order]]


def _keys(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """uint64 keys ordering (row, float32 value) pairs exactly as (row, value) compare: the row in the high 32 bits,
    the value's IEEE-754 bits made monotonic in the low 32 (negative: all bits flipped; positive: sign bit set);
    -0.0 is folded into +0.0, which compares equal to it."""
    bits = (values.astype(np.float32) + np.float32(0)).view(np.uint32)
    bits = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
    return (rows.astype(np.uint64) << np.uint64(32)) | bits.astype(np.uint64)


def _float32_exact(dist: np.ndarray) -> np.ndarray | None:
    """The block as float32 when that loses nothing (float32 and float16 blocks, float64 ones holding float32
    values), else None."""
    if dist.dtype in (np.float32, np.float16):
        return dist.astype(np.float32, copy=False)
    if dist.dtype == np.float64:
        single = dist.astype(np.float32)
        if np.array_equal(single, dist):
            return single
    return None


class _Accumulator:
    """Sums AP, INP and first-hit ranks over blocks of queries.

    A query's good and junk items are among its identity's few gallery items, found through the gallery sorted
    by identity instead of Q×G masks. A good match's rank counts the kept items closer than it: every item no
    farther than the query's last good match is keyed by (query, distance) as one uint64 and sorted once per
    block, and binary search of each good match's key counts the items before it (junk ones subtracted). This
    is exact: without a tie the official argsort orders those items alike; a query where a good match ties
    with another kept item is ranked by np.argsort of its row, as the official code does. Blocks whose values
    are not float32 (float64 distances) are ranked row by row that way too.
    """

    def __init__(self, gallery: tuple, mode: str):
        self.gallery, self.mode = gallery, mode
        self.num_gallery = len(gallery[0])
        self.by_pid = np.argsort(gallery[0], kind="stable")
        self.sorted_pids = gallery[0][self.by_pid]
        self.first_hit_hist = np.zeros(self.num_gallery + 1, np.int64)
        self.chance_sum = np.zeros(min(CMC_RANKS, self.num_gallery))
        self.ap_sum = 0.0
        self.inp_sum = 0.0
        self.num_valid = 0
        self.num_queries = 0

    def _add_ranks(self, ranks: np.ndarray) -> None:
        """One query's good ranks, in order: its AP, first hit and INP (Simple-CCReID's definitions)."""
        n = len(ranks)
        self.ap_sum += float(np.mean(np.arange(1, n + 1) / ranks))
        self.first_hit_hist[ranks[0] - 1] += 1
        self.inp_sum += n / float(ranks[-1])
        self.num_valid += 1

    def _identity_pairs(self, q_pids, q_camids, q_clothes):
        """(query row, gallery column, good, junk) for every gallery item of each query's identity."""
        lo = np.searchsorted(self.sorted_pids, q_pids, "left")
        counts = np.searchsorted(self.sorted_pids, q_pids, "right") - lo
        rows = np.repeat(np.arange(len(q_pids)), counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        cols = self.by_pid[np.repeat(lo, counts) + within]
        _, g_camids, g_clothes = self.gallery
        same_clothes = None if self.mode == "general" else g_clothes[cols] == q_clothes[rows]
        good, junk = _rules(g_camids[cols] == q_camids[rows], same_clothes, self.mode)
        return rows, cols, good, junk

    def add(self, dist_block: np.ndarray, q_pids, q_camids, q_clothes) -> None:
        self.num_queries += len(q_pids)
        rows, cols, good, junk = self._identity_pairs(q_pids, q_camids, q_clothes)
        kept = self.num_gallery - np.bincount(rows[junk], minlength=len(q_pids))
        self.chance_sum += chance_cmc(np.bincount(rows[good], minlength=len(q_pids)), kept,
                                      len(self.chance_sum)).sum(0)
        single = _float32_exact(dist_block)
        if single is None:
            tied = np.unique(rows[good])
        else:
            tied = self._add_block(single, rows[good], cols[good], rows[junk], cols[junk])
        if len(tied):
            good_rows, junk_rows = good_junk_masks(q_pids[tied], q_camids[tied],
                                                   None if q_clothes is None else q_clothes[tied], self.gallery,
                                                   self.mode)
            for r, g, j in zip(tied, good_rows, junk_rows, strict=True):
                self._add_ranks(_tied_ranks(dist_block[r], g, j))

    def _add_block(self, dist, good_rows, good_cols, junk_rows, junk_cols) -> np.ndarray:
        """Adds the block's queries without ties; returns the rows with a tie at a good match."""
        if not len(good_rows):
            return good_rows
        good_dist = dist[good_rows, good_cols]
        if np.isnan(good_dist).any():
            r = good_rows[np.isnan(good_dist)][0]
            raise InputError(f"distance matrix: NaN at a true match of query row {r} of this block")
        last = np.full(len(dist), -np.inf, np.float32)
        np.maximum.at(last, good_rows, good_dist)
        cand_rows, cand_cols = np.nonzero(dist <= last[:, None])  # every item up to each query's last good
        near = _keys(cand_rows, dist[cand_rows, cand_cols])
        near.sort()
        junk_keys = _keys(junk_rows, dist[junk_rows, junk_cols])
        junk_keys.sort()
        good_keys = _keys(good_rows, good_dist)
        row_keys = _keys(np.arange(len(dist)), np.full(len(dist), -np.inf, np.float32))  # each row's first key

        def before_and_equal(sorted_keys):
            left = np.searchsorted(sorted_keys, good_keys, "left")
            equal = np.searchsorted(sorted_keys, good_keys, "right") - left
            return left - np.searchsorted(sorted_keys, row_keys, "left")[good_rows], equal

        near_before, near_equal = before_and_equal(near)
        junk_before, junk_equal = before_and_equal(junk_keys)
        ranks = near_before - junk_before + 1
        tied = np.unique(good_rows[near_equal - junk_equal > 1])
        keep = ~np.isin(good_rows, tied)
        owner, ranks = good_rows[keep], ranks[keep]
        order = np.lexsort((ranks, owner))  # per query, in rank order
        owner, ranks = owner[order], ranks[order]
        if len(owner):
            # the k-th good match of a query at rank r_k: AP = mean k / r_k, INP = n / r_n, first hit r_1
            starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
            counts = np.diff(np.r_[starts, len(owner)])
            k = np.arange(len(owner)) - np.repeat(starts, counts) + 1
            self.ap_sum += float(np.sum(np.add.reduceat(k / ranks, starts) / counts))
            np.add.at(self.first_hit_hist, ranks[starts] - 1, 1)
            self.inp_sum += float(np.sum(counts / ranks[starts + counts - 1]))
            self.num_valid += len(starts)
        return tied

    def result(self) -> dict:
        n = self.num_valid
        if n == 0:
            warnings.warn("evaluation: no query has a valid (good) gallery match; mAP and CMC are 0", stacklevel=3)
            return {"mAP": 0.0, "cmc": np.zeros(self.num_gallery), "mINP": 0.0, "num_valid": 0,
                    "num_queries": self.num_queries, "chance_cmc": np.zeros_like(self.chance_sum),
                    "num_gallery": self.num_gallery}
        cmc = np.cumsum(self.first_hit_hist[: self.num_gallery]) / n
        return {"mAP": self.ap_sum / n, "cmc": cmc, "mINP": self.inp_sum / n, "num_valid": n,
                "num_queries": self.num_queries, "chance_cmc": self.chance_sum / n, "num_gallery": self.num_gallery}


def chance_cmc(num_good: np.ndarray, num_kept: np.ndarray, ranks: int) -> np.ndarray:
    """Per query with a true match (num_good > 0), to `ranks`: the probability that a ranking drawn uniformly at
    random puts one of its num_good true matches among the first k of its num_kept junk-free gallery items,
    1 - C(kept - good, k) / C(kept, k) = 1 - prod_{i<k} (kept - good - i) / (kept - i): about k·good / kept for
    small k. Summed over queries and divided by the valid ones, it is the CMC random features score in
    expectation, the floor a trained model's curve is read against."""
    valid = num_good > 0
    good, kept = num_good[valid, None].astype(np.float64), num_kept[valid, None].astype(np.float64)
    i = np.arange(ranks)[None, :]
    # once fewer than `good` items remain unranked, a true match has been ranked for sure: the factor is 0
    miss = np.clip((kept - good - i) / np.maximum(kept - i, 1), 0, None)
    return 1 - np.cumprod(miss, axis=1)


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
            "num_queries": results[0]["num_queries"], "trials": len(results),
            **({"chance_cmc": np.mean([r["chance_cmc"] for r in results], axis=0),
                "num_gallery": results[0]["num_gallery"]} if "chance_cmc" in results[0] else {})}


CMC_RANKS = 50  # metrics.json keeps the CMC curve this far (torchreid's max_rank), for plots


def summarise(result: dict, ranks=(1, 5, 10, 20)) -> dict:
    """The numbers metrics.json records for one protocol: mAP, rank-k, mINP, counts, the gallery's size and the CMC
    curve to rank 50 (shorter when the gallery is), with the curve a random ranking scores (chance_cmc)."""
    cmc = result["cmc"]
    out = {"mAP": float(result["mAP"])}
    for k in ranks:
        out[f"rank{k}"] = float(cmc[min(k, len(cmc)) - 1]) if len(cmc) else 0.0
    out["mINP"] = float(result["mINP"])
    out["num_valid_queries"] = int(result["num_valid"])
    out["num_queries"] = int(result["num_queries"])
    out["cmc"] = [round(float(v), 6) for v in np.asarray(cmc)[:CMC_RANKS]]
    if "chance_cmc" in result:  # what a random ranking scores (chance_cmc), for the CMC figure's chance line
        out["chance_cmc"] = [round(float(v), 6) for v in np.asarray(result["chance_cmc"])[:CMC_RANKS]]
        out["num_gallery"] = int(result["num_gallery"])
    if "trials" in result and result["trials"] > 1:
        out["trials"] = int(result["trials"])
    return out
