from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.datasets import load
from pipeline.imagepack import write_pack
from pipeline.listfile import write_lists
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
    write_pack(listed_paths(str(lists)), root, images, "tiny", progress=False)
    return {"root": root, "lists": lists, "images": images, "base": base}


REPO = Path(__file__).resolve().parents[1]
