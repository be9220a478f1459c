import numpy as np
import pytest

from pipeline.errors import InputError
from trainer.eval_reference import evaluate_loop
from trainer.evaluation import evaluate, evaluate_features, summarise


def test_hand_computed_general_with_junk():
    # one query (pid 1, cam 0); gallery ranked by distance: g2 g0 g3 g1 g4
    dist = np.array([[0.2, 0.4, 0.1, 0.3, 0.5]])
    g_pids = np.array([1, 1, 2, 1, 3])
    g_cams = np.array([1, 0, 1, 1, 0])  # g1 is same pid + same cam -> junk
    r = evaluate(dist, np.array([1]), g_pids, np.array([0]), g_cams)
    # ranking after junk removal: g2(neg) g0(hit) g3(hit) g4 -> hits at ranks 2 and 3
    assert r["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    np.testing.assert_array_equal(r["cmc"], [0, 1, 1, 1, 1])
    assert r["num_valid"] == 1
    assert r["mINP"] == pytest.approx(2 / 3)


def test_query_without_valid_gallery_is_skipped():
    dist = np.array([[0.1, 0.2], [0.3, 0.1]])
    # query 0 (pid 5) has only a same-camera match: junk, no good -> skipped
    r = evaluate(dist, np.array([5, 7]), np.array([5, 7]), np.array([0, 0]), np.array([0, 1]))
    assert r["num_valid"] == 1 and r["num_queries"] == 2
    assert r["mAP"] == pytest.approx(1.0)


def test_no_valid_query_at_all_gives_zero_and_warns():
    with pytest.warns(UserWarning, match="no query has a valid"):
        r = evaluate(np.array([[0.1]]), np.array([1]), np.array([2]), np.array([0]), np.array([1]))
    assert r["mAP"] == 0.0 and r["num_valid"] == 0 and not r["cmc"].any()


def test_clothes_modes_hand_computed():
    # query pid 1, cam 0, clothes 10. Gallery in distance order:
    #  g0 pid1 cam1 clothes10 (same clothes), g1 pid2, g2 pid1 cam2 clothes11 (other clothes), g3 pid1 cam0 clothes11
    dist = np.array([[0.1, 0.2, 0.3, 0.4]])
    args = dict(q_pids=np.array([1]), g_pids=np.array([1, 2, 1, 1]), q_camids=np.array([0]),
                g_camids=np.array([1, 1, 2, 0]), q_clothes=np.array([10]), g_clothes=np.array([10, 5, 11, 11]))
    cc = evaluate(dist, mode="CC", **args)  # good: g2; junk: g0 (same clothes), g3 (same cam) -> ranking g1 g2
    assert cc["mAP"] == pytest.approx(1 / 2)
    np.testing.assert_array_equal(cc["cmc"][:2], [0, 1])
    sc = evaluate(dist, mode="SC", **args)  # good: g0; junk: g2, g3 -> g0 first
    assert sc["mAP"] == pytest.approx(1.0)
    general = evaluate(dist, mode="general", **args)  # good: g0, g2; junk: g3 -> ranks 1 and 3
    assert general["mAP"] == pytest.approx((1 + 2 / 3) / 2)


def test_ties_break_like_numpy_argsort():
    dist = np.zeros((1, 4))  # every gallery item tied
    g_pids = np.array([2, 1, 2, 1])
    r = evaluate(dist, np.array([1]), g_pids, np.array([0]), np.array([1, 1, 1, 1]))
    order = np.argsort(dist[0])
    hits = np.flatnonzero(g_pids[order] == 1) + 1
    assert r["mAP"] == pytest.approx(np.mean(np.arange(1, len(hits) + 1) / hits))


@pytest.mark.parametrize("ties, dtype", [(True, np.float32), (False, np.float32), (False, np.float64),
                                         (True, np.float64), (False, np.float16)])
@pytest.mark.parametrize("mode", ["general", "CC", "SC"])
def test_agrees_with_per_query_reference(mode, ties, dtype):
    rng = np.random.default_rng(1)
    for _ in range(6):
        q, g = int(rng.integers(1, 50)), int(rng.integers(2, 300))
        # integer distances tie often (a tied query: np.argsort of its row); continuous ones never (the keyed
        # block path); float64 values that float32 cannot hold are ranked row by row
        dist = rng.integers(0, 15, size=(q, g)).astype(dtype) if ties else rng.random((q, g)).astype(dtype)
        labels = dict(q_pids=rng.integers(0, 6, q), g_pids=rng.integers(0, 6, g), q_camids=rng.integers(0, 3, q),
                      g_camids=rng.integers(0, 3, g), q_clothes=rng.integers(0, 3, q), g_clothes=rng.integers(0, 3, g))
        fast = evaluate(dist, mode=mode, memory_bytes=g * 40 * 4, **labels)  # several blocks
        slow = evaluate_loop(dist, mode=mode, **labels)
        assert fast["num_valid"] == slow["num_valid"]
        assert abs(fast["mAP"] - slow["mAP"]) < 1e-6
        np.testing.assert_allclose(fast["cmc"], slow["cmc"], atol=1e-6)


def test_signed_zeros_tie_and_a_nan_true_match_is_refused():
    # -0.0 == +0.0: a tie the official argsort decides, not an order the keys may invent
    dist = np.array([[0.0, -0.0, 0.5, -0.0, 0.0]], np.float32)
    labels = {k: np.array(v) for k, v in dict(q_pids=[1], g_pids=[1, 2, 1, 2, 1], q_camids=[0],
                                               g_camids=[1, 1, 1, 1, 1]).items()}
    fast, slow = evaluate(dist, **labels), evaluate_loop(dist, **labels)
    assert fast["mAP"] == slow["mAP"] and np.array_equal(fast["cmc"], slow["cmc"])
    with pytest.raises(InputError, match="NaN at a true match"):
        evaluate(np.array([[np.nan, 0.1, 0.2]], np.float32), [1], [1, 2, 1], [0], [1, 1, 1])


def test_block_size_does_not_change_the_result():
    rng = np.random.default_rng(2)
    dist = rng.random((40, 120))
    labels = (rng.integers(0, 5, 40), rng.integers(0, 5, 120), rng.integers(0, 2, 40), rng.integers(0, 2, 120))
    one = evaluate(dist, *labels, memory_bytes=1)  # one query row per block
    allrows = evaluate(dist, *labels, memory_bytes=1 << 30)
    assert one["mAP"] == pytest.approx(allrows["mAP"], abs=1e-12)
    np.testing.assert_array_equal(one["cmc"], allrows["cmc"])


def test_features_path_equals_negative_cosine_distmat():
    rng = np.random.default_rng(3)
    qf, gf = rng.normal(size=(30, 16)), rng.normal(size=(90, 16))
    labels = (rng.integers(0, 8, 30), rng.integers(0, 8, 90), rng.integers(0, 3, 30), rng.integers(0, 3, 90))
    qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    a = evaluate(-(qn @ gn.T), *labels)
    b = evaluate_features(qf, gf, *labels, memory_bytes=90 * 40 * 7)
    assert a["mAP"] == pytest.approx(b["mAP"], abs=1e-6)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="mode"):
        evaluate(np.zeros((1, 1)), [0], [0], [0], [1], mode="cc")
    with pytest.raises(ValueError, match="needs q_clothes"):
        evaluate(np.zeros((1, 1)), [0], [0], [0], [1], mode="CC")
    with pytest.raises(ValueError, match="distmat is 1×1"):
        evaluate(np.zeros((1, 1)), [0, 1], [0], [0, 0], [1])


