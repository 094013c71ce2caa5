"""Sightings: the boxes that match a query, grouped per source into time intervals.

Sampling every frame of a video puts one appearance of a person on dozens of frames, and those
fill a per-box top-k. A *sighting* is instead one appearance: consecutive matching boxes of one
source (a video file, or one camera of an image folder) whose sample numbers are at most
``max_gap + 1`` apart, i.e. bridging at most ``max_gap`` sampled frames in which the person was
not matched. Each sighting keeps its interval, its best box and how many frames it spans;
sightings are ranked by their best similarity.

Positions are *sample numbers* within a source, so that the gap does not depend on the frame
rate or the sampling rate:

- video: the k-th frame sampled at ``sample_fps`` (the index's ``--sample-fps``), recovered from
  the box's timestamp (a sampled frame k lies in ``(k - 1, k] / sample_fps`` seconds); every
  frame is a sample when the video's own rate is lower;
- images: the image's position among the source's images in the index, sorted by name. The
  source of an image is its folder and, for PRW-style names (``c3s2_000200.jpg``), its camera.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from .shards import GalleryIndex

__all__ = ["Sighting", "SourceTable", "group_sightings", "camera_of"]

_PRW_CAMERA = re.compile(r"^(c\d+)(?:s\d+)?_")


def camera_of(file_name: str, frame_index: int) -> str:
    """The camera of a box: a video's file stem; for an image, the ``c<k>`` of a PRW-style name,
    else the image's folder name."""
    if frame_index >= 0:
        return os.path.splitext(os.path.basename(file_name))[0]
    match = _PRW_CAMERA.match(os.path.basename(file_name))
    return match.group(1) if match else os.path.basename(os.path.dirname(file_name)) or "."


