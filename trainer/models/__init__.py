"""Backbones, pooling, BN-neck and classifiers; the 3DSL network."""

from pipeline.errors import InputError

from .backbones import build_backbone
from .reid import FeatureNet, LinearClassifier, NormalizedClassifier, ReIDModel


def build_feature_net(spec: dict):
    """Rebuild a trained feature network from model.pt's spec (its weights come from the state dict,
    so pretrained weights are never reloaded here)."""
    kind, kwargs = spec["kind"], spec["kwargs"]
    if kind == "featurenet":
        return FeatureNet(pretrained="none", **kwargs)
    if kind == "threedsl":
        from .threedsl import ThreeDSLNet
        return ThreeDSLNet(pretrained="none", **kwargs)
    if kind == "bsga":
        from .bsga import BSGANet
        return BSGANet(pretrained="none", **kwargs)
    if kind == "deskpro":
        from .deskpro import deskpro_net
        return deskpro_net(pretrained="none", **kwargs)
    raise InputError(f"model.pt: unknown feature network kind {kind!r}")


__all__ = ["build_backbone", "build_feature_net", "FeatureNet", "LinearClassifier", "NormalizedClassifier", "ReIDModel"]
