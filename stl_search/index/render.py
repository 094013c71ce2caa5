"""The search picture: the query (box in green) beside its hits (boxes in red), left to right.

Hits may come from image files or video frames (read again from the video by frame index).
"""

from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

from ..utils.io import atomic_open
from .query import Hit
from .sources import load_record

__all__ = ["check_picture_path", "render"]


def _panel(image: np.ndarray, box: Sequence[float], color, height: int, label: str) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    canvas = np.ascontiguousarray(image).copy()
    cv2.rectangle(canvas, (x1, y1), (x2, y2), color, 2)
    scale = height / canvas.shape[0]
    canvas = cv2.resize(canvas, (max(1, int(canvas.shape[1] * scale)), height))
    cv2.putText(canvas, label, (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
    return canvas


def _pixels(file_name: str, frame_index: int = -1) -> np.ndarray:
    record = {"file_name": file_name, "frame_index": frame_index, "timestamp": -1.0}
    return load_record(record, "BGR")["image"]


def check_picture_path(out_path: str) -> None:
    """Fail before any work when ``out_path`` cannot take the picture: a format OpenCV cannot
    write, or a folder that does not exist or is not writable (each named)."""
    extension = os.path.splitext(out_path)[1] or ".png"
    if not cv2.haveImageWriter("x" + extension):
        raise ValueError(
            f"{out_path}: OpenCV cannot write {extension!r} pictures (use .png or .jpg)"
        )
    folder = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{out_path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{out_path}: the folder {folder} is not writable")


def render(
    query_image: str,
    query_box: Sequence[float],
    hits: Sequence[Hit],
    out_path: str,
    height: int = 240,
) -> None:
    """Save the query image beside each hit's image (``#rank similarity`` on each hit)."""
    panels = [_panel(_pixels(query_image), query_box, (0, 255, 0), height, "query")]
    for rank, hit in enumerate(hits, 1):
        label = f"#{rank} {hit.similarity:.2f}"
        if hit.frame_index >= 0:
            label += f" @{hit.timestamp:.1f}s"
        image = _pixels(hit.file_name, hit.frame_index)
        panels.append(_panel(image, hit.box, (0, 0, 255), height, label))
    ok, encoded = cv2.imencode(
        os.path.splitext(out_path)[1] or ".png", np.concatenate(panels, axis=1)
    )
    if not ok:
        raise ValueError(f"cannot encode an image for {out_path}")
    with atomic_open(out_path, "wb") as f:
        f.write(encoded.tobytes())
