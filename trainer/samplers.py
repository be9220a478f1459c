"""Identity samplers, chosen by `data.sampler` (docs/methods.md#sampler): `pk`, P×K sampling exactly as
Simple-CCReID's (Distributed)RandomIdentitySampler (its data/samplers.py), and `distinct`, torchreid's
RandomIdentitySampler (P distinct identities per batch), which DeSKPro uses; plus the per-item draw seeds
every training item carries."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Sampler

from pipeline.errors import InputError
from pipeline.registry import Registry


class IdentitySampler(Sampler[int]):
    """Each epoch: per identity, K-sized groups of its shuffled images (drawn with replacement when it
    has fewer than K, remainder dropped); all groups shuffled globally; rank r of W takes groups r::W.
    Consecutive groups form a batch, so a batch can hold two groups of one identity, as in CAL.

    clothes given (3DSL's clothes-aware sampling, paper §3.3): an identity's shuffled images are dealt
    round-robin over its outfits before grouping, so each group spans as many outfits as it can and the
    triplet loss finds same-identity, other-clothes positives."""

    def __init__(self, pids, num_instances: int, seed: int = 0, rank: int = 0, world_size: int = 1, clothes=None):
        if num_instances < 1:
            raise InputError(f"num_instances must be >= 1, got {num_instances}")
        self.by_pid: dict[int, list[int]] = defaultdict(list)
        for i, pid in enumerate(pids):
            self.by_pid[int(pid)].append(i)
        self.k, self.seed, self.rank, self.world = num_instances, seed, rank, world_size
        self.clothes = None if clothes is None else np.asarray(clothes)
        self.epoch = 0
        groups = sum(max(len(v), self.k) // self.k for v in self.by_pid.values())
        self._len = (groups // self.world) * self.k

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _groups(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups = []
        for pid in sorted(self.by_pid):
            idx = np.array(self.by_pid[pid])
            if len(idx) < self.k:
                idx = rng.choice(idx, size=self.k, replace=True)
            idx = rng.permutation(idx)
            if self.clothes is not None:
                idx = self._deal_over_outfits(idx)
            usable = len(idx) - len(idx) % self.k
            groups += [idx[j : j + self.k].tolist() for j in range(0, usable, self.k)]
        order = rng.permutation(len(groups))
        groups = [groups[i] for i in order]
        return groups[: len(groups) - len(groups) % self.world]

    def _deal_over_outfits(self, idx: np.ndarray) -> np.ndarray:
        outfits: dict[int, list[int]] = {}
        for i in idx:
            outfits.setdefault(int(self.clothes[i]), []).append(int(i))
        piles = list(outfits.values())
        return np.array([p[r] for r in range(max(map(len, piles))) for p in piles if r < len(p)])

    def __iter__(self):
        for group in self._groups()[self.rank :: self.world]:
            yield from group

    def __len__(self) -> int:
        return self._len


class DistinctIdentitySampler(Sampler[int]):
    """P distinct identities × K images per batch, as torchreid's RandomIdentitySampler (which DeSKPro's
    data/sampler.py uses): each identity's shuffled images are cut into K-groups (drawn with replacement
    when it has fewer than K); while at least P identities have groups left, P of them are drawn without
    replacement and each gives its next group. Unlike CAL's sampler (IdentitySampler), a batch never holds
    one identity twice. Draws come from a generator seeded by (seed, epoch); with several processes, rank r
    takes batches r, r+W, ...; the epoch's length is that of its own draw."""

    def __init__(self, pids, num_ids: int, num_instances: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if num_ids < 1 or num_instances < 1:
            raise InputError(f"a batch needs at least one identity and one image each, got P={num_ids}, "
                             f"K={num_instances} (data.batch_size must be a multiple of data.num_instances)")
        self.by_pid: dict[int, list[int]] = defaultdict(list)
        for i, pid in enumerate(pids):
            self.by_pid[int(pid)].append(i)
        if len(self.by_pid) < num_ids:
            raise InputError(f"{num_ids} distinct identities per batch, but the training set has {len(self.by_pid)}")
        self.p, self.k, self.seed, self.rank, self.world = num_ids, num_instances, seed, rank, world_size
        self.epoch = 0
        self._cached: tuple[int, list[int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if self._cached is not None and self._cached[0] == self.epoch:
            return self._cached[1]
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: dict[int, list[list[int]]] = {}
        for pid in sorted(self.by_pid):
            idx = np.array(self.by_pid[pid])
            if len(idx) < self.k:
                idx = rng.choice(idx, size=self.k, replace=True)
            idx = rng.permutation(idx)
            groups[pid] = [idx[j: j + self.k].tolist() for j in range(0, len(idx) - len(idx) % self.k, self.k)]
        available = sorted(pid for pid, g in groups.items() if g)
        batches = []
        while len(available) >= self.p:
            chosen = [available[i] for i in rng.choice(len(available), size=self.p, replace=False)]
            batches.append([i for pid in chosen for i in groups[pid].pop(0)])
            available = [pid for pid in available if groups[pid]]
        batches = batches[: len(batches) - len(batches) % self.world]
        indices = [i for batch in batches[self.rank:: self.world] for i in batch]
        self._cached = (self.epoch, indices)
        return indices

    def __iter__(self):
        yield from self._indices()

    def __len__(self) -> int:
        return len(self._indices())


# data.sampler -> (pids, data config, seed, rank, world size, clothes or None) -> sampler
SAMPLERS: Registry[Callable[..., Sampler[int]]] = Registry("sampler (data.sampler)")
SAMPLERS.add("pk", lambda pids, d, seed, rank, world, clothes: IdentitySampler(
    pids, d["num_instances"], seed, rank, world, clothes=clothes))


def _distinct(pids, d, seed, rank, world, clothes):
    if clothes is not None:
        raise InputError("data.sampler distinct has no clothes-aware variant; use pk")
    if d["batch_size"] % d["num_instances"]:
        raise InputError(f"data.batch_size {d['batch_size']} is not a multiple of data.num_instances "
                         f"{d['num_instances']}")
    return DistinctIdentitySampler(pids, d["batch_size"] // d["num_instances"], d["num_instances"], seed, rank, world)


SAMPLERS.add("distinct", _distinct)


class Draw(NamedTuple):
    """A training item to load and the seed of its random augmentation."""

    index: int
    seed: int


def item_generator(key) -> tuple[int, torch.Generator | None]:
    """(dataset index, generator for its augmentation) from what a loader passes to __getitem__: a Draw in
    training, a plain index in evaluation (no random draws)."""
    if isinstance(key, Draw):
        return key.index, torch.Generator().manual_seed(key.seed)
    return int(key), None


class SeededDraws(Sampler[Draw]):
    """Wraps a sampler so each item it yields carries a seed derived from (seed, epoch, rank, position in the
    epoch). Augmentations then depend on nothing else — not on the loader worker that runs them nor on
    that worker's history — which makes a resumed run, whatever its number of workers, replay the draws
    of an uninterrupted one (DataLoader's own per-worker seeding does not: persistent workers are seeded
    once, when first started, so a run resumed at epoch e seeds them differently)."""

    def __init__(self, sampler: IdentitySampler, seed: int, rank: int = 0):
        self.sampler, self.seed, self.rank, self.epoch = sampler, int(seed), int(rank), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        indices = list(self.sampler)
        seeds = np.random.SeedSequence([self.seed, self.epoch, self.rank]).generate_state(len(indices), np.uint64)
        for i, s in zip(indices, seeds, strict=True):
            yield Draw(int(i), int(s >> np.uint64(1)))  # 63 bits: torch seeds are int64

    def __len__(self) -> int:
        return len(self.sampler)