def test_summary_reports_ranks_and_counts():
    r = {"mAP": 0.5, "cmc": np.linspace(0.1, 1, 30), "mINP": 0.2, "num_valid": 7, "num_queries": 9}
    s = summarise(r)
    assert s["rank1"] == pytest.approx(0.1) and s["rank20"] == pytest.approx(r["cmc"][19])
    assert s["num_valid_queries"] == 7
    assert s["cmc"] == pytest.approx(list(r["cmc"]), abs=1e-6) and len(s["cmc"]) == 30  # to rank 50, 6 decimals
    assert len(summarise({**r, "cmc": np.linspace(0, 1, 80)})["cmc"]) == 50


def test_single_shot_galleries_pick_one_image_per_identity_reproducibly():
    import random

    from trainer.evaluation import single_shot_galleries

    g_pids = np.array([5, 5, 9, 5, 9, 2])
    trials = single_shot_galleries(g_pids, 10, seed=3)
    assert len(trials) == 10
    for t in trials:
        assert sorted(g_pids[t].tolist()) == [2, 5, 9]
    # the draw Simple-CCReID makes: random.seed(3), identities in first-appearance order, random.choice each
    random.seed(3)
    expected = [random.choice([0, 1, 3]), random.choice([2, 4]), random.choice([5])]
    assert trials[0].tolist() == expected
    assert any(not np.array_equal(trials[0], t) for t in trials[1:])


def test_averaging_trials():
    from trainer.evaluation import average_results

    a = {"mAP": 0.2, "cmc": np.array([0.0, 1.0]), "mINP": 0.1, "num_valid": 3, "num_queries": 4}
    b = {"mAP": 0.4, "cmc": np.array([1.0, 1.0]), "mINP": 0.3, "num_valid": 3, "num_queries": 4}
    r = average_results([a, b])
    assert r["mAP"] == pytest.approx(0.3) and r["cmc"].tolist() == [0.5, 1.0] and r["trials"] == 2
    assert summarise(r)["trials"] == 2


@pytest.mark.parametrize("mode", ["general", "CC", "SC"])
def test_the_chance_curve_is_the_mean_cmc_of_every_ranking(mode):
    """chance_cmc: what a ranking drawn uniformly at random scores in expectation, junk removed as the metric
    removes it; checked against the CMC of every one of the 7! orders of the gallery, averaged."""
    import itertools

    g_pids = np.array([1, 1, 1, 2, 2, 3, 1])
    g_cams = np.array([0, 1, 1, 0, 1, 1, 2])
    g_clothes = np.array([10, 10, 11, 20, 21, 30, 11])
    q = dict(q_pids=np.array([1, 2, 4]), q_camids=np.array([0, 0, 0]), q_clothes=np.array([10, 20, 40]))
    args = dict(**q, g_pids=g_pids, g_camids=g_cams, g_clothes=g_clothes, mode=mode)
    orders = list(itertools.permutations(range(7)))
    curves = [evaluate(np.array(order, float)[None].repeat(3, 0), **args)["cmc"] for order in orders]
    r = evaluate(np.zeros((3, 7)), **args)
    np.testing.assert_allclose(r["chance_cmc"], np.mean(curves, axis=0), atol=1e-12)
    assert r["num_gallery"] == 7
    s = summarise(r)
    assert len(s["chance_cmc"]) == 7 and s["num_gallery"] == 7
    many = evaluate(np.zeros((1, 80)), np.array([1]), np.arange(80) % 8, np.array([0]), np.ones(80, int))
    assert len(many["chance_cmc"]) == 50  # kept to the rank metrics.json keeps the CMC to
    # 10 true matches among 80 items, none junk: 1 - (70/80)(69/79)... at rank k
    np.testing.assert_allclose(many["chance_cmc"][:5], 1 - np.cumprod(1 - 10 / (80 - np.arange(5))), atol=1e-12)