@dataclass
class Sighting:
    """One appearance of the query person in one source.

    ``start`` and ``end`` are seconds for a video, image numbers (0-based, among the source's
    images) for an image source; ``first_sample`` / ``last_sample`` are sample numbers.
    """

    source: str
    camera: str
    kind: str  # "video" or "images"
    start: float
    end: float
    first_sample: int
    last_sample: int
    num_frames: int
    best_similarity: float
    best_file: str
    best_frame_index: int
    best_timestamp: float
    best_box: List[float]
    best_box_id: int
    box_ids: List[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["best_box"] = [round(float(v), 2) for v in self.best_box]
        return d


class SourceTable:
    """Per box of a gallery index: its source, camera and sample number (built once per index).

    Attributes:
        source: ``(N,)`` int, the box's source number; ``names[s]``, ``kinds[s]``,
            ``cameras[s]`` describe source ``s``.
        sample: ``(N,)`` int64, the box's sample number within its source.
        position: ``(N,)`` float64, seconds (video) or image number (images).
    """

    def __init__(self, gallery: GalleryIndex):
        files = np.asarray(gallery.file_name).astype(str)
        frames = np.asarray(gallery.frame_index, dtype=np.int64)
        times = np.asarray(gallery.timestamp, dtype=np.float64)
        is_video = frames >= 0
        rates = {
            s["input"]: float(s["sample_fps"])
            for s in gallery.manifest.get("sources", [])
            if s.get("kind") == "video" and s.get("sample_fps")
        }
        unique_files, first_box, file_of_box = np.unique(
            files, return_index=True, return_inverse=True
        )
        keys, kinds = [], []
        for name, first in zip(unique_files, first_box):
            if is_video[first]:
                keys.append((name, name))
                kinds.append("video")
            else:
                keys.append((os.path.dirname(name), camera_of(name, -1)))
                kinds.append("images")
        key_names = [f"{d}#{c}" if kind == "images" else d for (d, c), kind in zip(keys, kinds)]
        self.names, source_of_file = np.unique(key_names, return_inverse=True)
        self.names = self.names.tolist()
        self.kinds = [""] * len(self.names)
        self.cameras = [""] * len(self.names)
        for i, s in enumerate(source_of_file):
            self.kinds[s] = kinds[i]
            self.cameras[s] = keys[i][1] if kinds[i] == "images" else camera_of(keys[i][0], 0)
        self.source = source_of_file[file_of_box]
        self.sample = np.zeros(len(files), dtype=np.int64)
        self.position = np.where(is_video, times, 0.0)
        for s, kind in enumerate(self.kinds):
            rows = np.flatnonzero(self.source == s)
            if kind == "images":
                # unique file numbers within the source, in name order
                _, ordinal = np.unique(files[rows], return_inverse=True)
                self.sample[rows] = ordinal
                self.position[rows] = ordinal
            else:
                rate = rates.get(self.names[s])
                self.sample[rows] = _video_samples(frames[rows], times[rows], rate)
        self.label = [
            self.names[s].split("#")[0] + (f" [{self.cameras[s]}]" if k == "images" else "")
            for s, k in enumerate(self.kinds)
        ]

    def select(
        self,
        sources: Optional[Sequence[str]] = None,
        cameras: Optional[Sequence[str]] = None,
        time_range: Optional[Sequence[float]] = None,
    ) -> Optional[np.ndarray]:
        """A boolean mask of the boxes passing the filters (None when there is no filter):
        ``sources`` are globs matched against the video file or the image's folder,
        ``cameras`` exact camera names, ``time_range`` ``(start, end)`` seconds (video only)."""
        if not sources and not cameras and time_range is None:
            return None
        ok_source = np.ones(len(self.names), dtype=bool)
        if sources:
            ok_source &= [
                any(fnmatch.fnmatch(n.split("#")[0], g) for g in sources) for n in self.names
            ]
        if cameras:
            ok_source &= [c in set(cameras) for c in self.cameras]
        mask = ok_source[self.source]
        if time_range is not None:
            start, end = (float(v) for v in time_range)
            if start > end:
                raise ValueError(f"--time-range: start {start} is after end {end}")
            video = np.array([k == "video" for k in self.kinds])[self.source]
            mask &= video & (self.position >= start) & (self.position <= end)
        return mask


def _video_samples(frames: np.ndarray, times: np.ndarray, sample_fps: Optional[float]):
    """Sample numbers of one video's boxes (see the module docstring): the frame index when
    every frame was sampled, the frame's rank among the video's frames with boxes when the
    sampling rate is not in the manifest. The video's own rate is ``frame_index / timestamp``
    of any of its boxes."""
    positive = frames > 0
    fps = float(np.median(frames[positive] / times[positive])) if positive.any() else math.inf
    if sample_fps is None:  # not recorded: the frame's rank among the video's frames here
        return np.unique(frames, return_inverse=True)[1].astype(np.int64)
    if sample_fps >= fps:
        return frames.astype(np.int64)
    return np.ceil(times * sample_fps - 1e-6).astype(np.int64)


def group_sightings(
    box_ids: np.ndarray,
    similarities: np.ndarray,
    table: SourceTable,
    gallery: GalleryIndex,
    max_gap: int = 2,
) -> List[Sighting]:
    """The sightings of the matching boxes ``box_ids`` (with their ``similarities``), best
    first. Boxes of one source within ``max_gap`` missed samples of each other form one
    sighting."""
    if max_gap < 0:
        raise ValueError(f"--max-gap must be >= 0, got {max_gap}")
    ids = np.asarray(box_ids, dtype=np.int64)
    sims = np.asarray(similarities, dtype=np.float64)
    if not len(ids):
        return []
    source, sample = table.source[ids], table.sample[ids]
    order = np.lexsort((-sims, sample, source))  # by source, then sample, best box first
    ids, sims, source, sample = ids[order], sims[order], source[order], sample[order]
    starts = np.flatnonzero(np.r_[True, (np.diff(source) != 0) | (np.diff(sample) > max_gap + 1)])
    ends = np.r_[starts[1:], len(ids)]
    position = table.position[ids]
    new_frame = np.r_[True, (np.diff(sample) != 0) | (np.diff(source) != 0)]
    frames = np.add.reduceat(new_frame.astype(np.int64), starts)
    best_sim = np.maximum.reduceat(sims, starts)
    sightings = []
    for k, (a, b) in enumerate(zip(starts, ends)):
        best = a + int(np.argmax(sims[a:b]))  # the first of the best: the lowest sample
        i, s = int(ids[best]), int(source[a])
        sightings.append(
            Sighting(
                source=table.names[s].split("#")[0],
                camera=table.cameras[s],
                kind=table.kinds[s],
                start=float(position[a:b].min()),
                end=float(position[a:b].max()),
                first_sample=int(sample[a]),
                last_sample=int(sample[b - 1]),
                num_frames=int(frames[k]),
                best_similarity=float(best_sim[k]),
                best_file=str(gallery.file_name[i]),
                best_frame_index=int(gallery.frame_index[i]),
                best_timestamp=float(gallery.timestamp[i]),
                best_box=[float(v) for v in gallery.boxes[i]],
                best_box_id=i,
                box_ids=ids[a:b].tolist(),
            )
        )
    sightings.sort(key=lambda x: (-x.best_similarity, x.source, x.start))
    return sightings
