"""Allow-listed unpickling of SMPL-format model files.

A pickle can name any importable callable and have it called while loading (`open`, `os.system`, ...),
so body-model files — downloaded by users, converted, shared — are read with an Unpickler that resolves
only what an SMPL pickle is made of: numpy arrays, dtypes and scalars (numpy 1's `numpy.core.*` and
numpy 2's `numpy._core.*` paths), scipy.sparse matrices (also under old private module paths such as
`scipy.sparse.csc`, as in the Python 2 era SMPL files), `copyreg`/`copy_reg` reconstruction of those
classes only, and the few builtins their states use. For `convert-smpl`, chumpy classes (official SMPL
files) map to `ChumpyState`, which only records the pickled state. Anything else is refused by its
`module.name` before it is imported or called.
"""
from __future__ import annotations

import codecs
import copyreg
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse

from pipeline.errors import InputError

try:  # numpy >= 2 keeps the implementation in numpy._core; numpy.core is a deprecated alias there
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


class ChumpyState:
    """Stands in for a chumpy class while unpickling: keeps the pickled state, runs nothing."""

    def __setstate__(self, state):
        self.state = state


_SPARSE = ("csc_matrix", "csr_matrix", "coo_matrix", "bsr_matrix", "dia_matrix", "dok_matrix", "lil_matrix",
           "csc_array", "csr_array", "coo_array", "bsr_array", "dia_array", "dok_array", "lil_array")
_SPARSE_CLASSES = {name: getattr(scipy.sparse, name) for name in _SPARSE if hasattr(scipy.sparse, name)}

# numpy pickles name these by their defining module, which moved from numpy.core (1.x) to numpy._core (2.x)
_NUMPY_GLOBALS = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
for _core in ("numpy.core", "numpy._core"):
    _NUMPY_GLOBALS.update({(f"{_core}.multiarray", "_reconstruct"): _multiarray._reconstruct,
                           (f"{_core}.multiarray", "scalar"): _multiarray.scalar,
                           (f"{_core}.numeric", "_frombuffer"): _numeric._frombuffer})
# what the pickled states of arrays and sparse matrices need (sets: chumpy's `_dirty_vars`)
_BUILTINS = {"object": object, "set": set, "frozenset": frozenset, "bytearray": bytearray, "complex": complex}


def _latin1_encode(text, encoding="latin1"):
    """`_codecs.encode` as Python 3 uses it for bytes in protocol 0-2 pickles (text, 'latin1') — only that."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}: only latin1 text is allowed")
    return codecs.encode(text, "latin1")


class SafeUnpickler(pickle.Unpickler):
    """Unpickler for SMPL-format files; `chumpy=True` also admits chumpy classes as `ChumpyState`."""

    def __init__(self, file, path: str | Path, chumpy: bool = False):
        super().__init__(file, encoding="latin1")  # SMPL's files are Python 2 pickles
        self.path, self.chumpy = Path(path), chumpy
        self._allowed_classes = {np.ndarray, np.dtype, ChumpyState, *_SPARSE_CLASSES.values()}

    def _refuse(self, module: str, name: str, why: str = "") -> InputError:
        return InputError(f"{self.path}: refused to load {module}.{name}{why} from this pickle; an SMPL-format "
                          f"body model holds only numpy arrays, scipy.sparse matrices and plain values")

    def _checked_class(self, cls, how: str):
        if not isinstance(cls, type) or cls not in self._allowed_classes:
            raise self._refuse("copyreg", how, f" for {getattr(cls, '__qualname__', cls)!r}")
        return cls

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[module, name]
        if module == "scipy.sparse" or module.startswith("scipy.sparse."):
            if name in _SPARSE_CLASSES:  # resolved on scipy.sparse itself: old private paths are never imported
                return _SPARSE_CLASSES[name]
        elif module in ("copyreg", "copy_reg"):
            if name == "_reconstructor":
                return self._reconstructor
            if name == "__newobj__":
                return self._newobj
        elif module in ("builtins", "__builtin__") and name in _BUILTINS:
            return _BUILTINS[name]
        elif module == "_codecs" and name == "encode":
            return _latin1_encode
        elif module.partition(".")[0] == "chumpy":
            if self.chumpy:
                return ChumpyState
            raise InputError(f"{self.path}: holds chumpy objects ({module}.{name}: an official SMPL pickle with "
                             f"chumpy arrays); convert it once with `python -m trainer.body convert-smpl {self.path} "
                             f"OUT.pkl`")
        raise self._refuse(module, name)

    def _reconstructor(self, cls, base, state):
        self._checked_class(cls, "_reconstructor")
        if base is not object:
            self._checked_class(base, "_reconstructor")
        return copyreg._reconstructor(cls, base, state)

    def _newobj(self, cls, *args):
        self._checked_class(cls, "__newobj__")
        return cls.__new__(cls, *args)


def load_pickle(path: str | Path, chumpy: bool = False):
    """The unpickled content of an SMPL-format file; refused globals and unreadable pickles raise InputError."""
    path = Path(path)
    with path.open("rb") as fh:
        try:
            return SafeUnpickler(fh, path, chumpy).load()
        except (pickle.UnpicklingError, EOFError) as e:
            raise InputError(f"{path}: not a readable pickle ({e})") from None
