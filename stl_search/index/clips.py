"""Short clips of the source video around each sighting, its matched boxes drawn.

After a search an analyst checks the moment itself, not one frame of it. For each video
sighting of a result (the first ``limit``), the frames from ``margin`` seconds before its start
to ``margin`` seconds after its end are read from the source video, every frame at the video's
own rate, and written as an MP4 (``mp4v``, the video's size and rate) with the sighting's
matched boxes drawn in red and ``#rank similarity`` in the corner. The index holds boxes of the
sampled frames only (``--sample-fps``): a matched box stays drawn from its sampled frame until
the video's next sampled frame, so the box is on screen exactly while its sample is the latest
one. Image sightings (camera folders) have no clip; their frames are in the result grid and
``--save-crops``.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from typing import Dict, List

import cv2
import numpy as np

from ..utils.io import atomic_open
from .shards import GalleryIndex
from .sightings import Sighting
from .sources import load_record, video_info

__all__ = ["save_clips", "write_sighting_clip"]

RED = (0, 0, 255)


def _boxes_by_sampled_frame(sighting: Sighting, gallery: GalleryIndex) -> Dict[int, np.ndarray]:
    ids = np.asarray(sighting.box_ids, dtype=np.int64)
    frames = np.asarray(gallery.frame_index)[ids]
    boxes = np.asarray(gallery.boxes, dtype=np.float64)[ids]
    return {int(f): boxes[frames == f] for f in np.unique(frames)}


def _sampled_frames(video: str, gallery: GalleryIndex) -> np.ndarray:
    """The video's frames that the index sampled (those holding at least one box), sorted."""
    return np.unique(np.asarray(gallery.frame_index)[np.asarray(gallery.file_name) == video])


def write_sighting_clip(
    sighting: Sighting, gallery: GalleryIndex, path: str, margin: float, label: str
) -> int:
    """Write ``sighting``'s clip to ``path`` (an ``.mp4``, replaced whole or not at all); returns
    the number of frames written."""
    if sighting.kind != "video":
        raise ValueError(f"{sighting.source}: only a video sighting has a clip")
    if margin < 0:
        raise ValueError(f"--clip-margin must be >= 0, got {margin}")
    video = sighting.best_file
    fps, count = video_info(video)
    first = max(0, math.floor((sighting.start - margin) * fps))
    last = min(count - 1, math.ceil((sighting.end + margin) * fps))
    matched = _boxes_by_sampled_frame(sighting, gallery)
    sampled = _sampled_frames(video, gallery)
    writer, written = None, 0
    with tempfile.TemporaryDirectory(prefix="stl-clip-") as scratch:
        # OpenCV writes to a name (its container follows the extension): a scratch file, then
        # the project's atomic write puts the bytes at ``path``.
        temp = os.path.join(scratch, "clip.mp4")
        try:
            for index in range(first, last + 1):
                record = {"file_name": video, "frame_index": index, "timestamp": -1.0}
                frame = np.ascontiguousarray(load_record(record, "BGR")["image"]).copy()
                if writer is None:
                    height, width = frame.shape[:2]
                    writer = cv2.VideoWriter(
                        temp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height)
                    )
                    if not writer.isOpened():
                        raise ValueError(f"{path}: OpenCV cannot write an mp4v video here")
                latest = np.searchsorted(sampled, index, side="right") - 1  # its latest sample
                for x1, y1, x2, y2 in matched.get(int(sampled[latest]), ()) if latest >= 0 else ():
                    cv2.rectangle(frame, (round(x1), round(y1)), (round(x2), round(y2)), RED, 2)
                cv2.putText(frame, label, (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, RED, 2)
                writer.write(frame)
                written += 1
        finally:
            if writer is not None:
                writer.release()
        if writer is None:
            raise ValueError(f"{video}: no frame between {first} and {last} to write to {path}")
        with open(temp, "rb") as src, atomic_open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return written


def save_clips(
    sightings: List[Sighting],
    gallery: GalleryIndex,
    folder: str,
    tag: str,
    margin: float = 1.0,
    limit: int = 10,
) -> List[str]:
    """A clip of each of the first ``limit`` video sightings, ``TAG_rankN.mp4`` in ``folder``
    (created; N the sighting's rank); returns the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for rank, sighting in enumerate(sightings[:limit], 1):
        if sighting.kind != "video":
            continue
        path = os.path.join(folder, f"{tag}_rank{rank}.mp4")
        label = f"#{rank} {sighting.best_similarity:.2f}"
        write_sighting_clip(sighting, gallery, path, margin, label)
        paths.append(path)
    return paths
