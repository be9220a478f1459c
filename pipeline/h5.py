"""Opening HDF5 files the pipeline wrote (images.h5, stores, shards, features) with errors that name them.

h5py reports a truncated or foreign file as a bare OSError without the path ("Unable to synchronously open
file (truncated file: ...)"); a user who killed a copy half-way needs the file's name and what to rebuild.
"""
from __future__ import annotations

from pathlib import Path

import h5py

from .errors import InputError, MissingInputError


def open_h5(path: str | Path, what: str, rebuild: str) -> h5py.File:
    """Open `path` read-only. what: what the file should be ("image pack"); rebuild: how to make it again."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: {what} missing; {rebuild}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: {what} is empty (0 bytes); {rebuild}")
    try:
        return h5py.File(path, "r")
    except OSError as e:  # only the open: a truncated, empty or non-HDF5 file
        raise InputError(f"{path}: {what} cannot be opened as HDF5 ({e}); it is truncated or not an HDF5 "
                         f"file: {rebuild}") from None
