"""What an index is built from: image files (a folder or a glob) or frames sampled from a video.

Each input becomes a list of *records*, one per image or sampled frame, in a fixed order (sorted
file names; frame order), so that the same input always gives the same records:
``{"file_name", "frame_index" (-1 for an image), "timestamp" (seconds; -1.0 for an image)}``.
:func:`load_record` turns a record into a data set dict carrying its pixels (``image``, in the
model's channel order), which the evaluation's mapper then takes as it takes a file.
"""

from __future__ import annotations

import glob
import math
import os
from typing import Dict, List, Tuple

import cv2
import numpy as np

from ..utils.images import read_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "image_records",
    "video_records",
    "sample_frame_indices",
    "load_record",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def image_records(pattern: str, flag: str = "--input") -> List[Dict]:
    """Records of the images of a folder (sorted, by extension), a glob, or one image file, with
    absolute file names (an index is used from other working directories).

    Raises:
        FileNotFoundError: naming ``flag`` and ``pattern`` when it matches no image.
        ValueError: naming the file when ``pattern`` is a single file that is not an image.
    """
    if os.path.isdir(pattern):
        names = sorted(f for f in os.listdir(pattern) if f.lower().endswith(IMAGE_EXTENSIONS))
        files = [os.path.join(pattern, f) for f in names]
    elif os.path.isfile(pattern):
        if not pattern.lower().endswith(IMAGE_EXTENSIONS):
            raise ValueError(f"{flag} {pattern} is not an image ({'/'.join(IMAGE_EXTENSIONS)})")
        files = [pattern]
    else:
        files = sorted(f for f in glob.glob(pattern) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise FileNotFoundError(
            f"{flag} {pattern} holds or matches no {'/'.join(IMAGE_EXTENSIONS)} images"
        )
    return [{"file_name": os.path.abspath(f), "frame_index": -1, "timestamp": -1.0} for f in files]


def _open_video(path: str) -> cv2.VideoCapture:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--video-input {path} does not exist")
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError(f"--video-input {path}: OpenCV cannot open it as a video")
    return capture


def video_info(path: str) -> Tuple[float, int]:
    """``(frames per second, frame count)`` of a video, checked to be usable."""
    capture = _open_video(path)
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        ok = capture.grab()
    finally:
        capture.release()
    if not ok or count <= 0 or not fps > 0:
        raise ValueError(
            f"--video-input {path}: no readable frames (OpenCV reports {count} frames at {fps} fps)"
        )
    return fps, count


def sample_frame_indices(fps: float, count: int, sample_fps: float) -> List[int]:
    """The frames at times ``0, 1/sample_fps, 2/sample_fps, ...`` (each the first frame shown
    at that time); every frame when ``sample_fps >= fps``."""
    if not sample_fps > 0:
        raise ValueError(f"--sample-fps must be > 0, got {sample_fps}")
    step = fps / sample_fps
    if step <= 1:
        return list(range(count))
    n = int(math.floor((count - 1) / step + 1e-9)) + 1
    return [int(math.floor(k * step + 1e-9)) for k in range(n)]


def video_records(path: str, sample_fps: float) -> List[Dict]:
    """One record per sampled frame: ``frame_index`` and ``timestamp = frame_index / fps``."""
    fps, count = video_info(path)
    path = os.path.abspath(path)
    return [
        {"file_name": path, "frame_index": i, "timestamp": i / fps}
        for i in sample_frame_indices(fps, count, sample_fps)
    ]


class _VideoReader:
    """Frames of one video by index, decoding forward without seeking when read in order."""

    def __init__(self, path: str):
        self.path = path
        self.capture = _open_video(path)
        self.next_index = 0

    def read(self, index: int) -> np.ndarray:
        if index < self.next_index or index > self.next_index + 64:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            self.next_index = index
        while self.next_index < index:
            if not self.capture.grab():
                break
            self.next_index += 1
        ok, frame = self.capture.read()
        if not ok or self.next_index != index:
            raise ValueError(f"{self.path}: cannot read frame {index}")
        self.next_index += 1
        return frame


_READERS: Dict[str, _VideoReader] = {}  # per process (data-loader workers each have their own)


def load_record(record: Dict, image_format: str) -> Dict:
    """A data set dict for ``record`` with ``image`` (H x W x 3 uint8 in ``image_format``),
    ``height``, ``width`` and ``image_id``.

    Raises:
        ValueError: naming the file (and frame) that cannot be decoded.
    """
    path, frame_index = record["file_name"], int(record["frame_index"])
    if frame_index < 0:
        image = read_image(path, image_format)
        image_id = path
    else:
        reader = _READERS.get(path)
        if reader is None:
            reader = _READERS[path] = _VideoReader(path)
        image = reader.read(frame_index)  # BGR, as OpenCV decodes
        if image_format == "RGB":
            image = np.ascontiguousarray(image[:, :, ::-1])
        elif image_format != "BGR":
            raise ValueError(
                f"video frames are given as BGR or RGB, not INPUT.FORMAT {image_format}"
            )
        image_id = f"{path}#{frame_index}"
    height, width = image.shape[:2]
    return dict(record, image=image, height=height, width=width, image_id=image_id)
