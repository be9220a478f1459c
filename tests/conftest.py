from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from pipeline.datasets import load
from pipeline.imagepack import write_pack
from pipeline.listfile import lists_digest, write_lists
from pipeline.pack import listed_paths
from pipeline.synthetic import SyntheticSpec, generate

TINY = SyntheticSpec(seed=3, train_ids=6, test_ids=4, val_ids=1, images_per_camera=2, min_height=96, max_height=128)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> dict:
    """A tiny synthetic dataset with its lists and image pack, shared by the session."""
    base = tmp_path_factory.mktemp("tiny")
    root = base / "raw"
    generate(TINY, root, jobs=1, progress=False)
    lists = base / "lists"
    write_lists(load("prcc", root), lists, "tiny", root)
    images = base / "images.h5"
    write_pack(listed_paths(str(lists)), root, images, "tiny", progress=False, lists_sha256=lists_digest(lists))
    return {"root": root, "lists": lists, "images": images, "base": base}


REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_process_group_env(rank: int, world: int, port: int) -> None:
    """What torchrun sets for a worker on one machine (gloo on CPU)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))


def keep_built_method(captured: dict) -> None:
    """Make trainer.train remember the method it builds (captured["m"]), to read its weights after train()."""
    import trainer.train as T

    original = T.build_method

    def keep(*a, **kw):
        captured["m"] = original(*a, **kw)
        return captured["m"]

    T.build_method = keep


def run_ranks(worker, *args, world: int = 2, timeout: float = 300) -> dict:
    """Spawn `world` processes of worker(rank, world, port, *args, queue) (gloo on CPU); each puts (rank, result) on
    the queue and must exit 0. Returns rank -> result."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=worker, args=(r, world, port, *args, queue)) for r in range(world)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=timeout) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results
