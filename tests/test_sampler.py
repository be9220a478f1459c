import numpy as np

from trainer.samplers import IdentitySampler


def test_groups_of_k_from_one_identity_and_cal_epoch_length():
    pids = [0] * 5 + [1] * 2 + [2] * 9
    s = IdentitySampler(pids, num_instances=4, seed=1)
    order = list(s)
    # per pid: max(n, K) - max(n, K) % K -> 4 + 4 + 8
    assert len(order) == len(s) == 16
    for g in range(0, len(order), 4):
        assert len({pids[i] for i in order[g : g + 4]}) == 1
    assert {i for i in order if pids[i] == 1} == {5, 6}  # fewer than K: drawn with replacement


def test_reshuffles_per_epoch_and_is_reproducible():
    pids = np.repeat(np.arange(6), 6)
    a, b = IdentitySampler(pids, 3, seed=0), IdentitySampler(pids, 3, seed=0)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)


def test_ranks_take_disjoint_groups_of_equal_length():
    pids = np.repeat(np.arange(7), 4)
    r0 = list(IdentitySampler(pids, 4, seed=0, rank=0, world_size=2))
    r1 = list(IdentitySampler(pids, 4, seed=0, rank=1, world_size=2))
    assert len(r0) == len(r1) == 12  # 7 groups trimmed to 6
    assert not set(r0) & set(r1)
