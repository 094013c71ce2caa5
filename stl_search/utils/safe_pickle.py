"""Reading pickle files (Detectron2 / Detectron1 model-zoo ``.pkl`` weights) without running code.

``pickle.load`` calls whatever callable the file names: a weights file from the internet can run
any command. :func:`safe_pickle_load` uses an unpickler that resolves only the globals that plain
containers and NumPy arrays need, and refuses every other one with an error naming the file and
the global. Model-zoo files hold ``{"model": {name: ndarray}, "__author__": ...}`` (Detectron2) or
``{"blobs": {name: ndarray}}`` (Caffe2 / Detectron1): nothing else is needed to read them.
"""

from __future__ import annotations

import pickle
from typing import Any, FrozenSet, Tuple

__all__ = ["ALLOWED_GLOBALS", "ForbiddenPickleGlobal", "safe_pickle_load"]

_NUMPY_RECONSTRUCTORS = ("_reconstruct", "scalar")

#: (module, name) pairs an unpickled weights file may refer to: builtin containers and scalars,
#: ``OrderedDict``, and NumPy's array / dtype / scalar reconstruction (NumPy 1 and 2 module
#: names). ``_codecs.encode`` turns the latin-1 text of protocol-2 pickles back into bytes.
ALLOWED_GLOBALS: FrozenSet[Tuple[str, str]] = frozenset(
    [("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes")]
    + [("builtins", n) for n in ("bytearray", "int", "float", "complex", "bool", "slice")]
    + [("__builtin__", n) for n in ("dict", "list", "tuple", "set", "str", "int", "float", "bool")]
    + [("collections", "OrderedDict"), ("_codecs", "encode")]
    + [("numpy", "ndarray"), ("numpy", "dtype")]
    + [
        (f"numpy.{core}.multiarray", name)
        for core in ("core", "_core")
        for name in _NUMPY_RECONSTRUCTORS
    ]
    + [(f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")]
)


class ForbiddenPickleGlobal(pickle.UnpicklingError):
    """A pickle file refers to a global outside :data:`ALLOWED_GLOBALS` (it may run code)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, filename: str, **kwargs: Any):
        super().__init__(file, **kwargs)
        self._filename = filename

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise ForbiddenPickleGlobal(
            f"{self._filename}: refused to load: the pickle refers to {module}.{name}, which is "
            "not a plain container or NumPy array (loading it could run code). Only weights "
            "files of dicts, lists, numbers, strings and NumPy arrays are read; convert other "
            "files to a state dict of tensors saved with torch.save."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenPickleGlobal(
            f"{self._filename}: refused to load: the pickle holds persistent references "
            "(a torch file? save it with a .pth name)"
        )


def safe_pickle_load(path: str, encoding: str = "latin1") -> Any:
    """Unpickle ``path`` allowing only :data:`ALLOWED_GLOBALS` (``latin1``: Python 2 pickles of
    NumPy arrays, as Detectron2's own loader reads them).

    Raises:
        ForbiddenPickleGlobal: naming the file and the first global outside the allowed set.
    """
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f, path, encoding=encoding).load()
