"""images.h5: the manifest every derived store is aligned to (index <-> image).

Storage, chosen by measurement (benchmarks/bench_imagepack.py, figures in docs/measurements.md): each image's
original encoded file bytes as a variable-length uint8 row. Nothing is re-encoded, so the pack is
bit-exact to data/raw, ~10x smaller than raw pixels, and decodes at thousands of images/s — far
above what training consumes. Images keep their own sizes; resizing belongs to the consumer.

Datasets: path (str, relative to the dataset root), encoded (vlen uint8), crc32 (uint32 of each image's
bytes, checked on every read: HDF5 keeps no checksum of variable-length data, so a flipped byte would
otherwise decode into a silently different picture), height, width (int32).
Attributes: manifest_sha256 (over paths and file digests), dataset, lists_sha256 (pipeline.listfile.lists_digest of
the lists it was packed from: training and evaluation refuse other lists beside it), root, format_version.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from pathlib import Path

import cv2
import h5py
import numpy as np

from .errors import InputError, MissingInputError
from .h5 import new_h5, open_h5
from .listfile import lists_digest, read_protocol
from .progress import progress as show_progress

FORMAT_VERSION = 3  # 2: per-image crc32; 3: lists_sha256
REBUILD = "rebuild it (snakemake --forcerun pack <target>, or python -m pipeline.pack)"


def decode(encoded: np.ndarray, where: str = "image") -> np.ndarray:
    """Encoded bytes -> H×W×3 uint8 RGB."""
    bgr = cv2.imdecode(np.asarray(encoded, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"{where}: not a decodable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_pack(paths: list[str], root: str | Path, out: str | Path, dataset: str, progress: bool | None = None,
               lists_sha256: str = "") -> str:
    """Pack the images at root/path for each path (in this order) into `out`; returns the manifest hash.
    lists_sha256: the digest of the lists the paths come from ("": packed from no lists, which training and
    evaluation refuse)."""
    root = Path(root)
    if len(set(paths)) != len(paths):
        dup = next(p for p in paths if paths.count(p) > 1)
        raise InputError(f"duplicate image path in the lists: {dup}")
    manifest = hashlib.sha256()
    with new_h5(out) as (f, check):
        n = len(paths)
        f.create_dataset("path", data=paths, dtype=h5py.string_dtype())
        enc = f.create_dataset("encoded", (n,), dtype=h5py.vlen_dtype(np.uint8))
        hw = np.zeros((n, 2), np.int32)
        crc = np.zeros(n, np.uint32)
        for i, rel in enumerate(show_progress(paths, f"pack {dataset}", enabled=progress, unit="images")):
            file = root / rel
            try:
                data = file.read_bytes()
            except OSError as e:
                raise MissingInputError(f"{file}: listed image cannot be read ({e.strerror})") from None
            if not data:
                raise InputError(f"{file}: listed image is an empty file (0 bytes)")
            full = decode(np.frombuffer(data, np.uint8), str(file))
            hw[i] = full.shape[:2]
            enc[i] = np.frombuffer(data, np.uint8)
            crc[i] = zlib.crc32(data)
            check()  # stop at once when the disk is full
            manifest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        f.create_dataset("crc32", data=crc)
        f.create_dataset("height", data=hw[:, 0])
        f.create_dataset("width", data=hw[:, 1])
        digest = manifest.hexdigest()
        f.attrs.update(manifest_sha256=digest, dataset=dataset, lists_sha256=lists_sha256, root=str(root),
                       format_version=FORMAT_VERSION,
                       created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       storage=json.dumps({"encoded": "original file bytes"}))
    return digest


class ImagePack:
    """Random access to images.h5. The HDF5 handle opens lazily per process (handles do not survive fork)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        with self._open() as f:
            if f.attrs.get("format_version") != FORMAT_VERSION:
                raise InputError(f"{self.path}: not an image pack of format version {FORMAT_VERSION} "
                                 f"(found {f.attrs.get('format_version')}); {REBUILD}")
            missing = [k for k in ("path", "encoded", "crc32", "height", "width") if k not in f]
            if missing:
                raise InputError(f"{self.path}: image pack without {missing}; {REBUILD}")
            self.paths = [p.decode() if isinstance(p, bytes) else p for p in f["path"][:]]
            self.crc32 = f["crc32"][:]
            self.manifest_sha256 = str(f.attrs["manifest_sha256"])
            self.dataset = str(f.attrs.get("dataset", ""))
            self.lists_sha256 = str(f.attrs.get("lists_sha256", ""))
        self.index = {p: i for i, p in enumerate(self.paths)}
        self._encoded: h5py.Dataset | None = None
        self._pid: int | None = None

    def check_lists(self, lists_dir: str | Path) -> None:
        """Refuse lists that are not the ones this pack was packed from: another dataset's lists over the same
        paths (a clothes-free twin) would otherwise be read against these images without a word."""
        if not self.lists_sha256:
            raise InputError(f"{self.path}: packed without recording its lists, so it cannot be checked against "
                             f"{lists_dir}; {REBUILD}")
        theirs = lists_digest(lists_dir)
        if theirs != self.lists_sha256:
            raise InputError(f"{lists_dir}: not the lists {self.path} was packed from (the pack: dataset "
                             f"{self.dataset!r}, lists {self.lists_sha256[:12]}…; these: dataset "
                             f"{read_protocol(lists_dir).get('dataset')!r}, lists {theirs[:12]}…); give the lists "
                             f"beside the pack, or pack these lists")

    def _open(self) -> h5py.File:
        return open_h5(self.path, "image pack", REBUILD)

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_encoded"] = None
        return state

    def _dataset(self) -> h5py.Dataset:
        # one handle per process, kept open: reopening costs ~10x per read (docs/environment.md#h5py)
        if self._encoded is None or self._pid != os.getpid():
            self._encoded = self._open()["encoded"]
            self._pid = os.getpid()
        return self._encoded

    def indices(self, paths: list[str]) -> np.ndarray:
        missing = [p for p in paths if p not in self.index]
        if missing:
            raise InputError(f"{self.path}: {len(missing)} listed images are not in the pack, e.g. {missing[0]}; "
                             "rebuild it")
        return np.array([self.index[p] for p in paths], np.int64)

    def sizes(self) -> tuple[np.ndarray, np.ndarray]:
        """(height, width) of every image, in manifest order."""
        with self._open() as f:
            return f["height"][:], f["width"][:]

    def encoded(self, i: int) -> np.ndarray:
        """Image i's file bytes, checked against their CRC-32 (a corrupt pack is an error naming the image)."""
        data = self._dataset()[i]
        if zlib.crc32(data) != int(self.crc32[i]):
            raise InputError(f"{self.path}: image {i} ({self.paths[i]}) does not match its CRC-32: the pack is "
                             f"corrupt; {REBUILD}")
        return data

    def verify(self, progress: bool | None = None) -> None:
        """Check every image's bytes; raises at the first corrupt one."""
        for i in show_progress(range(len(self)), f"verify {self.path}", enabled=progress, unit="images"):
            self.encoded(i)

    def image(self, i: int) -> np.ndarray:
        return decode(self.encoded(i), f"{self.path}[{i}] {self.paths[i]}")
