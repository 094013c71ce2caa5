"""Reading an image file: the one reader of training, evaluation, search, index and tools.

Detectron2's ``read_image`` (PIL, EXIF orientation applied, ``format`` "BGR" / "RGB" / ...), with
the file named in every decoding error: PIL's own messages name none, and data set loaders read
only image headers, so a truncated or oversized image shows up only when its pixels are decoded.
"""

from __future__ import annotations

import numpy as np
from detectron2.data import detection_utils as utils
from PIL import Image

__all__ = ["ImageReadError", "read_image"]


class ImageReadError(OSError, ValueError):
    """An image file exists but cannot be decoded (truncated, corrupt or too large).

    Both an ``OSError`` (a file that cannot be read) and a ``ValueError`` (bad input data), so
    callers that catch either keep working.
    """


def read_image(file_name: str, image_format: str) -> np.ndarray:
    """The pixels of ``file_name`` as H x W x 3 uint8 in ``image_format`` (``INPUT.FORMAT``).

    Raises ``FileNotFoundError`` (Detectron2's, naming the file) for a missing file and
    :class:`ImageReadError` naming the file for a truncated or corrupt one and for one above
    PIL's decompression-bomb limit ``PIL.Image.MAX_IMAGE_PIXELS`` (about 179 MP refused).
    """
    try:
        return utils.read_image(file_name, format=image_format)
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(
            f"{file_name}: image too large to decode safely ({e}); resize it, or raise "
            "PIL.Image.MAX_IMAGE_PIXELS if it is trusted"
        ) from e
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for truncated / corrupt data
        raise ImageReadError(f"{file_name}: cannot decode the image ({e})") from e
