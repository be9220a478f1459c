"""A straightforward per-query port of the good/junk and metric definitions of Simple-CCReID's
tools/eval_metrics.py (docs/protocols.md#good-and-junk, docs/protocols.md#metrics).

Kept as the executable specification that `trainer.evaluation` is tested against, and as the
baseline its speed is measured against (benchmarks/bench_evaluation.py). Never used in the pipeline.
"""
from __future__ import annotations

import numpy as np


def _ap_cmc(index, good, junk):
    cmc = np.zeros(len(index))
    index = index[np.isin(index, junk, invert=True)]
    hits = np.flatnonzero(np.isin(index, good))
    cmc[hits[0]:] = 1.0
    ap = sum((i + 1) / (r + 1) for i, r in enumerate(hits)) / len(good)
    return ap, cmc


def evaluate_loop(distmat, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None, mode="general"):
    num_q, num_g = distmat.shape
    cmc_sum, ap_sum, valid = np.zeros(num_g), 0.0, 0
    for i in range(num_q):
        index = np.argsort(distmat[i])
        same_pid = np.flatnonzero(g_pids == q_pids[i])
        same_cam = np.flatnonzero(g_camids == q_camids[i])
        if mode == "general":
            good = np.setdiff1d(same_pid, same_cam)
            junk = np.intersect1d(same_pid, same_cam)
        else:
            same_clothes = np.flatnonzero(g_clothes == q_clothes[i])
            if mode == "CC":
                good = np.setdiff1d(np.setdiff1d(same_pid, same_cam), same_clothes)
                junk = np.intersect1d(same_pid, np.union1d(same_cam, same_clothes))
            else:
                good = np.intersect1d(np.setdiff1d(same_pid, same_cam), same_clothes)
                other_clothes = np.setdiff1d(np.arange(num_g), same_clothes)
                junk = np.intersect1d(same_pid, np.union1d(same_cam, other_clothes))
        if good.size == 0:
            continue
        ap, cmc = _ap_cmc(index, good, junk)
        ap_sum += ap
        cmc_sum += cmc
        valid += 1
    if valid == 0:
        return {"mAP": 0.0, "cmc": np.zeros(num_g), "num_valid": 0}
    return {"mAP": ap_sum / valid, "cmc": cmc_sum / valid, "num_valid": valid}
