"""Dataset adapters: each reads a dataset in its authors' own layout into labelled splits."""
from . import prcc  # noqa: F401  (registers the adapter)
from .base import LAYOUT_DIRS, REGISTRY, DatasetLayoutError, DatasetSplits, Protocol, Sample, load, pid2clothes

__all__ = ["LAYOUT_DIRS", "REGISTRY", "DatasetLayoutError", "DatasetSplits", "Protocol", "Sample", "load", "pid2clothes"]
