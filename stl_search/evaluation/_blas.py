"""Run NumPy's OpenBLAS single-threaded for a while (many small matrix products).

OpenBLAS parallelises even small products; on a machine whose cores are busy with other work its
threads then wait for each other far longer than the product takes (measured on 2 shared cores:
7,000 products of 42x2048 by 2048x6 took 11-36 s with 2 threads, 1.2-2 s with 1). Big products
keep the default. This finds the OpenBLAS that NumPy loaded and calls its thread setter through
``ctypes`` (what ``threadpoolctl`` does), and does nothing where there is none (other BLAS,
other OS).
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import Callable, Iterator, List, Optional, Tuple

_SETTERS: Optional[List[Tuple[Callable, Callable, bool]]] = None


def _openblas_setters() -> List[Tuple[Callable, Callable, bool]]:
    """``(set, get, thread_local)`` for each OpenBLAS mapped into this process (cached)."""
    global _SETTERS
    if _SETTERS is not None:
        return _SETTERS
    _SETTERS = []
    try:
        with open("/proc/self/maps") as f:
            paths = sorted(
                {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
            )
    except OSError:
        return _SETTERS
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        found = False
        for prefix in ("scipy_", ""):
            for suffix in ("64_", "_64_", ""):
                setter = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter.restype, setter.argtypes, getter.restype = (
                        None,
                        [ctypes.c_int],
                        ctypes.c_int,
                    )
                    _SETTERS.append((setter, getter, False))
                    found = True
                    break
            if found:
                break
        local = None if found else getattr(lib, "openblas_set_num_threads_local", None)
        if local is not None:  # returns the previous value
            local.restype, local.argtypes = ctypes.c_int, [ctypes.c_int]
            _SETTERS.append((local, local, True))
    return _SETTERS


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Within the block, OpenBLAS uses one thread; the previous setting is restored after."""
    restore = []
    for setter, getter, local in _openblas_setters():
        try:
            if local:
                restore.append((setter, setter(1)))
            else:
                previous = getter()
                setter(1)
                restore.append((setter, previous))
        except Exception:  # a foreign symbol with another signature: leave it alone
            continue
    try:
        yield
    finally:
        for setter, previous in reversed(restore):
            setter(previous)
