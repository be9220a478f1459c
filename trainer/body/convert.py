"""One-time conversion of an official SMPL pickle (chumpy arrays, Python 2 pickle) into plain numpy.

chumpy does not import on Python 3.11 with numpy 2, so the allow-listing unpickler
(`safe_pickle`) replaces its classes by a recorder that keeps the pickled state; a chumpy array's value
is its `x` entry. Nothing else outside the allow-list loads: the file cannot run code.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_path
from pipeline.errors import InputError, MissingInputError

from .model import check_model_file
from .safe_pickle import ChumpyState, load_pickle


def _plain(src: Path, key: str, value):
    if isinstance(value, ChumpyState):
        state = value.state if isinstance(value.state, dict) else {}
        if "x" not in state:
            raise InputError(f"{src}: {key} is a chumpy expression without a stored value (state keys: "
                             f"{sorted(state)}); cannot convert it without chumpy")
        return np.asarray(state["x"], np.float64)
    return value


def convert_smpl(src: str | Path, dst: str | Path) -> Path:
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise MissingInputError(f"{src}: no such SMPL model file")
    data = load_pickle(src, chumpy=True)
    if not isinstance(data, dict):
        raise InputError(f"{src}: not an SMPL model pickle (holds a {type(data).__name__})")
    plain = {k: _plain(src, k, v) for k, v in data.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp, open(tmp, "wb") as fh:
        pickle.dump(plain, fh, protocol=4)
    check_model_file(dst)
    return dst
