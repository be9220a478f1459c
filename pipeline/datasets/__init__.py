"""Dataset adapters: each reads a dataset in its authors' own layout into labelled splits."""
from . import ccvid, clothes_flat, longterm, prcc, standard  # noqa: F401  (register the adapters)
from .base import LAYOUT_DIRS, NO_CLOTHES, REGISTRY, DatasetLayoutError, DatasetSplits, Protocol, Sample, load, pid2clothes

__all__ = ["LAYOUT_DIRS", "NO_CLOTHES", "REGISTRY", "DatasetLayoutError", "DatasetSplits", "Protocol", "Sample", "load", "pid2clothes"]
