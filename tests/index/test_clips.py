"""Sighting clips: the frames around a video sighting, every frame of the video, with the
matched boxes drawn from their sampled frame until the next sampled one; and ``search
--save-clips`` end to end."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest

from stl_search.index.arguments import non_negative_float
from stl_search.index.clips import save_clips, write_sighting_clip
from stl_search.index.shards import GalleryIndex
from stl_search.index.sightings import Sighting

from .helpers import write_video

BOX = [40.0, 30.0, 100.0, 90.0]  # its bottom edge (y = 90) lies on the plain background


def _video_gallery(path: str):
    """A 40-frame 10 fps video sampled at 5 fps (frames 0, 2, ..., 38), one box per sample."""
    frames = np.arange(0, 40, 2)
    n = len(frames)
    emb = np.eye(n, 8, dtype=np.float32)
    return GalleryIndex(
        folder="mem",
        manifest={"embedding_dim": 8},
        embeddings=[emb],
        boxes=np.tile(np.array([BOX], np.float32), (n, 1)),
        scores=np.ones(n, np.float32),
        file_name=np.array([path] * n),
        frame_index=frames,
        timestamp=frames / 10.0,
    )


def _sighting(path: str, ids, kind: str = "video") -> Sighting:
    return Sighting(
        source=path, camera="walk", kind=kind, start=1.0, end=2.0, first_sample=5,
        last_sample=10, num_frames=len(ids), best_similarity=0.9, best_file=path,
        best_frame_index=14, best_timestamp=1.4, best_box=BOX, best_box_id=7, box_ids=list(ids),
    )  # fmt: skip


def _red_edge(frame: np.ndarray) -> bool:
    """Whether the box's bottom edge is drawn (red) in ``frame`` (BGR)."""
    row = frame[89:91, 45:95].reshape(-1, 3).astype(float).mean(axis=0)
    return row[2] - row[1] > 60 and row[2] - row[0] > 60


def _read(path: str):
    capture, frames = cv2.VideoCapture(path), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames, capture.get(cv2.CAP_PROP_FPS)
        frames.append(frame)


def test_a_clip_holds_the_sighting_with_a_margin_and_its_boxes_drawn(tmp_path):
    video = str(tmp_path / "walk.avi")
    write_video(video, frames=40, fps=10.0)
    gallery = _video_gallery(video)
    sighting = _sighting(video, ids=range(5, 11))  # samples at frames 10, 12, ..., 20
    out = str(tmp_path / "clip.mp4")
    written = write_sighting_clip(sighting, gallery, out, margin=0.5, label="#1 0.90")
    frames, fps = _read(out)
    assert written == len(frames) == 21  # video frames 5 .. 25: 1.0 - 0.5 s to 2.0 + 0.5 s
    assert fps == pytest.approx(10.0)
    drawn = [_red_edge(f) for f in frames]
    # Frames 10 .. 21 show a matched sample's box (21: frame 20's box, held until sample 22).
    assert drawn == [5 + i in range(10, 22) for i in range(21)]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_save_clips_names_clips_by_rank_and_skips_image_sightings(tmp_path):
    video = str(tmp_path / "walk.avi")
    write_video(video, frames=40, fps=10.0)
    gallery = _video_gallery(video)
    sightings = [_sighting(video, [5], kind="images"), _sighting(video, [6, 7])]
    paths = save_clips(sightings, gallery, str(tmp_path / "clips"), "q1", margin=0.0)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["q1_rank2.mp4"]
    assert len(_read(paths[0])[0]) == 11  # frames 10 .. 20, no margin
    assert save_clips(sightings, gallery, str(tmp_path / "clips"), "q1", limit=1) == []
    with pytest.raises(ValueError, match="only a video sighting has a clip"):
        write_sighting_clip(sightings[0], gallery, str(tmp_path / "x.mp4"), 0.0, "")
    with pytest.raises(argparse.ArgumentTypeError, match="must be a number >= 0, got '-1'"):
        non_negative_float("-1")
