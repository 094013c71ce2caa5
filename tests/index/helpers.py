"""Helpers of the index tests: the build command with the tests' settings, index contents,
galleries of chosen images, models of other weights, a test video."""

from __future__ import annotations

import os
from typing import Dict, List, Sequence

import cv2
import numpy as np
import torch
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng

from stl_search.index import cli
from stl_search.index.shards import GalleryIndex
from stl_search.utils.checkpoint import AtomicCheckpointer


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


def add_images(folder: str, source: str, *extra: str) -> Dict:
    """``python -m stl_search.index add`` with the tests' settings."""
    return cli.main(
        ["add", "--index", folder, "--input", source, "--batch-size", "2", "--threads", "1", *extra]
    )


def gallery_of(folder, source: str, names: Sequence[str]) -> str:
    """A folder ``folder`` of links to the images ``names`` of ``source``."""
    os.makedirs(folder)
    for name in names:
        os.symlink(os.path.join(source, name), os.path.join(folder, name))
    return str(folder)


def save_model(cfg, folder, seed: int, nan_parameter: str = None) -> str:
    """A tiny model of seed ``seed`` saved as ``folder/model.pth`` (``nan_parameter``: that
    parameter filled with NaN, a broken checkpoint)."""
    seed_all_rng(seed)
    model = build_model(cfg)
    if nan_parameter:
        with torch.no_grad():
            dict(model.named_parameters())[nan_parameter].fill_(float("nan"))
    AtomicCheckpointer(model, save_dir=str(folder)).save("model")
    return os.path.join(str(folder), "model.pth")


def write_video(path: str, frames: int = 25, fps: float = 10.0, size=(160, 96)) -> list:
    """An MJPG video of moving rectangles; returns the frames as OpenCV reads them back."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    rng = np.random.default_rng(0)
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 90, np.uint8)
        x = 5 + 4 * i
        frame[20:80, x : x + 25] = rng.integers(0, 255, 3)
        writer.write(frame)
    writer.release()
    capture, decoded = cv2.VideoCapture(path), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return decoded
        decoded.append(frame)
