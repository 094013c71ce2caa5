"""Helpers of the index tests: the build command with the tests' settings, index contents."""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from stl_search.index import cli
from stl_search.index.shards import GalleryIndex


def build_index(folder: str, config: str, source: str, *extra: str, video_fps: float = 0) -> Dict:
    """``python -m stl_search.index build``: 2 images per shard, batches of 2, 1 torch thread."""
    return cli.main(build_argv(folder, config, source, *extra, video_fps=video_fps))


def build_argv(folder: str, config: str, source: str, *extra: str, video_fps: float = 0) -> List:
    """The arguments of :func:`build_index` (for a command line of its own)."""
    inputs = (
        ["--video-input", source, "--sample-fps", str(video_fps)]
        if video_fps
        else ["--input", source]
    )
    return [
        "build",
        "--index",
        folder,
        "--config-file",
        config,
        *inputs,
        "--images-per-shard",
        "2",
        "--batch-size",
        "2",
        "--threads",
        "1",
        *extra,
    ]


def contents(folder: str) -> Dict[str, np.ndarray]:
    """Everything an index answers with, per box, in index order."""
    index = GalleryIndex.open(folder)
    return {
        "boxes": index.boxes,
        "scores": index.scores,
        "embeddings": index.embeddings_float32(),
        "file_name": index.file_name,
        "frame_index": index.frame_index,
        "timestamp": index.timestamp,
    }


def assert_same_index(a: str, b: str, keys: Sequence[str] = ()) -> None:
    ca, cb = contents(a), contents(b)
    assert len(ca["scores"]) > 0
    for key in keys or ca:
        np.testing.assert_array_equal(ca[key], cb[key], err_msg=key)
