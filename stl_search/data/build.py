"""Person-search data loaders: Detectron2's loaders with :class:`PersonSearchDatasetMapper`.

(The trainer's resumable training stream, ``stl_search.data.resumable``, uses the same mapper.)
"""

from __future__ import annotations

from detectron2.config import CfgNode
from detectron2.data import build_detection_test_loader, build_detection_train_loader

from .mapper import PersonSearchDatasetMapper

__all__ = ["build_person_search_train_loader", "build_person_search_test_loader"]


def build_person_search_train_loader(cfg: CfgNode):
    """Endless batches of ``SOLVER.IMS_PER_BATCH`` mapped training images of ``DATASETS.TRAIN``."""
    return build_detection_train_loader(cfg, mapper=PersonSearchDatasetMapper(cfg, mode="train"))


def build_person_search_test_loader(cfg: CfgNode, dataset_name: str, mode: str = "test"):
    """One image per batch, in data set order: a gallery split (``mode="test"``) or a query split
    (``mode="query"``). Works on Detectron2 v0.6 (no ``batch_size`` argument)."""
    if mode not in ("test", "query"):
        raise ValueError(f"test loader mode must be 'test' or 'query', got {mode!r}")
    return build_detection_test_loader(
        cfg, dataset_name, mapper=PersonSearchDatasetMapper(cfg, mode=mode)
    )
