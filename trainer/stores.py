"""The preprocessing stores a method reads, as the train and evaluate CLIs receive them (`--store STAGE=PATH`)."""
from __future__ import annotations

from pipeline.errors import InputError
from pipeline.stages.store import Store


def parse_store_args(args: list[str]) -> dict[str, str]:
    """['keypoints=PATH', ...] -> {stage: path}; a malformed or repeated stage is an error naming it."""
    stores: dict[str, str] = {}
    for arg in args:
        stage, sep, path = arg.partition("=")
        if not sep or not stage or not path:
            raise InputError(f"--store {arg!r}: expected STAGE=PATH")
        if stage in stores:
            raise InputError(f"--store {stage} is given twice ({stores[stage]} and {path})")
        stores[stage] = path
    return stores


def open_stores(stores: dict[str, str], manifest_sha256: str) -> dict[str, Store]:
    """Open each store, refusing one made for another image pack or given as the wrong stage."""
    opened = {}
    for stage, path in stores.items():
        store = Store(path, manifest_sha256)
        if store.attrs["stage"] != stage:
            store.close()
            for other in opened.values():
                other.close()
            raise InputError(f"{path}: a {store.attrs['stage']} store given as {stage}")
        opened[stage] = store
    return opened


def close_stores(stores: dict[str, Store]) -> None:
    for store in stores.values():
        store.close()


def store_provenance(stores: dict[str, Store]) -> dict:
    """What produced each store, for model.pt."""
    return {stage: {"path": str(store.path), **{k: str(store.attrs[k]) for k in
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
