"""Dataset adapters: each reads a dataset in its authors' own layout into labelled splits."""
from . import ccvid, clothes_flat, longterm, prcc, standard  # noqa: F401  (register the adapters)
from .base import (
    FORMATS,
    NO_CLOTHES,
    DatasetLayoutError,
    DatasetSplits,
    Protocol,
    Sample,
    layout_dir,
    load,
    pid2clothes,
)

__all__ = ["FORMATS", "NO_CLOTHES", "DatasetLayoutError", "DatasetSplits", "Protocol", "Sample", "layout_dir", "load",
           "pid2clothes"]
