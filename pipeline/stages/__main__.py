"""python -m pipeline.stages run --stage S --backend B --images images.h5 --shard K --num-shards N --out shard.h5
                          [--params JSON] [--model-file F] [--input-store STORE ...] [--allow-none-found]
python -m pipeline.stages merge --images images.h5 --out store.h5 --summary summary.json SHARD ...
python -m pipeline.stages export-alphapose --store keypoints.h5 --images images.h5 --out alphapose-results.json
python -m pipeline.stages quality --store STORE --images images.h5 --groundtruth groundtruth.h5
python -m pipeline.stages contact-sheet --images images.h5 --out sheet.png [--count 8] STORE ...
python -m pipeline.stages backends

`run` computes one shard of a stage; `merge` joins the shards into the store aligned to images.h5 and
writes the summary (found rate, and what the found outputs look like: pipeline/stages/quality.py);
`export-alphapose` writes AlphaPose's own results format (MVIG-SJTU/AlphaPose docs/output.md;
docs/preprocessing.md#alphapose-results).
A shard in which the backend finds nothing at all is an error (wrong parameters, weights or inputs look
exactly like that) unless --allow-none-found says that is expected.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..cli import reports_user_errors
from ..digest import file_sha256
from ..errors import InputError, MissingInputError
from ..imagepack import ImagePack
from ..progress import progress as show_progress
from .backends import Item, build, check_params, registered
from .store import (
    PART_ROWS,
    ShardParts,
    Store,
    check_inputs_agree,
    merge,
    parts_dir,
    shard_attrs,
    shard_indices,
    write_shard,
)


def check_model_file(path: str, expected_sha256: str | None) -> str:
    """The file's sha256, after checking that it exists and, when a checksum is configured, matches it."""
    if not Path(path).is_file():
        raise MissingInputError(f"{path}: model file missing (where to get it: `ccreid-weights list`, "
                                "docs/preprocessing.md#getting-the-weights)")
    actual = file_sha256(path)
    if expected_sha256 and actual != expected_sha256:
        raise InputError(f"{path}: sha256 {actual}, expected {expected_sha256}; the file is corrupt or another "
                         f"release (docs/preprocessing.md#getting-the-weights)")
    return actual


def _as_is(sample):
    return sample


class _PackRows:
    """Images of some rows of a pack, for a DataLoader (a map-style dataset needs only these two methods)."""

    def __init__(self, pack: ImagePack, rows: np.ndarray):
        self.pack, self.rows = pack, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, j: int) -> np.ndarray:
        return self.pack.image(int(self.rows[j]))


def decoded_images(pack: ImagePack, rows: np.ndarray, workers: int = 0) -> Iterator[np.ndarray]:
    """The images of `rows` of the pack, in order; decoded by `workers` DataLoader processes ahead of the backend
    (0: here, one at a time). Each worker opens the pack itself (ImagePack pickles without its file handle)."""
    if workers < 0:
        raise InputError(f"workers must be 0 or more, got {workers}")
    if workers == 0:
        return (pack.image(int(r)) for r in rows)
    from torch.utils.data import DataLoader

    # batch_size None: one image per item, kept as the uint8 array (no tensor conversion)
    return iter(DataLoader(_PackRows(pack, rows), batch_size=None, num_workers=workers, collate_fn=_as_is,
                           prefetch_factor=4))


