"""Helpers shared by the engine tests (and the drop-in ones): weights files that run code."""

from __future__ import annotations

import pickle

import numpy as np
import torch


class WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: a file appears when the pickle runs code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_files(tmp_path):
    """A Detectron2-model-zoo-like ``.pkl``, a ``.pth`` and a ``.pt`` whose loading would write
    ``tmp_path/marker``."""
    marker = str(tmp_path / "marker")
    payload = {
        "model": {"weight": np.ones((2, 3), dtype=np.float32)},
        "__author__": "model zoo",
        "extra": WritesMarker(marker),
    }
    files = {}
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(payload, f)
    files["pkl"] = str(tmp_path / "evil.pkl")
    for ext in ("pth", "pt"):
        torch.save(payload, tmp_path / f"evil.{ext}")
        files[ext] = str(tmp_path / f"evil.{ext}")
    return marker, files
