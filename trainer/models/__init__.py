"""Backbones, pooling, BN-neck and classifiers."""
from .backbones import build_backbone
from .reid import FeatureNet, LinearClassifier, NormalizedClassifier, ReIDModel

__all__ = ["build_backbone", "FeatureNet", "LinearClassifier", "NormalizedClassifier", "ReIDModel"]
