"""Derived stores: one HDF5 file per stage and backend, aligned to images.h5's index.

A stage runs as N shards; shard k of N handles a contiguous block of the manifest (np.array_split), and
writes its own file (no two jobs ever write one HDF5 file). `merge` checks that the shards cover every
image exactly once and writes the store, whose row i belongs to images.h5 row i.

Each record field is either a fixed-shape array per image (keypoints: 17×3 float32) or a variable-length
byte string (`*_png`: a PNG-encoded map, since images keep their own sizes).

Attributes: stage, backend, backend_version, params (JSON), weights_sha256, manifest_sha256, inputs (JSON: per
input stage, the backend, version, params, weights and provenance of the store it was computed from), provenance,
created, num_images, found_rate. `provenance` is a digest of everything the store was computed from, its input
stores' provenance included, so it covers the whole chain of stores upstream (see `provenance`). A store whose
manifest_sha256 differs from the image pack's is refused, and so is a file that is not a merged store (an unmerged
shard, an image pack), cannot be opened (truncated), or whose attributes cannot be read or do not match its
provenance (written by another version of the pipeline, or edited).

Shards and stores are written through `new_h5`: under a temporary name until complete, and a full disk is
an OSError naming the output (the CLI's one-line error), never a crash or a half-written file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import cv2
import h5py
import numpy as np

from ..errors import InputError
from ..h5 import new_h5, open_h5

VLEN_SUFFIX = "_png"
# What a store's attributes mean. Part of every provenance digest, so a store written under another version is
# refused (rebuild it); the workflow's stage rules pass it as a param, so that Snakemake reruns such stores.
# 2: stores record `provenance` and declare their input stores' provenance in `inputs`.
STORE_FORMAT_VERSION = 2
# what a store is computed from besides its input stores
PROVENANCE_KEYS = ("stage", "backend", "backend_version", "params", "weights_sha256", "manifest_sha256")
# what a store declares about each input store (`inputs`): enough to say what differs when one does not match
DECLARED_KEYS = ("backend", "backend_version", "params", "weights_sha256")


def provenance(attrs: Mapping, inputs: Mapping[str, Mapping]) -> str:
    """sha256 over a canonical JSON of everything a store is computed from: its PROVENANCE_KEYS attributes, the
    format version and each input store's provenance (inputs: stage -> what the store declares of it). Nothing
    of when or where it ran enters it, so a store recomputed from the same things keeps its digest and what was
    computed from it stays valid."""
    described = {k: str(attrs[k]) for k in PROVENANCE_KEYS}
    described["format_version"] = STORE_FORMAT_VERSION
    described["inputs"] = {stage: str(inputs[stage]["provenance"]) for stage in sorted(inputs)}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def shard_attrs(stage: str, backend: str, manifest_sha256: str, *, backend_version: str = "",
                params: dict | None = None, weights_sha256: str = "",
                inputs: Mapping[str, Store] | None = None) -> dict:
    """The attributes of a shard (and so of the store merged from it): what it is computed from, the input stores
    it read (stage -> opened Store) declared with their provenance, and its own provenance."""
    declared = {stage: {**{k: str(store.attrs[k]) for k in DECLARED_KEYS}, "provenance": store.provenance}
                for stage, store in (inputs or {}).items()}
    attrs = {"stage": stage, "backend": backend, "backend_version": backend_version,
             "params": json.dumps(params or {}, sort_keys=True), "weights_sha256": weights_sha256,
             "manifest_sha256": manifest_sha256, "inputs": json.dumps(declared, sort_keys=True)}
    attrs["provenance"] = provenance(attrs, declared)
    return attrs


def _type_name(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true/false"
    if isinstance(value, (int, np.integer)):
        return "an integer"
    if isinstance(value, (float, np.floating)):
        return "a number"
    return {str: "a string", list: "a list", dict: "a mapping", type(None): "null"}.get(
        type(value), f"a {type(value).__name__}")


def _json_attr(path, attrs: Mapping, name: str, kind: type, fix: str):
    """A JSON attribute parsed and of the expected kind (dict or list), or an error naming the file."""
    value = attrs.get(name)
    if value is None:
        raise InputError(f"{path}: no {name!r} attribute; {fix}")
    if not isinstance(value, str):
        raise InputError(f"{path}: its {name!r} attribute is {_type_name(value)}, not JSON text; {fix}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: its {name!r} attribute is not JSON ({e}); {fix}") from None
    if not isinstance(parsed, kind):
        what = "a JSON mapping" if kind is dict else "a JSON list"
        raise InputError(f"{path}: its {name!r} attribute is {_type_name(parsed)}, not {what}; {fix}")
    return parsed


def read_attrs(path, attrs: Mapping, fix: str) -> tuple[dict, list[str], dict[str, dict], str]:
    """A shard's or store's params, fields, declared inputs and provenance, each checked: an attribute that
    cannot be read, or a provenance that does not match the attributes it was computed over (another version of
    the pipeline, or an edit), is an error naming the file. fix: what to do about it."""
    params = _json_attr(path, attrs, "params", dict, fix)
    fields = _json_attr(path, attrs, "fields", list, fix)
    if not all(isinstance(f, str) for f in fields):
        raise InputError(f"{path}: its 'fields' attribute {fields!r} is not a list of names; {fix}")
    inputs = _json_attr(path, attrs, "inputs", dict, fix)
    for stage, declared in inputs.items():
        if not isinstance(declared, dict) or not isinstance(declared.get("provenance"), str):
            raise InputError(f"{path}: its 'inputs' attribute declares {stage} as {declared!r}, not a mapping with "
                             f"that store's provenance; {fix}")
    if "provenance" not in attrs:
        raise InputError(f"{path}: no 'provenance' attribute (written before stores recorded what they were computed "
                         f"from, so the stores it was computed from cannot be checked); {fix}")
    missing = [k for k in PROVENANCE_KEYS if k not in attrs]
    if missing:
        raise InputError(f"{path}: no {', '.join(map(repr, missing))} attribute(s); {fix}")
    if str(attrs["provenance"]) != provenance(attrs, inputs):
        raise InputError(f"{path}: its provenance attribute does not match its other attributes (written by another "
                         f"version of the pipeline, or edited); {fix}")
    return params, fields, inputs, str(attrs["provenance"])


def content_sha256(f: h5py.File) -> str:
    """sha256 over a shard or part file's rows: every dataset (the index and each field) by name, dtype, shape
    and values, a PNG field row by row. Attributes are not covered (the identity and provenance check them)."""
    h = hashlib.sha256()
    for name in sorted(f):
        ds = f[name]
        vlen = h5py.check_vlen_dtype(ds.dtype) is not None
        h.update(json.dumps([name, "vlen" if vlen else ds.dtype.str, list(ds.shape)]).encode() + b"\0")
        values = ds[()]
        if vlen:
            for row in values:
                row = np.ascontiguousarray(row, np.uint8)
                h.update(len(row).to_bytes(8, "little") + row.tobytes())
        else:
            h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()


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


def _create(f: h5py.File, name: str, values: list, check: Callable[[], None]) -> None:
    if name.endswith(VLEN_SUFFIX):
        ds = f.create_dataset(name, (len(values),), dtype=h5py.vlen_dtype(np.uint8))
        for i, v in enumerate(values):
            ds[i] = v
            check()
    else:
        f.create_dataset(name, data=np.stack(values) if values else np.zeros((0,)))


def write_shard(path: str | Path, indices: np.ndarray, records: list[dict], attrs: dict,
                checksum: bool = False) -> None:
    """records[j] holds every field for image indices[j]; `found` (bool) is required. checksum: record
    content_sha256 of what was written (as read back), for a part to be verified before it is reused."""
    if len(records) != len(indices):
        raise ValueError(f"{len(records)} records for {len(indices)} images")
    fields = sorted(records[0]) if records else []
    if records and "found" not in fields:
        raise ValueError("a stage record must say whether the image was found (field 'found')")
    with new_h5(path) as (f, check):
        f.create_dataset("index", data=np.asarray(indices, np.int64))
        for name in fields:
            _create(f, name, [r[name] for r in records], check)
        f.attrs.update({k: v for k, v in attrs.items()})
        f.attrs["fields"] = json.dumps(fields)
        if checksum:
            f.attrs["content_sha256"] = content_sha256(f)


PART_ROWS = 256  # images per part file of a shard: what a shard holds in memory, and what a crash can lose


def parts_dir(out: str | Path) -> Path:
    """`<out>.parts`, the folder of a shard's parts, refused when something else is in its place: a file, or a
    symlink (parts written through it would land elsewhere, and the folder is removed once the shard is joined)."""
    path = Path(f"{out}.parts")
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        kind = f"a symlink (to {path.readlink()})" if path.is_symlink() else "a file"
        raise InputError(f"{path}: {kind}, where the shard's parts folder goes (`run` writes the parts of {out} "
                         f"there and removes it when the shard is complete); remove it or move it away and rerun")
    return path


class ShardParts:
    """A shard computed in parts: every `rows` images are written, complete, to `<out>.parts/<k>.h5` (through
    write_shard: a temporary name until complete), so memory stays bounded by one part whatever the shard's size,
    and a rerun after a crash keeps the parts already written — those whose identity (everything the shard is
    computed from: stage, backend and its version, params, the provenance of every input store, weights, images,
    shard, part and batch size) equals this run's — and computes only the rest. A part of another identity restarts
    the shard: its parts are deleted, never mixed in. A part whose content no longer matches the checksum written
    with it (a bad disk, a stray write) is computed again, never reused. `join` writes the shard file from the
    parts, part by part, then removes them.
    """

    def __init__(self, out: str | Path, indices: np.ndarray, identity: dict, rows: int = PART_ROWS):
        if rows < 1:
            raise InputError(f"part size must be at least 1 image, got {rows}")
        self.out, self.dir = Path(out), parts_dir(out)
        self.indices = np.asarray(indices, np.int64)
        self.identity = {**{k: str(v) for k, v in identity.items()}, "part_rows": str(rows)}
        self.blocks = [self.indices[i : i + rows] for i in range(0, len(self.indices), rows)]
        self.restarted = ""  # why parts of an earlier run were discarded, if they were
        self.recomputed: list[str] = []  # parts of this very shard computed again, and why

    def path(self, k: int) -> Path:
        return self.dir / f"{k:06d}-of-{len(self.blocks):06d}.h5"

    def completed(self) -> dict[int, int]:
        """Part -> images found in it, for the parts an earlier run of this very shard completed."""
        if not self.dir.is_dir():
            return {}
        done, stale = {}, ""
        expected = {self.path(k).name: k for k in range(len(self.blocks))}
        for path in sorted(self.dir.iterdir()):
            if path.name not in expected:  # a temporary of an interrupted write, or a part of another split
                if path.suffix == ".h5" and not path.name.startswith("."):
                    stale = f"{path.name} belongs to another split of the shard"
                continue
            k = expected[path.name]
            try:
                f = h5py.File(path, "r")
            except OSError:  # written through a temporary name, so only a damaged disk gets here: recompute it
                self.recomputed.append(f"{path.name} (cannot be read)")
                continue
            with f:
                theirs = {key: str(f.attrs.get(key)) for key in self.identity}
                if theirs != self.identity:
                    changed = sorted(key for key in self.identity if theirs[key] != self.identity[key])
                    stale = f"{path.name} was computed with other {', '.join(changed)}"
                    break
                if not np.array_equal(f["index"][:], self.blocks[k]):
                    stale = f"{path.name} holds other images"
                    break
                if f.attrs.get("content_sha256") != content_sha256(f):
                    self.recomputed.append(f"{path.name} (its content differs from its checksum)")
                    continue
                done[k] = int(np.count_nonzero(f["found"][:])) if "found" in f else 0
        if stale:
            self.restarted, self.recomputed = stale, []
            shutil.rmtree(self.dir)
            return {}
        return done

    def write(self, k: int, records: list[dict]) -> None:
        self.dir.mkdir(exist_ok=True)
        write_shard(self.path(k), self.blocks[k], records, {**self.identity, "part": k}, checksum=True)

    def join(self, attrs: dict) -> None:
        """The shard file at `out` from every part, one part open at a time (HDF5 caches per open file would
        otherwise grow with the number of parts); the parts are then removed."""
        paths = [self.path(k) for k in range(len(self.blocks))]
        layouts = []
        for path in paths:
            with h5py.File(path, "r") as f:
                fields = json.loads(f.attrs["fields"])
                layouts.append({name: (f[name].dtype, f[name].shape[1:]) for name in fields})
        for path, layout in zip(paths, layouts, strict=True):
            if layout != layouts[0]:
                raise InputError(f"{path}: fields {layout} differ from {paths[0]}'s {layouts[0]}")
        fields = list(layouts[0]) if layouts else []
        with new_h5(self.out) as (out, check):
            out.create_dataset("index", data=self.indices)
            for name, (dtype, shape) in (layouts[0] if layouts else {}).items():
                if name.endswith(VLEN_SUFFIX):
                    out.create_dataset(name, (len(self.indices),), dtype=h5py.vlen_dtype(np.uint8))
                else:
                    out.create_dataset(name, (len(self.indices), *shape), dtype=dtype)
            at = 0
            for path, block in zip(paths, self.blocks, strict=True):
                with h5py.File(path, "r") as part:
                    for name in fields:
                        values = part[name]
                        if name.endswith(VLEN_SUFFIX):
                            for j in range(len(block)):
                                out[name][at + j] = values[j]
                                check()
                        else:
                            out[name][at : at + len(block)] = values[:]
                            check()
                at += len(block)
            out.attrs.update(attrs)
            out.attrs["fields"] = json.dumps(fields)
        if self.dir.is_dir():
            shutil.rmtree(self.dir)


SHARD_REBUILD = "delete it and rerun that shard (the workflow's stage_shard rule, or python -m pipeline.stages run)"
# a shard's attributes that must agree across the shards of one store (inputs and provenance: computed from the
# very same input stores)
SHARD_IDENTITY = ("stage", "backend", "backend_version", "params", "inputs", "weights_sha256", "provenance", "fields")


def _open_shard(path: str | Path) -> h5py.File:
    f = open_h5(path, "stage shard", SHARD_REBUILD)
    if "index" in f and "fields" in f.attrs and "stage" in f.attrs and "num_images" not in f.attrs:
        return f
    kind = _describe(f)
    f.close()
    raise InputError(f"{path}: {kind}, not a shard (merge joins the files `python -m pipeline.stages run` writes)")


def merge(shards: list[str | Path], out: str | Path, num_images: int, manifest_sha256: str) -> dict:
    """Join shard files into one store aligned to the manifest; returns its summary."""
    if not shards:
        raise InputError("merge needs at least one shard")
    with contextlib.ExitStack() as stack:
        opened = [stack.enter_context(_open_shard(s)) for s in shards]
        seen = np.zeros(num_images, np.int64)
        # a shard of no images (more shards than images) records no fields
        first = next((f for f in opened if len(f["index"])), opened[0])
        for f, s in zip(opened, shards, strict=True):
            if f.attrs.get("manifest_sha256") != manifest_sha256:
                raise InputError(f"{s}: shard of another image pack (manifest {f.attrs.get('manifest_sha256')}); "
                                 "rerun it")
            identity = SHARD_IDENTITY if len(f["index"]) else [k for k in SHARD_IDENTITY if k != "fields"]
            differ = [k for k in identity if f.attrs.get(k) != first.attrs.get(k)]
            if differ:
                raise InputError(f"{s} and {first.filename}: shards of different runs "
                                 f"(their {', '.join(differ)} differ: "
                                 f"{f.attrs.get(differ[0])!r} vs {first.attrs.get(differ[0])!r}); rerun the stale one")
            index = f["index"][:]
            if len(index) and (index.min() < 0 or index.max() >= num_images):
                raise InputError(f"{s}: rows for images up to {index.max()}, but the image pack has {num_images}; "
                                 f"rerun it")
            if len(index) and not np.array_equal(index, np.arange(index[0], index[0] + len(index))):
                raise InputError(f"{s}: its rows are not one contiguous block of images, as `run` writes them; "
                                 "rerun it")
            np.add.at(seen, index, 1)
        for f, s in zip(opened, shards, strict=True):  # after the comparison above, which names what differs
            read_attrs(s, f.attrs, SHARD_REBUILD)
        if (seen != 1).any():
            bad = int(np.flatnonzero(seen != 1)[0])
            raise InputError(f"shards {[str(s) for s in shards]} cover image {bad} {seen[bad]} times, not once")
        fields = json.loads(first.attrs["fields"])
        with new_h5(out) as (g, check):
            for name in fields:
                src = first[name]
                if name.endswith(VLEN_SUFFIX):
                    dst = g.create_dataset(name, (num_images,), dtype=h5py.vlen_dtype(np.uint8))
                else:
                    dst = g.create_dataset(name, (num_images, *src.shape[1:]), dtype=src.dtype)
                for f in opened:
                    index = f["index"][:]
                    if not len(index):
                        continue
                    rows = f[name]
                    if name.endswith(VLEN_SUFFIX):
                        for j, i in enumerate(index):  # h5py cannot scatter vlen rows in one call
                            dst[i] = rows[j]
                            check()
                    else:
                        dst[index[0]: index[0] + len(index)] = rows[:]  # shards are contiguous blocks
                        check()
            if "found" not in g:  # no images at all
                g.create_dataset("found", data=np.zeros(0, bool))
            found = g["found"][:]
            attrs = {k: v for k, v in first.attrs.items() if k not in ("fields", "content_sha256")}
            # num_shards: how it was split, which its content does not depend on; the workflow keeps planning an
            # existing store with it, so a profile with another shard count reuses the store
            attrs.update(fields=json.dumps(fields), num_images=num_images, num_shards=len(shards),
                         found_rate=float(found.mean()) if num_images else 0.0,
                         created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            g.attrs.update(attrs)
        return {"stage": attrs["stage"], "backend": attrs["backend"], "images": num_images,
                "found": int(found.sum()), "found_rate": attrs["found_rate"]}


def _describe(f: h5py.File) -> str:
    """What an HDF5 file that is not the kind expected holds, for error messages."""
    attrs = f.attrs
    if "index" in f and "stage" in attrs and "num_images" not in attrs:
        return f"an unmerged shard of {attrs['stage']}/{attrs.get('backend')}"
    if "num_images" in attrs and "stage" in attrs:
        return f"a merged {attrs['stage']}/{attrs.get('backend')} store"
    if "encoded" in f and "manifest_sha256" in attrs:
        return "an image pack"
    return f"an HDF5 file of something else (datasets {sorted(f)[:5]}, attributes {sorted(attrs)[:5]})"


def store_rebuild(path: str | Path) -> str:
    return f"rebuild it with `snakemake --force {path}` (or python -m pipeline.stages run, then merge)"


class Store:
    """Read access to a merged store, refused when it does not belong to the given image pack."""

    def __init__(self, path: str | Path, manifest_sha256: str | None = None):
        self.path = Path(path)
        self.file = open_h5(self.path, "stage store", store_rebuild(self.path))
        self.attrs = dict(self.file.attrs)
        if not {"stage", "backend", "fields", "num_images"} <= set(self.attrs) or "found" not in self.file:
            kind = _describe(self.file)
            self.file.close()
            if kind.startswith("an unmerged shard"):
                raise InputError(f"{self.path} is {kind}; merge it with `python -m pipeline.stages merge` (the "
                                 f"workflow's stage_merge rule) and give the merged store")
            raise InputError(f"{self.path}: {kind}, not a stage store (data/derived/<dataset>/<stage>/<backend>.h5)")
        if manifest_sha256 is not None and self.attrs.get("manifest_sha256") != manifest_sha256:
            self.file.close()
            raise InputError(f"{self.path}: computed for image pack {str(self.attrs.get('manifest_sha256'))[:16]}…, "
                             f"but images.h5 is now {manifest_sha256[:16]}…; rerun the {self.attrs.get('stage')} stage")
        try:
            self.params, self.fields, self.inputs, self.provenance = read_attrs(self.path, self.attrs,
                                                                                store_rebuild(self.path))
        except InputError:
            self.file.close()
            raise

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


def check_inputs_agree(stores: Mapping[str, Store], given: str) -> None:
    """Refuse stores that do not belong together: one computed from a store of another stage that is given beside
    it must have been computed from that very store (its declared provenance equal to that store's); otherwise it
    would pair rows of two different upstream results (DeSKPro's faces_restored beside other faces, GrabCut
    silhouettes beside other keypoints). given: how the stores were given, for the message."""
    for store in stores.values():
        for stage, declared in sorted(store.inputs.items()):
            beside = stores.get(stage)
            if beside is None or declared["provenance"] == beside.provenance:
                continue
            differ = [k for k in DECLARED_KEYS if declared.get(k) != str(beside.attrs.get(k))]
            what = (f"it was computed from {differ[0]} {declared.get(differ[0])!r}, {beside.path} has "
                    f"{str(beside.attrs.get(differ[0]))!r}" if differ else
                    f"the same backend, version, params and weights, but {beside.path} was computed from other input "
                    f"stores (provenance {beside.provenance[:12]}…, not {declared['provenance'][:12]}…)")
            raise InputError(f"{store.path} was computed from another {stage} store than {beside.path}, given beside "
                             f"it ({given}): {what}; rebuild {store.path} from {beside.path}, or give the {stage} "
                             f"store it was computed from")
