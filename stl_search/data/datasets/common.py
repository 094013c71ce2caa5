"""Helpers shared by the loaders: MATLAB file access with clear errors, image sizes, number checks.

The real PRW / CUHK-SYSU files are MATLAB v5 ``.mat`` files whose variables are cells and struct
arrays. ``scipy.io.loadmat`` (default options) returns them as nested NumPy object / structured
arrays; the helpers here unwrap that nesting in one place, and every failure names the file and
what was expected, so that a wrong or incomplete copy of a data set is easy to diagnose.
Numbers are checked where they are read (finite, integral person ids within int64), so that a bad
value fails at load time naming its file, record and field, not later in training or evaluation.
"""

from __future__ import annotations

import logging
import math
import os
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np
from PIL import Image
from scipy.io import loadmat

logger = logging.getLogger(__name__)

_INT64 = np.iinfo(np.int64)
_INTEGER_RE = re.compile(r"[+-]?\d+")


class DatasetFormatError(ValueError):
    """A data set file exists but does not have the expected content or layout."""


class DatasetKeyError(DatasetFormatError, KeyError):
    """A ``.mat`` file (or a struct inside it) lacks the expected variable / field."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


def require_file(path: str, layout_hint: str) -> str:
    """Return ``path`` if it is a file, else raise ``FileNotFoundError`` naming it and the
    layout."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found. Expected layout: {layout_hint}")
    return path


def load_mat(path: str, keys: Sequence[str], layout_hint: str) -> Any:
    """Load ``path`` and return the first of ``keys`` it contains.

    Raises ``FileNotFoundError`` if the file is missing, :class:`DatasetFormatError` if it cannot
    be read as a ``.mat`` file, and :class:`DatasetKeyError` naming the keys it does have if none
    of ``keys`` is present.
    """
    require_file(path, layout_hint)
    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises several types for corrupt files
        raise DatasetFormatError(f"{path}: cannot be read as a MATLAB .mat file ({e})") from e
    for key in keys:
        if key in mat:
            return mat[key]
    present = sorted(k for k in mat if not k.startswith("__"))
    if len(keys) == 1:
        what = f"key {keys[0]} not found"
    else:
        what = f"none of the keys {', '.join(keys)} found"
    raise DatasetKeyError(f"{path}: {what} (has: {', '.join(present) or 'nothing'})")


def mat_str(value: Any, where: str) -> str:
    """Unwrap a MATLAB char array as loaded by scipy (``array(['s1.jpg'])``, nested cells) to
    a str."""
    v = value
    for _ in range(8):
        if isinstance(v, str):
            return v
        if isinstance(v, bytes):
            return v.decode("utf-8")
        if isinstance(v, np.ndarray):
            if v.size != 1:
                raise DatasetFormatError(
                    f"{where}: expected a string, got an array of shape {v.shape}"
                )
            v = v.reshape(-1)[0]
            continue
        if isinstance(v, np.str_):
            return str(v)
        break
    raise DatasetFormatError(f"{where}: expected a string, got {type(value).__name__}")


