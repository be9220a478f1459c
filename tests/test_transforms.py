import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import default_collate

from trainer.config import ConfigError
from trainer.methods.base import augment_place, train_transform
from trainer.samplers import Draw, IdentitySampler, SeededDraws, item_generator
from trainer.transforms import (
    TrainTransform,
    _crop_enlarged,
    _enlarged_crop,
    _erase_box,
    _fill_box,
    _rand,
    apply_draws,
    finish_batch,
    normalise,
    resized,
)


def per_image_reference(rgb, size, crop_p, flip_p, erase_p, generator):
    """CAL's training transform one image (or clip) at a time, as every worker ran it before the draws were applied
    to whole batches: resize, crop ×1.125, flip, normalise, erase, each drawn when it is reached."""
    h, w = size
    img = resized(rgb, size)
    if _rand(generator) < crop_p:
        img = _crop_enlarged(img, _enlarged_crop(h, w, 1.125, generator))
    if _rand(generator) < flip_p:
        img = TF.horizontal_flip(img)
    return _fill_box(normalise(img), _erase_box(h, w, erase_p, generator=generator))


def test_random_erasing_reaches_every_row_and_column():
    """CAL draws the corner with randint(0, H - h), both ends included: the last row and column can be erased."""
    h, w = 12, 6
    t = TrainTransform(h, w, crop_p=0.0, flip_p=0.0, erase_p=1.0)
    g = torch.Generator().manual_seed(0)
    touched = torch.zeros(h, w, dtype=torch.bool)
    for _ in range(3000):
        out = t(np.zeros((h, w, 3), np.uint8), g)
        touched |= out[0] > 0  # black normalises below zero, the fill above it
    assert touched[-1].any() and touched[:, -1].any() and touched[0].any() and touched[:, 0].any()
    assert bool(touched.all())


@pytest.mark.parametrize("on_device", [False, True])
def test_batched_augmentation_equals_the_per_image_transform_on_the_same_draws(on_device):
    """The worker's draws applied to a whole batch (on the device) give exactly the tensors the per-image transform
    gives on the same seeds: same crops, flips and erased rectangles, same pixels."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (int(rng.integers(30, 90)), int(rng.integers(15, 45)), 3), dtype=np.uint8)
              for _ in range(48)]
    t = TrainTransform(32, 16, crop_p=0.5, flip_p=0.5, erase_p=0.5, on_device=on_device)
    items = [t(rgb, torch.Generator().manual_seed(100 + i)) for i, rgb in enumerate(images)]
    expected = torch.stack([per_image_reference(rgb, [32, 16], 0.5, 0.5, 0.5, torch.Generator().manual_seed(100 + i))
                            for i, rgb in enumerate(images)])
    got = finish_batch(default_collate(items))
    assert got.dtype == torch.float32 and got.shape == (48, 3, 32, 16)
    assert torch.equal(got, expected)
    if on_device:  # the worker hands over uint8 pixels and the draws; all of them were used
        draws = torch.stack([it["augment_draws"] for it in items])
        for field, col in (("crop", 0), ("flip", 5), ("erase", 6)):
            assert 0 < int(draws[:, col].sum()) < len(items), field


def test_batched_augmentation_of_clips_draws_once_per_clip():
    rng = np.random.default_rng(1)
    clips = [[rng.integers(0, 256, (40, 20, 3), dtype=np.uint8) for _ in range(4)] for _ in range(6)]
    t = TrainTransform(32, 16, crop_p=0.5, flip_p=0.5, erase_p=0.5, on_device=True)
    batch = default_collate([t(c, torch.Generator().manual_seed(i)) for i, c in enumerate(clips)])
    got = finish_batch({"rgb": batch, "other": torch.ones(2)})  # nested in a dict of inputs, as 3DSL's
    expected = torch.stack([per_image_reference(c, [32, 16], 0.5, 0.5, 0.5, torch.Generator().manual_seed(i))
                            for i, c in enumerate(clips)])
    assert got["rgb"].shape == (6, 4, 3, 32, 16) and torch.equal(got["rgb"], expected)
    assert torch.equal(got["other"], torch.ones(2))


def test_apply_draws_refuses_what_is_not_uint8_images_with_a_draw_each():
    draws = TrainTransform(8, 4).draw(torch.Generator().manual_seed(0))[None]
    with pytest.raises(ValueError, match="uint8"):
        apply_draws(torch.zeros(1, 3, 8, 4), draws)
    with pytest.raises(ValueError, match="draw row each"):
        apply_draws(torch.zeros(2, 3, 8, 4, dtype=torch.uint8), draws)


def test_where_to_augment_is_checked_and_auto_follows_the_training_device():
    cfg = {"data": {"height": 8, "width": 4, "augment": {"crop_p": 0.5, "flip_p": 0.5, "erase_p": 0.5, "where": "gpu"}}}
    with pytest.raises(ConfigError, match="data.augment.where.*'gpu'"):
        augment_place(cfg, torch.device("cpu"))
    cfg["data"]["augment"]["where"] = "auto"
    with pytest.raises(ConfigError, match="resolves 'auto'"):
        train_transform(cfg)
    assert not train_transform(augment_place(cfg, torch.device("cpu"))).on_device
    assert train_transform(augment_place(cfg, torch.device("cuda", 0))).on_device
    assert cfg["data"]["augment"]["where"] == "auto"  # resolved on a copy: the config as hashed is unchanged
    cfg["data"]["augment"]["where"] = "device"
    assert train_transform(augment_place(cfg, torch.device("cpu"))).on_device
    deskpro_like = {"data": {"augment": {"flip_p": 0.5}}}
    assert augment_place(deskpro_like, torch.device("cpu")) is deskpro_like


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
