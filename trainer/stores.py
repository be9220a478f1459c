"""The preprocessing stores a method reads, as the train and evaluate CLIs receive them (`--store STAGE=PATH`)."""
from __future__ import annotations

import os

import numpy as np

from pipeline.cli import key_value_args
from pipeline.datasets.base import Sample, listed_files
from pipeline.errors import InputError
from pipeline.h5 import open_h5
from pipeline.imagepack import ImagePack
from pipeline.stages.store import Store, check_inputs_agree, decode_png, store_rebuild


def parse_store_args(args: list[str]) -> dict[str, str]:
    """['keypoints=PATH', ...] -> {stage: path}; a malformed or repeated stage is an error naming it."""
    return key_value_args(args, "--store", "STAGE=PATH")


def open_stores(stores: dict[str, str], manifest_sha256: str) -> dict[str, Store]:
    """Open each store, refusing one made for another image pack, given as the wrong stage, or computed from
    another store of a stage given beside it (DeSKPro's faces_restored restored from other faces than `faces`)."""
    opened: dict[str, Store] = {}
    try:
        for stage, path in stores.items():
            store = Store(path, manifest_sha256)
            opened[stage] = store
            if store.attrs["stage"] != stage:
                raise InputError(f"{path}: a {store.attrs['stage']} store given as {stage}")
        check_inputs_agree(opened, "--store")
    except InputError:
        close_stores(opened)
        raise
    return opened


def close_stores(stores: dict[str, Store]) -> None:
    for store in stores.values():
        store.close()


def found_summary(stores: dict[str, Store], pack: ImagePack, samples: list[Sample], split: str) -> list[str]:
    """One line per store: on how many of the split's images its backend found something. A method reads a
    not-found row as missing (CRE+BSGA: nothing erased, no body; DeSKPro: a zero face, or the sample dropped), so
    a weak detector shows here, in the training or evaluation log, and not only in the stage's own log."""
    rows = np.unique(pack.indices(listed_files(samples)))  # an image a split names twice counts once
    lines = []
    for stage, store in stores.items():
        found = int(np.count_nonzero(store["found"][:][rows]))
        share = f" ({100 * found / len(rows):.1f}%)" if len(rows) else ""
        lines.append(f"{stage} store ({store.attrs['backend']}): found on {found} of the {len(rows)} {split} "
                     f"images{share}")
    return lines


def store_provenance(stores: dict[str, Store]) -> dict:
    """What produced each store, for model.pt: provenance is the digest of everything it was computed from, the
    stores upstream of it included (pipeline.stages.store.provenance)."""
    return {stage: {"path": str(store.path), "provenance": store.provenance, **{k: str(store.attrs[k]) for k in
                    ("backend", "backend_version", "params", "weights_sha256", "created")}}
            for stage, store in stores.items()}


def test_store_paths(cfg: dict, stores: dict[str, str]) -> dict[str, str]:
    """The stores a method's test items read (`test.stores` in its config), from those given; one missing
    is an error naming it."""
    needed = cfg.get("test", {}).get("stores", [])
    missing = [s for s in needed if s not in stores]
    if missing:
        raise InputError(f"method {cfg['method']} reads the {', '.join(missing)} store(s) at test time (test.stores): "
                         f"give --store {missing[0]}=PATH")
    return {s: stores[s] for s in needed}


class StoreColumn:
    """One field of a stage store read row by row, in the process that reads it: the HDF5 handle opens lazily
    per process (handles do not survive a loader worker's fork) and stays open, as ImagePack's does. Rows are
    not copied into memory: a real dataset's restored faces are gigabytes."""

    def __init__(self, store: Store, field: str):
        if field not in store.file:
            raise InputError(f"{store.path}: a {store.attrs['stage']} store without the field {field!r} "
                             f"(it has {sorted(store.file)}); {store_rebuild(store.path)}")
        self.path, self.field, self.stage = str(store.path), field, str(store.attrs["stage"])
        self._column = None
        self._pid: int | None = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_column"] = None
        return state

    def __getitem__(self, row: int) -> np.ndarray:
        if self._column is None or self._pid != os.getpid():
            self._column = open_h5(self.path, "stage store", store_rebuild(self.path))[self.field]
            self._pid = os.getpid()
        return self._column[row]

    def mask(self, row: int, image: np.ndarray, name: str = "") -> np.ndarray:
        """The row's PNG label map, refused unless it has the image's height and width (a store of other images
        would otherwise be read silently). name: the image's path, for the message."""
        mask = decode_png(self[row])
        if mask.shape != image.shape[:2]:
            raise InputError(f"{self.path}: {self.field} row {row} ({name}) is {mask.shape[1]}×{mask.shape[0]}, its "
                             f"image {image.shape[1]}×{image.shape[0]}; rerun {self.stage}")
        return mask
