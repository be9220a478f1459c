"""List files (`relative/path pid camid clothes_id` per line) and protocol.json: read and write.

Video datasets list one tracklet per line (its folder as the path) and, beside each <split>.txt, a
<split>.frames.txt with one `relative/frame/path tracklet_index` line per frame, in temporal order.
"""
from __future__ import annotations

import json
from pathlib import Path

from .atomic import write_text
from .datasets.base import DatasetSplits, Protocol, Sample, summarise
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
    for n, line, parts in _fields(path, 2):
        try:
            index = int(parts[1])
            if index < 0:
                raise ValueError
            frames[index].append(parts[0])
        except (ValueError, IndexError):
            raise InputError(f"{path}:{n}: expected 'relative/frame/path tracklet_index' with an index below "
                             f"{num_tracklets}, got {line!r}") from None
    empty = [i for i, f in enumerate(frames) if not f]
    if empty:
        raise InputError(f"{path}: tracklet {empty[0]} has no frames")
    return [tuple(f) for f in frames]


def read_list(path: str | Path) -> list[Sample]:
    samples = []
    for n, line, parts in _fields(Path(path), 4):
        try:
            pid, camid, clothes = (int(v) for v in parts[1:])
            if len(parts) != 4:
                raise ValueError
        except ValueError:
            raise InputError(f"{path}:{n}: expected 'relative/path pid camid clothes_id', got {line!r}") from None
        samples.append(Sample(parts[0], pid, camid, clothes))
    return samples


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


def read_split(lists_dir: str | Path, split: str) -> list[Sample]:
    """A split's samples; for a video dataset each tracklet with its frames."""
    samples = read_list(Path(lists_dir) / f"{split}.txt")
    frames_file = Path(lists_dir) / f"{split}.frames.txt"
    if not frames_file.is_file():
        return samples
    frames = read_frames(frames_file, len(samples))
    return [Sample(s.path, s.pid, s.camid, s.clothes_id, f) for s, f in zip(samples, frames)]
