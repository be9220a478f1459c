"""List files (`relative/path pid camid clothes_id` per line) and protocol.json: read and write.

Video datasets list one tracklet per line (its folder as the path) and, beside each <split>.txt, a
<split>.frames.txt with one `relative/frame/path tracklet_index` line per frame, in temporal order.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path, PureWindowsPath

from .atomic import write_text
from .datasets.base import NO_CLOTHES, DatasetSplits, Protocol, Sample, listed_files, summarise
from .digest import file_sha256
from .errors import InputError, MissingInputError

PROTOCOL_FILE = "protocol.json"


def format_list(samples: list[Sample]) -> str:
    return "".join(f"{s.path} {s.pid} {s.camid} {s.clothes_id}\n" for s in samples)


def format_frames(samples: list[Sample]) -> str:
    return "".join(f"{frame} {i}\n" for i, s in enumerate(samples) for frame in s.frames)


def _fields(path: Path, count: int):
    """(line number, fields) of each non-blank line; rsplit because only the path may contain spaces."""
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            yield n, line, line.rsplit(maxsplit=count - 1)


def read_frames(path: str | Path, num_tracklets: int) -> list[tuple[str, ...]]:
    path = Path(path)
    frames: list[list[str]] = [[] for _ in range(num_tracklets)]
    seen: dict[str, int] = {}
    for n, line, parts in _fields(path, 2):
        try:
            index = int(parts[1])
            if not 0 <= index < num_tracklets:
                raise ValueError
        except (ValueError, IndexError):
            raise InputError(f"{path}:{n}: expected 'relative/frame/path tracklet_index' with an index below "
                             f"{num_tracklets}, got {line!r}") from None
        rel = check_relative_path(parts[0], f"{path}:{n}")
        if rel in seen:
            raise InputError(f"{path}:{n}: frame {rel} is listed twice (first on line {seen[rel]})")
        seen[rel] = n
        frames[index].append(rel)
    empty = [i for i, f in enumerate(frames) if not f]
    if empty:
        raise InputError(f"{path}: tracklet {empty[0]} has no frames")
    return [tuple(f) for f in frames]


def check_relative_path(path: str, where: str) -> str:
    """A list path must stay inside the dataset root: relative, '/'-separated, no '..', '.' or empty parts."""
    parts = path.split("/")
    if path.startswith("/") or PureWindowsPath(path).drive or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"{where}: path {path!r} is not a plain relative path inside the dataset root "
                         f"(absolute, '..', '.' or empty parts are refused)")
    return path


def read_list(path: str | Path) -> list[Sample]:
    """The samples of one list file. Every line is checked where it is read: four fields, a path inside the
    root, pid >= 0, clothes_id >= -1 (-1: no clothes labels), each path once."""
    samples = []
    seen: dict[str, int] = {}
    for n, line, parts in _fields(Path(path), 4):
        try:
            pid, camid, clothes = (int(v) for v in parts[1:])
            if len(parts) != 4:
                raise ValueError
        except ValueError:
            raise InputError(f"{path}:{n}: expected 'relative/path pid camid clothes_id', got {line!r}") from None
        if pid < 0 or clothes < NO_CLOTHES:  # camids are only compared, any integer will do
            raise InputError(f"{path}:{n}: labels must be pid >= 0 and clothes_id >= {NO_CLOTHES}, got {line!r}")
        rel = check_relative_path(parts[0], f"{path}:{n}")
        if rel in seen:
            raise InputError(f"{path}:{n}: {rel} is listed twice (first on line {seen[rel]}); a duplicate would count "
                             f"twice in training or evaluation")
        seen[rel] = n
        samples.append(Sample(rel, pid, camid, clothes))
    return samples


def check_dense_labels(samples: list[Sample], where: str) -> None:
    """Training labels index the classifiers: pids must be exactly 0..N-1, clothes exactly 0..M-1 or all -1."""
    pids = {s.pid for s in samples}
    if pids != set(range(len(pids))):
        gaps = sorted(set(range(max(pids) + 1)) - pids)[:5]
        raise InputError(f"{where}: training pids must be 0..N-1 with none skipped (they size the classifier): "
                         f"{len(pids)} ids, largest {max(pids)}, missing e.g. {gaps}")
    clothes = {s.clothes_id for s in samples}
    if clothes == {NO_CLOTHES}:
        return
    if NO_CLOTHES in clothes:
        raise InputError(f"{where}: some training samples have clothes ids and some -1 (none); all or none must")
    if clothes != set(range(len(clothes))):
        gaps = sorted(set(range(max(clothes) + 1)) - clothes)[:5]
        raise InputError(f"{where}: training clothes ids must be 0..M-1 with none skipped: {len(clothes)} ids, "
                         f"largest {max(clothes)}, missing e.g. {gaps}")


def write_lists(data: DatasetSplits, out_dir: str | Path, dataset: str, root: str | Path) -> dict:
    """One <split>.txt per split plus protocol.json (written last: its presence means complete)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, samples in data.splits.items():
        write_text(out_dir / f"{name}.txt", format_list(samples))
        if data.video is not None:
            write_text(out_dir / f"{name}.frames.txt", format_frames(samples))
    meta = {
        "dataset": dataset,
        "format": data.format,
        "root": str(root),
        "has_clothes": data.has_clothes,
        "clothes_labels": data.clothes_labels,
        "video": data.video,
        "splits": {name: {"file": f"{name}.txt", **summarise(s)} for name, s in data.splits.items()},
        "protocols": [p.to_json() for p in data.protocols],
        "notes": data.notes,
    }
    write_text(out_dir / PROTOCOL_FILE, json.dumps(meta, indent=2) + "\n")
    return meta


