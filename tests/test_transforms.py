import numpy as np
import torch

from trainer.samplers import Draw, IdentitySampler, SeededDraws, item_generator
from trainer.transforms import TrainTransform, random_erase


def test_random_erasing_reaches_every_row_and_column():
    """CAL draws the corner with randint(0, H - h), both ends included: the last row and column can be erased."""
    h, w = 12, 6
    g = torch.Generator().manual_seed(0)
    touched = torch.zeros(h, w, dtype=torch.bool)
    for _ in range(3000):
        out = random_erase(torch.zeros(3, h, w), p=1.0, fill=(1.0, 1.0, 1.0), generator=g)
        touched |= out[0] > 0
    assert touched[-1].any() and touched[:, -1].any() and touched[0].any() and touched[:, 0].any()
    assert bool(touched.all())


def test_augmentation_depends_only_on_the_draw_seed():
    rgb = np.random.default_rng(0).integers(0, 255, (40, 20, 3), dtype=np.uint8)
    t = TrainTransform(32, 16, crop_p=0.5, flip_p=0.5, erase_p=0.5)
    a = [t(rgb, item_generator(Draw(0, s))[1]) for s in range(20)]
    torch.manual_seed(123)  # the global generator plays no part
    b = [t(rgb, item_generator(Draw(7, s))[1]) for s in range(20)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert len({x.sum().item() for x in a}) > 5  # different seeds give different augmentations


def test_seeded_draws_are_a_function_of_seed_epoch_rank_and_position():
    pids = np.repeat(np.arange(6), 4)
    draws = SeededDraws(IdentitySampler(pids, 2, seed=1), seed=1, rank=0)
    draws.set_epoch(3)
    first = list(draws)
    draws.set_epoch(3)
    assert list(draws) == first and len(first) == len(draws)
    plain = IdentitySampler(pids, 2, seed=1)
    plain.set_epoch(3)
    assert [d.index for d in first] == list(plain)
    draws.set_epoch(4)
    assert {d.seed for d in draws}.isdisjoint({d.seed for d in first})
    other_rank = SeededDraws(IdentitySampler(pids, 2, seed=1), seed=1, rank=1)
    other_rank.set_epoch(3)
    assert {d.seed for d in other_rank}.isdisjoint({d.seed for d in first})
    assert len({d.seed for d in first}) == len(first)