def run(stage: str, backend_name: str, images: str, shard: int, num_shards: int, out: str, params: dict,
        model_file: str | None = None, input_stores: tuple[str, ...] = (), progress: bool | None = None,
        expected_sha256: str | None = None, allow_none_found: bool = False, part_rows: int = PART_ROWS,
        batch_size: int = 1, workers: int = 0) -> int:
    """Compute one shard; returns how many of its images were found. A non-empty shard with nothing
    found is an error unless allow_none_found. Written in parts of `part_rows` images (store.ShardParts):
    memory bounded by one part, and a rerun after a crash resumes after the last complete part. Images go to the
    backend `batch_size` at a time (Backend.batch: one forward pass for a learned backend that batches), decoded
    by `workers` processes ahead of it."""
    check_params(stage, backend_name, params)  # before any file is read or model loaded
    parts_dir(out)  # a file or symlink in the way of the parts is an error now, not after the work
    weights_sha256 = check_model_file(model_file, expected_sha256) if model_file else ""
    pack = ImagePack(images)
    with contextlib.ExitStack() as stack:
        backend = build(stage, backend_name, params, model_file)
        stack.callback(backend.close)
        stores = [stack.enter_context(Store(p, pack.manifest_sha256)) for p in input_stores]
        inputs: dict[str, Store] = {}
        for s in stores:
            name = s.attrs["stage"]
            if name in inputs:
                raise InputError(f"two {name} stores given (--input-store): {inputs[name].path} and {s.path}; give one")
            inputs[name] = s
        check_inputs_agree(inputs, "--input-store")
        missing = [s for s in backend.input_stages if s not in inputs and s not in backend.optional_inputs]
        if missing:
            raise InputError(f"{stage} backend {backend_name!r} needs a {missing[0]} store (--input-store)")
        fields = {name: s.fields for name, s in inputs.items()}
        backend.bind({name: s.attrs for name, s in inputs.items()})
        indices = shard_indices(len(pack), shard, num_shards)
        # a part, and the shard at merge, are keyed on the provenance of every input store (shard_attrs)
        attrs = shard_attrs(stage, backend_name, pack.manifest_sha256, backend_version=backend.version,
                            params=backend.params, weights_sha256=weights_sha256, inputs=inputs)
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1 image, got {batch_size}")
        # the batch size is part of what a part was computed from: batched passes differ in the last float bits
        parts = ShardParts(out, indices, {**attrs, "shard": f"{shard}/{num_shards}", "batch_size": batch_size},
                           part_rows)
        done = parts.completed()
        if parts.restarted:
            print(f"{out}: starting the shard over: {parts.restarted}", flush=True)
        elif done or parts.recomputed:
            again = f"; computing again {', '.join(parts.recomputed)}" if parts.recomputed else ""
            print(f"{out}: resuming: {len(done)} of {len(parts.blocks)} parts already computed{again}", flush=True)
        found, records, pending, t0 = sum(done.values()), [], [], time.time()
        todo = np.array([pos for pos in range(len(indices)) if pos // part_rows not in done], np.int64)
        images_todo = decoded_images(pack, indices[todo], workers)
        for pos, i in enumerate(show_progress(indices, f"{stage}/{backend_name} shard {shard + 1}/{num_shards}",
                                              enabled=progress, unit="images")):
            k = pos // part_rows
            if k in done:
                continue
            item = Item(int(i), pack.paths[i], {name: {f: s[f][i] for f in fields[name]} for name, s in inputs.items()})
            pending.append((next(images_todo), item))
            end_of_part = (pos + 1) % part_rows == 0 or pos + 1 == len(indices)
            if len(pending) == batch_size or end_of_part:  # a part never waits for the next one's images
                records += backend.batch([image for image, _ in pending], [it for _, it in pending])
                pending = []
            if end_of_part:
                found += sum(bool(r["found"]) for r in records)
                parts.write(k, records)
                records = []
    if len(indices) and not found and not allow_none_found:
        raise InputError(f"{stage} backend {backend_name!r}, shard {shard + 1} of {num_shards}: found 0 of "
                         f"{len(indices)} images ({images}), so {out} was not written. Its parameters, weights or "
                         f"input stores are probably wrong for these images; if finding nothing is expected, pass "
                         f"--allow-none-found")
    if not len(indices):
        write_shard(out, indices, [], attrs)
    else:
        parts.join({**attrs, "seconds": time.time() - t0, **backend.store_attrs()})
    return found


def alphapose_results(store: Store, pack: ImagePack) -> list[dict]:
    """AlphaPose's alphapose-results.json entries for every found image. The whole crop is the person
    box (box score 1), so score = mean(joint scores) + 1 + 1.25·max(joint scores), AlphaPose's formula.
    image_id is the path relative to the dataset root (AlphaPose writes the basename, which repeats
    across identity folders in ReID datasets)."""
    keypoints, found = store["keypoints"][:], store["found"][:]
    height, width = pack.sizes()
    out = []
    for i in np.flatnonzero(found):
        kp = keypoints[i]
        out.append({"image_id": pack.paths[i], "category_id": 1,
                    "keypoints": [round(float(v), 3) for v in kp.ravel()],
                    "score": round(float(kp[:, 2].mean() + 1.0 + 1.25 * kp[:, 2].max()), 4),
                    "box": [0.0, 0.0, float(width[i]), float(height[i])]})
    return out


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.stages", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="compute one shard of a stage")
    r.add_argument("--stage", required=True)
    r.add_argument("--backend", required=True)
    r.add_argument("--images", required=True)
    r.add_argument("--shard", type=int, default=0)
    r.add_argument("--num-shards", type=int, default=1)
    r.add_argument("--out", required=True)
    r.add_argument("--params", default="{}", help="backend parameters as JSON")
    r.add_argument("--model-file", default=None, help="weights (or the synthetic ground truth) the backend loads")
    r.add_argument("--sha256", default=None, help="the model file's expected sha256: checked before any work")
    r.add_argument("--input-store", action="append", default=[], help="a store the backend reads")
    r.add_argument("--allow-none-found", action="store_true",
                   help="write the shard even if the backend found nothing in any of its images")
    r.add_argument("--part-rows", type=int, default=PART_ROWS,
                   help="images per part file: the memory a shard holds, and what a crash can lose (a rerun resumes "
                        "after the last complete part)")
    r.add_argument("--workers", type=int, default=0, help="processes decoding images ahead of the backend")
    r.add_argument("--batch-size", type=int, default=1,
                   help="images per backend call (one forward pass where the backend batches: GPEN)")
    m = sub.add_parser("merge", help="join shards into the store")
    m.add_argument("--images", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--summary", required=True)
    m.add_argument("shards", nargs="+")
    e = sub.add_parser("export-alphapose", help="write alphapose-results.json from a keypoints store")
    e.add_argument("--store", required=True)
    e.add_argument("--images", required=True)
    e.add_argument("--out", required=True)
    q = sub.add_parser("quality", help="compare a store with the synthetic ground truth")
    q.add_argument("--store", required=True)
    q.add_argument("--images", required=True)
    q.add_argument("--groundtruth", required=True)
    c = sub.add_parser("contact-sheet", help="a PNG of a few images beside every given store's result")
    c.add_argument("--images", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--count", type=int, default=8)
    c.add_argument("stores", nargs="+")
    sub.add_parser("backends", help="list stages and backends")
    a = ap.parse_args(argv)
    if a.command == "backends":
        for (stage, name), cls in sorted(registered().items()):
            print(f"{stage:<12} {name:<12} params {json.dumps(cls.defaults)}")
        return 0
    if a.command == "run":
        try:
            params = json.loads(a.params)
        except json.JSONDecodeError as e:
            raise InputError(f"--params {a.params!r}: not JSON ({e})") from None
        found = run(a.stage, a.backend, a.images, a.shard, a.num_shards, a.out, params, a.model_file,
                    tuple(a.input_store), expected_sha256=a.sha256, allow_none_found=a.allow_none_found,
                    part_rows=a.part_rows, batch_size=a.batch_size, workers=a.workers)
        print(f"{a.stage}/{a.backend} shard {a.shard + 1}/{a.num_shards}: found {found}")
        return 0
    if a.command == "contact-sheet":
        from .sheet import contact_sheet

        contact_sheet(a.images, a.stores, a.out, a.count)
        return 0
    if a.command == "quality":
        from .quality import quality

        print(json.dumps(quality(a.store, a.images, a.groundtruth), indent=2))
        return 0
    pack = ImagePack(a.images)
    if a.command == "merge":
        from .quality import cue_quality, describe

        summary = merge(a.shards, a.out, len(pack), pack.manifest_sha256)
        # a found rate counts degenerate outputs as found: what they look like goes beside it
        with Store(a.out, pack.manifest_sha256) as store:
            summary["quality"] = cue_quality(store)
        write_text(a.summary, json.dumps(summary, indent=2) + "\n")
        print(f"{summary['stage']}/{summary['backend']}: found {summary['found']} of {summary['images']} images "
              f"({100 * summary['found_rate']:.1f}%) -> {a.out}")
        for measure in summary["quality"].values():
            print(f"  {describe(measure)}")
        return 0
    with Store(a.store, pack.manifest_sha256) as store:
        if store.attrs["stage"] != "keypoints":
            raise InputError(f"{a.store}: a {store.attrs['stage']} store, not keypoints")
        write_text(a.out, json.dumps(alphapose_results(store, pack)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