def read_protocol(lists_dir: str | Path) -> dict:
    path = Path(lists_dir) / PROTOCOL_FILE
    if not path.is_file():
        raise MissingInputError(f"{path}: missing; run `python -m pipeline.lists` for this dataset first")
    meta = json.loads(path.read_text())
    meta["protocols"] = [Protocol(**{**p, "cameras": tuple(p["cameras"]) if p.get("cameras") is not None else None})
                         for p in meta["protocols"]]
    return meta


def lists_digest(lists_dir: str | Path) -> str:
    """sha256 over protocol.json and every list and frames file it names (name and content): the identity of a
    dataset's lists, recorded in the image pack packed from them and in a training run's key."""
    lists_dir = Path(lists_dir)
    meta = read_protocol(lists_dir)
    names = [PROTOCOL_FILE]
    for split in sorted(meta["splits"]):
        names.append(f"{split}.txt")
        if (lists_dir / f"{split}.frames.txt").is_file():
            names.append(f"{split}.frames.txt")
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode() + b"\0" + bytes.fromhex(file_sha256(lists_dir / name)))
    return h.hexdigest()


def read_split(lists_dir: str | Path, split: str) -> list[Sample]:
    """A split's samples, checked line by line; for a video dataset each tracklet with its frames. The train
    split's labels must also be dense (they size the classifiers)."""
    list_file = Path(lists_dir) / f"{split}.txt"
    samples = read_list(list_file)
    if split == "train" and samples:
        check_dense_labels(samples, str(list_file))
    frames_file = Path(lists_dir) / f"{split}.frames.txt"
    if not frames_file.is_file():
        return samples
    frames = read_frames(frames_file, len(samples))
    return [Sample(s.path, s.pid, s.camid, s.clothes_id, f) for s, f in zip(samples, frames, strict=True)]


def read_lists(lists_dir: str | Path) -> tuple[dict, dict[str, list[Sample]]]:
    """protocol.json and every split it names, with each image (or frame) listed once across all splits:
    an image in two splits would leak between training and test or match itself."""
    meta = read_protocol(lists_dir)
    splits = {name: read_split(lists_dir, name) for name in meta["splits"]}
    used = {s for p in meta["protocols"] for s in (p.query, p.gallery)}
    unknown = sorted(used - set(splits))
    if unknown:
        raise InputError(f"{Path(lists_dir) / PROTOCOL_FILE}: protocols use splits {unknown}, which it does not list")
    seen: dict[str, str] = {}
    for name, samples in splits.items():
        for path in listed_files(samples):
            if path in seen:
                raise InputError(f"{path}: listed in both {seen[path]}.txt and {name}.txt in {lists_dir}")
            seen[path] = name
    return meta, splits
