"""Speed and memory of trainer.evaluation against the per-query reference, on PRCC- and MSMT17-sized problems.

    python benchmarks/bench_evaluation.py            # PRCC (3,543 × 3,384), MSMT17 (11,659 × 82,161), 100k gallery
    python benchmarks/bench_evaluation.py --quick    # smaller MSMT17 query subset for the reference

Labels are drawn like the real datasets (ids, cameras, images per id); distances are noisy so that
rankings are realistic (true matches tend to rank early). Both implementations see the same
distance matrix; their mAP/CMC must agree, then their times are compared. Memory is the tracemalloc
peak of the evaluation call (numpy reports its buffers to tracemalloc), the input matrix excluded.
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trainer.eval_reference import evaluate_loop  # noqa: E402
from trainer.evaluation import evaluate, evaluate_features  # noqa: E402


def problem(num_q, num_g, num_ids, num_cams, dim=64, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, num_ids, num_q), rng.integers(0, num_ids, num_g)
    qf = centres[q_pids] + rng.normal(scale=1.2, size=(num_q, dim)).astype(np.float32)
    gf = centres[g_pids] + rng.normal(scale=1.2, size=(num_g, dim)).astype(np.float32)
    labels = (q_pids, g_pids, rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g))
    return qf, gf, labels


def distmat(qf, gf):
    qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    return -(qn @ gn.T)


def timed(fn, *args, **kw):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak


def compare(name, num_q, num_g, num_ids, num_cams, ref_queries=None):
    qf, gf, labels = problem(num_q, num_g, num_ids, num_cams)
    d = distmat(qf, gf)
    fast, t_fast, m_fast = timed(evaluate, d, *labels)
    n_ref = ref_queries or num_q
    sub = (labels[0][:n_ref], labels[1], labels[2][:n_ref], labels[3])
    ref, t_ref, m_ref = timed(evaluate_loop, d[:n_ref], *sub)
    check = evaluate(d[:n_ref], *sub)
    assert abs(check["mAP"] - ref["mAP"]) < 1e-6 and np.allclose(check["cmc"], ref["cmc"], atol=1e-6)
    t_ref_full = t_ref * num_q / n_ref
    note = "" if n_ref == num_q else f" (reference timed on {n_ref} queries, scaled to {num_q})"
    print(f"{name}: {num_q} queries × {num_g} gallery, distmat {d.nbytes / 2**20:.0f} MiB float32")
    print(f"  vectorised : {t_fast:8.2f} s   peak {m_fast / 2**20:7.1f} MiB   "
          f"mAP {fast['mAP']:.4f}  R1 {fast['cmc'][0]:.4f}")
    print(f"  reference  : {t_ref_full:8.2f} s   peak {m_ref / 2**20:7.1f} MiB{note}")
    print(f"  speed-up   : {t_ref_full / t_fast:.1f}x   (results agree to 1e-6)")


def bounded(num_q, num_g, budget_mib):
    qf, gf, labels = problem(num_q, num_g, 4000, 15, seed=1)
    _, t, peak = timed(evaluate_features, qf, gf, *labels, memory_bytes=budget_mib << 20)
    full = num_q * num_g * 4 / 2**20
    print(f"features path, {num_q} × {num_g} gallery, budget {budget_mib} MiB: {t:.2f} s, peak {peak / 2**20:.1f} MiB "
          f"(a full float32 distmat alone would be {full:.0f} MiB; features {(qf.nbytes + gf.nbytes) / 2**20:.0f} MiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    compare("PRCC-sized (CC protocol)", 3543, 3384, 71, 3)
    compare("MSMT17-sized", 11659, 82161, 3060, 15, ref_queries=500 if a.quick else 2000)
    bounded(5000, 100_000, 256)


if __name__ == "__main__":
    main()
