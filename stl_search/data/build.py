"""Person-search data loaders, all mapping with :class:`PersonSearchDatasetMapper`.

- training: a resumable stream (``stl_search.data.resumable``): sample ``p`` of the stream is a
  pure function of (seed, p), so a job resumed at iteration ``i`` sees exactly the batches an
  uninterrupted job would have seen from ``i`` on. ``PersonSearchTrainer`` trains on it.
- gallery and query splits: Detectron2's test-loader pieces (``InferenceSampler``, which splits
  the set over the processes in order, and ``trivial_batch_collator``) with a batch size,
  ``TEST.IMS_PER_BATCH`` images per batch, in data set order. (Detectron2 v0.6's
  ``build_detection_test_loader`` has no batch size argument; this loader is the same on v0.6 and
  on Detectron2's main branch.)
  :func:`build_person_search_eval_loader` chains a gallery split and its queries into one loader,
  so that Detectron2's own ``inference_on_dataset`` / ``DefaultTrainer.test`` run both passes of
  person search with a ``PersonSearchEvaluator``.
"""

from __future__ import annotations

import time
from typing import Iterable, Iterator, Optional, Sequence

import torch.utils.data
from detectron2.config import CfgNode
from detectron2.data import (
    DatasetFromList,
    MapDataset,
    build_batch_data_loader,
    get_detection_dataset_dicts,
)
from detectron2.data.build import trivial_batch_collator
from detectron2.data.samplers import InferenceSampler

from .datasets import default_query_split
from .mapper import PersonSearchDatasetMapper
from .resumable import PositionSampler, PositionSeededDataset

__all__ = [
    "ChainedLoader",
    "build_person_search_eval_loader",
    "build_person_search_test_loader",
    "build_person_search_train_loader",
    "data_stream_seed",
]


def data_stream_seed(cfg: CfgNode) -> int:
    """The training stream's seed: ``cfg.SEED``, or a time-based one when that is negative."""
    return cfg.SEED if cfg.SEED >= 0 else int(time.time()) % (2**31)


def build_person_search_train_loader(cfg: CfgNode, seed: Optional[int] = None, start_iter: int = 0):
    """Endless batches of ``SOLVER.IMS_PER_BATCH`` mapped training images of ``DATASETS.TRAIN``.

    Args:
        cfg: the config: ``DATASETS.TRAIN``, ``SOLVER.IMS_PER_BATCH``, ``DATALOADER.*``,
            ``INPUT.*``.
        seed: seed of the stream; ``None`` takes :func:`data_stream_seed` (the trainer resolves
            it once, into its ``cfg.SEED``, and saves it in its checkpoints).
        start_iter: the iteration the stream starts at: its first batch holds the samples at
            positions ``start_iter * IMS_PER_BATCH`` onwards (split over the processes).
    """
    if seed is None:
        seed = data_stream_seed(cfg)
    dicts = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    )
    dataset = PositionSeededDataset(dicts, PersonSearchDatasetMapper(cfg, mode="train"), seed)
    sampler = PositionSampler(start=start_iter * cfg.SOLVER.IMS_PER_BATCH)
    return build_batch_data_loader(
        dataset,
        sampler,
        cfg.SOLVER.IMS_PER_BATCH,
        aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )


def build_person_search_test_loader(
    cfg: CfgNode, dataset_name: str, mode: str = "test", batch_size: Optional[int] = None
) -> torch.utils.data.DataLoader:
    """Batches of mapped images of a gallery split (``mode="test"``) or a query split
    (``mode="query"``), in data set order, each process getting its ``InferenceSampler`` share.

    Args:
        cfg: the config: ``TEST.IMS_PER_BATCH``, ``DATALOADER.NUM_WORKERS``, ``INPUT.*``.
        dataset_name: a registered split.
        mode: the mapper's mode, ``"test"`` or ``"query"``.
        batch_size: images per batch; default ``TEST.IMS_PER_BATCH``. The last batch may be
            smaller.
    """
    if mode not in ("test", "query"):
        raise ValueError(f"test loader mode must be 'test' or 'query', got {mode!r}")
    if batch_size is None:
        batch_size = cfg.TEST.IMS_PER_BATCH
    if batch_size < 1:
        raise ValueError(f"TEST.IMS_PER_BATCH must be >= 1, got {batch_size}")
    dicts = get_detection_dataset_dicts([dataset_name], filter_empty=False)
    dataset = MapDataset(
        DatasetFromList(dicts, copy=False), PersonSearchDatasetMapper(cfg, mode=mode)
    )
    batches = torch.utils.data.BatchSampler(
        InferenceSampler(len(dataset)), batch_size, drop_last=False
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=trivial_batch_collator,
    )


class ChainedLoader:
    """The batches of several loaders, one loader after the other. Its length is the sum of
    theirs, as ``inference_on_dataset`` needs.

    Args:
        loaders: the loaders, in order (a keyword argument, so that LazyConfig files can build
            one: ``configs/lazy/``).
    """

    def __init__(self, loaders: Sequence[Iterable]) -> None:
        self.loaders = list(loaders)

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders)

    def __iter__(self) -> Iterator:
        for loader in self.loaders:
            yield from loader


def build_person_search_eval_loader(
    cfg: CfgNode, gallery_name: str, query_name: Optional[str] = None
) -> ChainedLoader:
    """The gallery split ``gallery_name`` (``mode="test"``), then its query split
    (``mode="query"``), ``TEST.IMS_PER_BATCH`` images per batch: both passes of person search in
    one loader.

    With it, Detectron2's ``inference_on_dataset(model, loader, PersonSearchEvaluator(cfg,
    gallery_name))`` evaluates person search: the model answers query inputs (they carry
    ``query_boxes``) with ``query_embedding`` and the evaluator's ``process`` files those under
    the queries. So a ``DefaultTrainer`` subclass only overrides ``build_test_loader`` with this
    function to evaluate through Detectron2's own ``DefaultTrainer.test``.

    Args:
        cfg: the config (``INPUT.*``, ``DATALOADER.NUM_WORKERS``).
        gallery_name: a registered gallery split.
        query_name: its query split; default the gallery's metadata ``query_name`` (set by the
            built-in registrations), as :class:`~stl_search.evaluation.PersonSearchEvaluator`
            takes it. For CUHK-SYSU any one gallery size's query split serves (same queries).
    """
    if query_name is None:
        query_name = default_query_split(gallery_name)
    return ChainedLoader(
        [
            build_person_search_test_loader(cfg, gallery_name, "test"),
            build_person_search_test_loader(cfg, query_name, "query"),
        ]
    )
