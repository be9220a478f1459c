"""Derived stores: one HDF5 file per stage and backend, aligned to images.h5's index.

A stage runs as N shards; shard k of N handles a contiguous block of the manifest (np.array_split), and
writes its own file (no two jobs ever write one HDF5 file). `merge` checks that the shards cover every
image exactly once and writes the store, whose row i belongs to images.h5 row i.

Each record field is either a fixed-shape array per image (keypoints: 17×3 float32) or a variable-length
byte string (`*_png`: a PNG-encoded map, since images keep their own sizes).

Attributes: stage, backend, backend_version, params (JSON), weights_sha256, manifest_sha256, created,
num_images, found_rate. A store whose manifest_sha256 differs from the image pack's is refused.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import h5py
import numpy as np

from ..atomic import atomic_path
from ..errors import InputError, MissingInputError

VLEN_SUFFIX = "_png"


def shard_indices(num_images: int, shard: int, num_shards: int) -> np.ndarray:
    if not 0 <= shard < num_shards:
        raise InputError(f"shard {shard} is not in 0..{num_shards - 1}")
    return np.array_split(np.arange(num_images), num_shards)[shard]


def encode_png(label_map: np.ndarray) -> np.ndarray:
    ok, png = cv2.imencode(".png", np.ascontiguousarray(label_map, np.uint8))
    if not ok:
        raise ValueError("could not PNG-encode a label map")
    return png.ravel()


def decode_png(data: np.ndarray) -> np.ndarray:
    return cv2.imdecode(np.asarray(data, np.uint8), cv2.IMREAD_UNCHANGED)


def encode_rgb(image: np.ndarray) -> np.ndarray:
    """An RGB image as PNG bytes (lossless; OpenCV writes BGR, hence the flip)."""
    return encode_png(np.ascontiguousarray(image[..., ::-1]))


def decode_rgb(data: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(decode_png(data)[..., ::-1])


def _create(f: h5py.File, name: str, values: list) -> None:
    if name.endswith(VLEN_SUFFIX):
        ds = f.create_dataset(name, (len(values),), dtype=h5py.vlen_dtype(np.uint8))
        for i, v in enumerate(values):
            ds[i] = v
    else:
        f.create_dataset(name, data=np.stack(values) if values else np.zeros((0,)))


def write_shard(path: str | Path, indices: np.ndarray, records: list[dict], attrs: dict) -> None:
    """records[j] holds every field for image indices[j]; `found` (bool) is required."""
    if len(records) != len(indices):
        raise ValueError(f"{len(records)} records for {len(indices)} images")
    fields = sorted(records[0]) if records else []
    if records and "found" not in fields:
        raise ValueError("a stage record must say whether the image was found (field 'found')")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("index", data=np.asarray(indices, np.int64))
        for name in fields:
            _create(f, name, [r[name] for r in records])
        f.attrs.update({k: v for k, v in attrs.items()})
        f.attrs["fields"] = json.dumps(fields)


def merge(shards: list[str | Path], out: str | Path, num_images: int, manifest_sha256: str) -> dict:
    """Join shard files into one store aligned to the manifest; returns its summary."""
    opened = [h5py.File(s, "r") for s in shards]
    try:
        seen = np.zeros(num_images, np.int64)
        for f, s in zip(opened, shards):
            if f.attrs.get("manifest_sha256") != manifest_sha256:
                raise InputError(f"{s}: shard of another image pack (manifest {f.attrs.get('manifest_sha256')}); rerun it")
            np.add.at(seen, f["index"][:], 1)
        if (seen != 1).any():
            bad = int(np.flatnonzero(seen != 1)[0])
            raise InputError(f"shards {[str(s) for s in shards]} cover image {bad} {seen[bad]} times, not once")
        first = opened[0]
        fields = json.loads(first.attrs["fields"])
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as g:
            for name in fields:
                src = first[name]
                if name.endswith(VLEN_SUFFIX):
                    dst = g.create_dataset(name, (num_images,), dtype=h5py.vlen_dtype(np.uint8))
                else:
                    dst = g.create_dataset(name, (num_images, *src.shape[1:]), dtype=src.dtype)
                for f in opened:
                    index = f["index"][:]
                    if name.endswith(VLEN_SUFFIX):
                        for j, i in enumerate(index):  # h5py cannot scatter vlen rows in one call
                            dst[i] = f[name][j]
                    elif len(index):
                        dst[index.min(): index.max() + 1] = f[name][:]  # shards are contiguous blocks
            found = g["found"][:]
            attrs = {k: v for k, v in first.attrs.items() if k not in ("fields",)}
            attrs.update(fields=json.dumps(fields), num_images=num_images, found_rate=float(found.mean()) if num_images else 0.0,
                         created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            g.attrs.update(attrs)
        return {"stage": attrs["stage"], "backend": attrs["backend"], "images": num_images,
                "found": int(found.sum()), "found_rate": attrs["found_rate"]}
    finally:
        for f in opened:
            f.close()


class Store:
    """Read access to a merged store, refused when it does not belong to the given image pack."""

    def __init__(self, path: str | Path, manifest_sha256: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingInputError(f"{self.path}: store missing; build it with the workflow's stage rule")
        self.file = h5py.File(self.path, "r")
        self.attrs = dict(self.file.attrs)
        if manifest_sha256 is not None and self.attrs.get("manifest_sha256") != manifest_sha256:
            raise InputError(f"{self.path}: computed for image pack {str(self.attrs.get('manifest_sha256'))[:16]}…, "
                             f"but images.h5 is now {manifest_sha256[:16]}…; rerun the {self.attrs.get('stage')} stage")
        self.params = json.loads(self.attrs.get("params", "{}"))

    def __len__(self) -> int:
        return int(self.attrs["num_images"])

    def __getitem__(self, name: str) -> h5py.Dataset:
        return self.file[name]

    def png(self, name: str, index: int) -> np.ndarray:
        return decode_png(self.file[name][index])

    def close(self) -> None:
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
