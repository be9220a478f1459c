"""One-time conversion of an official SMPL pickle (chumpy arrays, Python 2 pickle) into plain numpy.

chumpy does not import on Python 3.11 with numpy 2 (dependencies.md), so its classes are replaced
while unpickling by a recorder that keeps the pickled state; a chumpy array's value is its `x` entry.
scipy's old private module paths (scipy.sparse.csc, ...) are mapped to scipy.sparse.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import scipy.sparse

from pipeline.atomic import atomic_path
from pipeline.errors import InputError, MissingInputError

from .model import check_model_file


class _ChumpyState:
    def __setstate__(self, state):
        self.state = state


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.split(".")[0] == "chumpy":
            return _ChumpyState
        if module.startswith("scipy.sparse"):
            return getattr(scipy.sparse, name)
        return super().find_class(module, name)


def _plain(key: str, value):
    if isinstance(value, _ChumpyState):
        state = value.state if isinstance(value.state, dict) else {}
        if "x" not in state:
            raise InputError(f"{key}: a chumpy expression without a stored value (state keys: {sorted(state)}); "
                             f"cannot convert it without chumpy")
        return np.asarray(state["x"], np.float64)
    return value


def convert_smpl(src: str | Path, dst: str | Path) -> Path:
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise MissingInputError(f"{src}: no such SMPL model file")
    with src.open("rb") as fh:
        data = _Unpickler(fh, encoding="latin1").load()
    if not isinstance(data, dict):
        raise InputError(f"{src}: not an SMPL model pickle (holds a {type(data).__name__})")
    plain = {k: _plain(k, v) for k, v in data.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp, open(tmp, "wb") as fh:
        pickle.dump(plain, fh, protocol=4)
    check_model_file(dst)
    return dst
