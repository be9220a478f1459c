"""The contract between a method and the engine."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.registry import Registry

from ..config import ConfigError
from ..data import PackedClips, PackedImages
from ..precision import Precision
from ..transforms import TestTransform, TrainTransform

METHODS: Registry[type["Method"]] = Registry("method")
register = METHODS.register


def method_class(cfg: dict) -> type["Method"]:
    return METHODS.get(cfg["method"])


def build_method(cfg: dict, num_pids: int, pid2clothes: np.ndarray | None, device: torch.device,
                 resources: dict | None = None) -> "Method":
    """resources: what a method reads besides images (3DSL: body_model and mocap paths)."""
    return method_class(cfg)(cfg, num_pids, pid2clothes, device, resources)


AUGMENT_PLACES = ("auto", "device", "worker")


def augment_place(cfg: dict, device: torch.device) -> dict:
    """cfg with `data.augment.where: auto` resolved for the training device: "device" on a GPU, where the batched
    augmentation is nearly free and keeps the workers to decoding, "worker" on the CPU, where the workers run it
    beside the training process instead of inside it (benchmarks/bench_input_pipeline.py). Both give identical
    tensors on the CPU. A config without the key (a method with its own transforms) is returned as it is."""
    aug = cfg["data"].get("augment", {})
    if "where" not in aug:
        return cfg
    if aug["where"] not in AUGMENT_PLACES:
        raise ConfigError(f"data.augment.where: one of {', '.join(AUGMENT_PLACES)}, got {aug['where']!r}")
    if aug["where"] != "auto":
        return cfg
    where = "device" if device.type == "cuda" else "worker"
    return {**cfg, "data": {**cfg["data"], "augment": {**aug, "where": where}}}


def train_transform(cfg: dict) -> TrainTransform:
    """CAL's training augmentation with the config's data size and `data.augment` probabilities; `augment.where`
    (resolved by augment_place): "device" (the worker decodes and resizes, the training device augments the batch)
    or "worker"."""
    d = cfg["data"]
    aug = d["augment"]
    if aug["where"] not in ("device", "worker"):
        raise ConfigError(f"data.augment.where: 'device' or 'worker' (augment_place resolves 'auto'), "
                          f"got {aug['where']!r}")
    return TrainTransform(d["height"], d["width"], aug["crop_p"], aug["flip_p"], aug["erase_p"],
                          on_device=aug["where"] == "device")


class Method:
    """A method owns its modules, optimisers and schedulers and implements one training step.

    `modules`, `optimizers` and `schedulers` are dicts so the engine can checkpoint them by name.
    """

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]

    @classmethod
    def training_dataset(cls, pack, samples, cfg: dict, stores: dict, video: bool):
        """The training items: images (or clips of a video dataset) through CAL's augmentation.
        stores: the opened preprocessing stores the method requires, by stage."""
        d = cfg["data"]
        transform = train_transform(cfg)
        if video:
            v = d["video"]  # training clips: dense chunks, then a random crop (docs/protocols.md#ccvid-clips)
            return PackedClips(pack, samples, transform, train=True, seq_len=v["seq_len"], stride=v["stride"],
                               dense_step=v["dense_step"])
        return PackedImages(pack, samples, transform)

    @classmethod
    def test_dataset(cls, pack, samples, cfg: dict, stores: dict, video: dict | None):
        """A split's test items for the feature net: resized, normalised images (or every test clip of each
        tracklet). stores: the opened stores the method's config names under `test.stores`."""
        d = cfg["data"]
        transform = TestTransform(d["height"], d["width"])
        if video:
            return PackedClips(pack, samples, transform, train=False, seq_len=video["seq_len"], stride=video["stride"])
        return PackedImages(pack, samples, transform)

    # keys under `test` that `trainer.evaluate --set test.KEY=...` may change on a trained model (the others were
    # fixed when it trained: e.g. DeSKPro's face stream decides which weights model.pt holds)
    test_keys: tuple[str, ...] = ()

    @classmethod
    def test_feature_net(cls, net: nn.Module, cfg: dict) -> nn.Module:
        """The rebuilt feature net set up as the config's `test` section asks (CRE+BSGA: with or without BSGA);
        evaluation calls it after loading model.pt, whose test settings `trainer.evaluate --set test.*` may change."""
        return net

    @classmethod
    def sampler_clothes(cls, cfg: dict, dataset):
        """Clothes labels for a clothes-aware identity sampler, or None for plain P×K."""
        return None

    def feature_net(self) -> nn.Module:
        raise NotImplementedError

    def feature_net_spec(self) -> dict:
        """How evaluation rebuilds feature_net() from its state dict (trainer.models.build_feature_net)."""
        raise NotImplementedError

    def write_report(self, out_dir, dataset) -> dict:
        """Method-specific pictures of the trained model, written into out_dir (OUT/train_figures, which the
        report shows); returns what to record in model.pt."""
        return {}

    def wrap_distributed(self, device: torch.device) -> None:
        """Wrap the modules that carry the backbone in DDP (called once the process group exists)."""
        raise NotImplementedError

    def train_step(self, images, pids, camids, clothes, epoch: int, precision: Precision) -> dict[str, float]:
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> None:
        for s in self.schedulers.values():
            s.step()

    def train(self, mode: bool = True) -> None:
        for m in self.modules.values():
            m.train(mode)

    @staticmethod
    def ddp(module: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=find_unused_parameters)
