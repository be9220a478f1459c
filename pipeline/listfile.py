"""List files (`relative/path pid camid clothes_id` per line) and protocol.json: read and write."""
from __future__ import annotations

import json
from pathlib import Path

from .atomic import write_text
from .datasets.base import DatasetSplits, Protocol, Sample, summarise

PROTOCOL_FILE = "protocol.json"


def format_list(samples: list[Sample]) -> str:
    return "".join(f"{s.path} {s.pid} {s.camid} {s.clothes_id}\n" for s in samples)


def read_list(path: str | Path) -> list[Sample]:
    samples = []
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        # rsplit: the image path is the only field that may contain spaces
        parts = line.rsplit(maxsplit=3)
        try:
            pid, camid, clothes = (int(v) for v in parts[1:])
            if len(parts) != 4:
                raise ValueError
        except ValueError:
            raise ValueError(f"{path}:{n}: expected 'relative/path pid camid clothes_id', got {line!r}") from None
        samples.append(Sample(parts[0], pid, camid, clothes))
    return samples


def write_lists(data: DatasetSplits, out_dir: str | Path, dataset: str, root: str | Path) -> dict:
    """One <split>.txt per split plus protocol.json (written last: its presence means complete)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, samples in data.splits.items():
        write_text(out_dir / f"{name}.txt", format_list(samples))
    meta = {
        "dataset": dataset,
        "format": data.format,
        "root": str(root),
        "has_clothes": data.has_clothes,
        "splits": {name: {"file": f"{name}.txt", **summarise(s)} for name, s in data.splits.items()},
        "protocols": [p.to_json() for p in data.protocols],
        "notes": data.notes,
    }
    write_text(out_dir / PROTOCOL_FILE, json.dumps(meta, indent=2) + "\n")
    return meta


def read_protocol(lists_dir: str | Path) -> dict:
    path = Path(lists_dir) / PROTOCOL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run `python -m pipeline.lists` for this dataset first")
    meta = json.loads(path.read_text())
    meta["protocols"] = [Protocol(**{**p, "cameras": tuple(p["cameras"]) if p.get("cameras") is not None else None})
                         for p in meta["protocols"]]
    return meta


def read_split(lists_dir: str | Path, split: str) -> list[Sample]:
    return read_list(Path(lists_dir) / f"{split}.txt")