def mat_vector(value: Any, where: str, length: Optional[int] = None) -> np.ndarray:
    """Unwrap a numeric MATLAB array to a flat float64 vector (empty arrays give size 0).

    Raises :class:`DatasetFormatError` naming ``where`` if it is not numeric (e.g. a string),
    has another length than ``length``, or holds a NaN or infinite value.
    """
    v = value
    while isinstance(v, np.ndarray) and v.dtype == object and v.size == 1:
        v = v.reshape(-1)[0]
    try:
        arr = np.asarray(v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DatasetFormatError(f"{where}: expected a numeric array ({e})") from e
    if length is not None and arr.size not in (0, length):
        raise DatasetFormatError(f"{where}: expected {length} numbers, got {arr.size}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise DatasetFormatError(
            f"{where}: value {arr[bad[0]]} at index {bad[0]} is not a finite number"
        )
    return arr


def finite_number(value: Any, where: str) -> float:
    """``value`` as a finite float; :class:`DatasetFormatError` naming ``where`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError) as e:
        raise DatasetFormatError(f"{where}: expected a number, got {value!r}") from e
    if not math.isfinite(number):
        raise DatasetFormatError(f"{where}: expected a finite number, got {number}")
    return number


def person_id(value: Any, where: str) -> int:
    """A person id: a finite integral number (``5``, ``5.0``, ``"5"``) within int64.

    The loaders' pids end up in int64 tensors and arrays; a fractional, NaN or out-of-range
    pid raises :class:`DatasetFormatError` naming ``where`` instead of being rounded or
    overflowing later.
    """
    if isinstance(value, str) and _INTEGER_RE.fullmatch(value.strip()):
        number = int(value)  # exact, even beyond float64's integer precision
    else:
        as_float = finite_number(value, where)
        if not as_float.is_integer():
            raise DatasetFormatError(f"{where}: person id {as_float} is not an integer")
        number = int(as_float)
    if not _INT64.min <= number <= _INT64.max:
        raise DatasetFormatError(f"{where}: person id {number} is outside the int64 range")
    return number


def struct_elements(value: Any, fields: Iterable[str], where: str) -> List[np.void]:
    """The elements of a MATLAB struct array (any shape; a 1x1 cell around it is unwrapped),
    after checking that it has ``fields``."""
    v = value
    while isinstance(v, np.ndarray) and v.dtype == object and v.size == 1:
        v = v.reshape(-1)[0]
    if isinstance(v, np.ndarray) and v.size == 0:  # MATLAB's [] (an empty struct array / cell)
        return []
    if not isinstance(v, np.ndarray) or v.dtype.names is None:
        raise DatasetFormatError(
            f"{where}: expected a struct array, got {type(v).__name__}"
            + (f" of dtype {v.dtype}" if isinstance(v, np.ndarray) else "")
        )
    missing = [f for f in fields if f not in v.dtype.names]
    if missing:
        raise DatasetKeyError(
            f"{where}: struct field(s) {', '.join(missing)} not found "
            f"(has: {', '.join(v.dtype.names)})"
        )
    # MATLAB stores arrays column-major; struct arrays in these files are vectors, so order is kept.
    return list(v.reshape(-1, order="F"))


def cell_strings(value: Any, where: str) -> List[str]:
    """A MATLAB cell vector of strings (``N x 1`` or ``1 x N``) as a list of str."""
    if not isinstance(value, np.ndarray):
        raise DatasetFormatError(
            f"{where}: expected a cell array of strings, got {type(value).__name__}"
        )
    if value.dtype.kind == "U":  # a char matrix (all names the same length)
        return [str(s).strip() for s in value.reshape(-1)]
    return [mat_str(v, f"{where}[{i}]") for i, v in enumerate(value.reshape(-1, order="F"))]


def image_size(path: str) -> tuple:
    """(height, width) of an image, read from its header only (no pixel decoding).

    Raises ``FileNotFoundError`` for a missing file and :class:`DatasetFormatError` naming the
    file for one PIL cannot identify or one above PIL's decompression-bomb limit
    (``PIL.Image.MAX_IMAGE_PIXELS``), which would fail only later, when decoded for training.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Image.DecompressionBombError as e:
        raise DatasetFormatError(
            f"{path}: image too large to decode safely ({e}); resize it, or raise "
            "PIL.Image.MAX_IMAGE_PIXELS if it is trusted"
        ) from e
    except OSError as e:  # PIL.UnidentifiedImageError and read errors
        raise DatasetFormatError(f"{path}: cannot be read as an image ({e})") from e
    return int(height), int(width)


def outside_frame(x: float, y: float, w: float, h: float, height: int, width: int) -> bool:
    """Whether the box ``x, y, w, h`` (positive ``w``, ``h``) has no pixel inside the frame (it
    would become a box in the frame's corner after clipping)."""
    return x + w <= 0 or y + h <= 0 or x >= width or y >= height


def count_log(name: str, num_images: int, num_boxes: int, dropped: Dict[str, int]) -> None:
    """Log the size of a loaded split and every dropped box, with the reason."""
    logger.info("%s: %d images, %d boxes", name, num_images, num_boxes)
    for reason, n in dropped.items():
        if n:
            logger.warning("%s: dropped %d boxes (%s)", name, n, reason)
