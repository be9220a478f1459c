"""What every dataset adapter returns, and the registry that maps a format name to its adapter."""
from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import InputError
from ..registry import Registry

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
log = logging.getLogger("ccreid.datasets")


class DatasetLayoutError(InputError):
    """The raw dataset is missing, incomplete or named differently from its authors' layout."""


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the dataset root, '/'-separated; a tracklet's folder for video datasets
    pid: int
    camid: int
    clothes_id: int
    frames: tuple[str, ...] = ()  # video: the tracklet's frames in temporal order, relative to the root


@dataclass(frozen=True)
class Protocol:
    """One evaluation: a query split ranked against a gallery split under an evaluation mode."""

    name: str
    query: str
    gallery: str
    mode: str = "general"  # general | CC | SC (docs/protocols.md#good-and-junk)
    cameras: tuple[int, ...] | None = None  # keep only these camids in query and gallery (VC-Clothes sc/cc)
    single_shot_trials: int = 0  # >0: that many galleries of one random image per identity, metrics averaged
    seed: int = 0  # seeds the single-shot draws

    def to_json(self) -> dict:
        out = {"name": self.name, "query": self.query, "gallery": self.gallery, "mode": self.mode}
        if self.cameras is not None:
            out["cameras"] = list(self.cameras)
        if self.single_shot_trials:
            out.update(single_shot_trials=self.single_shot_trials, seed=self.seed)
        return out


@dataclass
class DatasetSplits:
    format: str
    splits: dict[str, list[Sample]]
    protocols: list[Protocol]
    has_clothes: bool = True  # training samples carry clothes labels (what clothes-based methods need)
    notes: list[str] = field(default_factory=list)
    clothes_labels: str = "annotated"  # where clothes ids come from: said, never implied
    video: dict | None = None  # video datasets: the test clip construction (docs/protocols.md#ccvid-clips)

    @property
    def train(self) -> list[Sample]:
        return self.splits["train"]

    def pid2clothes(self) -> np.ndarray:
        """(N_pid, N_clothes) 0/1 matrix over the relabelled training labels, as CAL uses it."""
        return pid2clothes(self.train)

    def summary(self) -> dict[str, dict[str, int]]:
        return {name: summarise(samples) for name, samples in self.splits.items()}


NO_CLOTHES = -1  # clothes_id of datasets that have no clothes labels (never invented)


def pid2clothes(train: list[Sample]) -> np.ndarray:
    if any(s.clothes_id == NO_CLOTHES for s in train):
        raise InputError("this dataset has no clothes labels (clothes_id -1): clothes-based methods cannot train on it")
    num_pids = max((s.pid for s in train), default=-1) + 1
    num_clothes = max((s.clothes_id for s in train), default=-1) + 1
    matrix = np.zeros((num_pids, num_clothes), np.float32)
    for s in train:
        matrix[s.pid, s.clothes_id] = 1
    return matrix


def summarise(samples: list[Sample]) -> dict[str, int]:
    video = bool(samples and samples[0].frames)
    out = {
        "ids": len({s.pid for s in samples}),
        "images": len(listed_files(samples)),
        "clothes": len({s.clothes_id for s in samples} - {NO_CLOTHES}),
        "cameras": len({s.camid for s in samples}),
    }
    if video:
        out["tracklets"] = len(samples)
    return out


def summary_table(data: DatasetSplits) -> str:
    """The per-split summary as the CLIs print it (and the lists step saves it)."""
    video = data.video is not None
    lines = [f"{data.format}: clothes labels: {data.clothes_labels if data.has_clothes else 'none'}",
             f"{'split':<16} {'ids':>6} {'tracklets':>9} {'images':>8} {'clothes':>8} {'cameras':>8}" if video else
             f"{'split':<16} {'ids':>6} {'images':>8} {'clothes':>8} {'cameras':>8}"]
    for split, s in data.summary().items():
        tracklets = f" {s['tracklets']:>9}" if video else ""
        lines.append(f"{split:<16} {s['ids']:>6}{tracklets} {s['images']:>8} {s['clothes']:>8} {s['cameras']:>8}")
    lines += [f"protocol {p.name}: {p.query} vs {p.gallery} ({p.mode})" for p in data.protocols]
    return "\n".join(lines) + "\n"


def listed_files(samples: list[Sample]) -> list[str]:
    """The image files a split names: each image, or each tracklet's frames."""
    return [f for s in samples for f in (s.frames or (s.path,))]


