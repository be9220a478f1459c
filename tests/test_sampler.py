import numpy as np
import pytest

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


def test_distinct_sampler_puts_p_different_identities_of_k_images_in_every_batch():
    from trainer.samplers import DistinctIdentitySampler

    pids = np.repeat(np.arange(12), [3, 7, 6, 6, 2, 9, 6, 6, 12, 1, 6, 6])
    s = DistinctIdentitySampler(pids, num_ids=5, num_instances=6, seed=4)
    s.set_epoch(2)
    order = list(s)
    assert len(order) == len(s) and len(order) % 30 == 0 and len(order) >= 60
    for b in range(0, len(order), 30):
        batch = pids[order[b: b + 30]]
        ids, counts = np.unique(batch, return_counts=True)
        assert len(ids) == 5 and (counts == 6).all()  # five distinct identities, six images each
    s.set_epoch(2)
    assert list(s) == order
    s.set_epoch(3)
    assert list(s) != order
    ranks = [DistinctIdentitySampler(pids, 5, 6, seed=4, rank=r, world_size=2) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(2)
    batches = [order[i: i + 30] for i in range(0, len(order), 30)]
    batches = batches[: len(batches) - len(batches) % 2]  # both ranks take as many batches
    assert list(ranks[0]) == [i for b in batches[0::2] for i in b]
    assert list(ranks[1]) == [i for b in batches[1::2] for i in b]


def test_distinct_sampler_refuses_what_it_cannot_do():
    from pipeline.errors import InputError
    from trainer.samplers import SAMPLERS, DistinctIdentitySampler

    with pytest.raises(InputError, match="5 distinct identities per batch, but the training set has 3"):
        DistinctIdentitySampler(np.repeat(np.arange(3), 6), 5, 6)
    with pytest.raises(InputError, match="not a multiple"):
        SAMPLERS.get("distinct")(np.arange(10), {"batch_size": 31, "num_instances": 6}, 0, 0, 1, None)
    with pytest.raises(InputError, match="no clothes-aware variant"):
        SAMPLERS.get("distinct")(np.arange(10), {"batch_size": 30, "num_instances": 6}, 0, 0, 1, np.zeros(10))