def check_no_duplicates(data: DatasetSplits) -> None:
    """An image listed twice (within or across splits) would be trained on twice or leak between train
    and test; stop with both places named."""
    seen: dict[str, str] = {}
    for split, samples in data.splits.items():
        for path in listed_files(samples):
            if path in seen:
                where = f"twice in {split}" if seen[path] == split else f"in both {seen[path]} and {split}"
                raise DatasetLayoutError(f"{path}: listed {where} ({data.format})")
            seen[path] = split


def shown(path: Path) -> str:
    """A path for a message: a name that is not UTF-8 with its undecodable bytes escaped (\\xe9), since the
    surrogates Python decodes them to cannot be written to a UTF-8 log."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def check_names_encodable(data: DatasetSplits, root: Path) -> None:
    """List files are UTF-8 text, and a file name that is not UTF-8 (copied from a system with another encoding)
    cannot be written in one. Skipping it would drop an image of the published split, so stop, naming it with its
    undecodable bytes escaped."""
    for samples in data.splits.values():
        for path in (p for s in samples for p in (s.path, *s.frames)):
            try:
                path.encode()
            except UnicodeEncodeError:
                raise DatasetLayoutError(f"{shown(root / path)}: the file name is not UTF-8, which list files need; "
                                         "rename it (convmv converts a whole tree)") from None


def _readable_file(path: Path) -> bool:
    """Whether `path` is a regular file once links are followed; a dangling or looping symlink is logged and
    skipped (a dataset copied with broken links must not lose images silently)."""
    try:
        st = path.stat()
    except OSError as e:  # the file-system query only: ENOENT (dangling link), ELOOP (link cycle), EACCES
        why = {errno.ENOENT: "a dangling symbolic link", errno.ELOOP: "a symbolic link loop"}.get(e.errno, e.strerror)
        log.warning("%s: %s, skipped", shown(path), why)
        return False
    return stat.S_ISREG(st.st_mode)


def image_files(directory: Path) -> list[Path]:
    """Image files directly in `directory`, sorted by name so list files are reproducible. Stray other
    files (Thumbs.db, notes) and broken links are skipped with a logged warning naming them."""
    files = sorted(p for p in directory.iterdir() if _readable_file(p))
    for stray in (p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES):
        log.warning("%s: not an image, skipped", shown(stray))
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]


def split_images(directory: Path, suffix: str) -> list[Path]:
    """The `suffix` images of one split folder; a missing folder or an empty split is an error naming it.
    Images of another format are not part of the dataset's published split: skipped with a warning."""
    images = image_files(require_dir(directory, f"the {directory.name}/ split folder"))
    for other in (f for f in images if f.suffix != suffix):
        log.warning("%s: not a *%s image as this dataset's split folders hold, skipped", shown(other), suffix)
    files = [f for f in images if f.suffix == suffix]
    if not files:
        raise DatasetLayoutError(f"{directory}: no *{suffix} images")
    return files


def relabel(keys) -> dict:
    """Sorted keys -> 0..N-1, the relabelling every Simple-CCReID loader applies."""
    return {k: i for i, k in enumerate(sorted(set(keys)))}


def parse_names(directory: Path, suffix: str, pattern, what: str) -> list[tuple[Path, tuple[str, ...]]]:
    """The split folder's `suffix` images with `pattern` applied to each file's name (never the full
    path: Simple-CCReID's ltcc.py matches the full path; docs/datasets.md#conventions)."""
    out = []
    for f in split_images(directory, suffix):
        m = pattern.search(f.name)
        if m is None:
            raise DatasetLayoutError(f"{f}: file name does not match {what} pattern {pattern.pattern!r}")
        out.append((f, m.groups()))
    return out


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetLayoutError(f"{path}: expected {what}, but it is not a directory")
    return path


Adapter = Callable[[Path], DatasetSplits]


class DatasetFormat(NamedTuple):
    """An adapter and the folder under the root that holds the dataset itself (the workflow depends on that
    folder, so adding another dataset beside it reruns nothing)."""

    adapter: Adapter
    layout: str


FORMATS: Registry[DatasetFormat] = Registry("dataset format", DatasetLayoutError)


def register(name: str, layout: str) -> Callable[[Adapter], Adapter]:
    def wrap(fn: Adapter) -> Adapter:
        FORMATS.add(name, DatasetFormat(fn, layout))
        return fn

    return wrap


def layout_dir(fmt: str) -> str:
    return FORMATS.get(fmt).layout


def load(fmt: str, root: str | Path) -> DatasetSplits:
    adapter = FORMATS.get(fmt).adapter
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: dataset root does not exist (format {fmt!r})")
    data = adapter(root)
    check_no_duplicates(data)
    check_names_encodable(data, root)
    return data
