"""Data loaders of STL step 1: the Re-ID crop set (:mod:`.crops`) → normalised batches.

The training stream is a pure function of ``(seed, iteration)``: the sampler
(:mod:`.samplers`) fixes which crops form each batch, and each crop's augmentation
draws from a ``torch.Generator`` seeded by ``(seed, stream position)``. Worker processes and a
resume at any iteration therefore produce the very batches an uninterrupted run would have.

A batch is ``{"images": float (N, 3, H, W), "person_ids": int64 (N,), "index": int64 (N,)}``,
the input of :class:`stl_search.reid.model.ReIDNet`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data.samplers import InferenceSampler
from detectron2.utils import comm
from torch.utils.data import BatchSampler, DataLoader, Dataset

from .samplers import PKSampler, ShuffledSampler, sample_seed
from .transforms import build_reid_transform

__all__ = [
    "AugmentedCrops",
    "build_reid_test_loader",
    "build_reid_train_loader",
    "crop_image",
    "per_rank_identities",
    "reid_collate",
]


def crop_image(item: Any) -> torch.Tensor:
    """The uint8 ``C x H x W`` crop of one item of a crop data set (a dict with ``image`` or a
    tuple whose first element is the image; tensors are CHW, NumPy arrays HWC)."""
    image = item["image"] if isinstance(item, dict) else item[0]
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    return image


class _PositionedSampler:
    """A sampler's ``(index, position)`` stream as the keys that :class:`AugmentedCrops` reads."""

    def __init__(self, sampler: Union[PKSampler, ShuffledSampler]):
        self.sampler = sampler

    def __iter__(self):
        return self.sampler.iter_with_positions()


class AugmentedCrops(Dataset):
    """``crops[index]`` → ``{"image": transform(crop), "person_id", "index"}``.

    Keys are dataset indices (test) or ``(index, stream position)`` pairs (training), the latter
    seeding the augmentation with :func:`~stl_search.data.reid.samplers.sample_seed`.
    """

    def __init__(self, crops: Sequence, labels: Sequence[int], transform: Callable, seed: int = 0):
        if len(crops) != len(labels):
            raise ValueError(f"{len(crops)} crops but {len(labels)} labels")
        self.crops, self.labels, self.transform, self.seed = (
            crops,
            list(labels),
            transform,
            int(seed),
        )

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        if isinstance(key, tuple):
            index, position = key
            generator: Optional[torch.Generator] = torch.Generator().manual_seed(
                sample_seed(self.seed, position)
            )
        else:
            index, generator = key, None
        image = crop_image(self.crops[index])
        return {
            "image": self.transform(image, generator),
            "person_id": int(self.labels[index]),
            "index": int(index),
        }


def reid_collate(items: List[Dict[str, Any]]) -> Dict[str, torch.Tensor]:
    """Stack items into the model's batch dict."""
    return {
        "images": torch.stack([x["image"] for x in items]),
        "person_ids": torch.tensor([x["person_id"] for x in items], dtype=torch.long),
        "index": torch.tensor([x["index"] for x in items], dtype=torch.long),
    }


def per_rank_identities(cfg: CfgNode) -> int:
    """``REID.SAMPLER.P`` (identities per iteration, all processes together) for one process."""
    p, world = cfg.REID.SAMPLER.P, comm.get_world_size()
    if p % world:
        raise ValueError(
            f"REID.SAMPLER.P={p} must be divisible by the number of processes ({world})"
        )
    return p // world


def build_reid_train_loader(
    cfg: CfgNode, crops: Sequence, labels: Sequence[int], *, seed: int, start_iter: int = 0
) -> DataLoader:
    """Endless training batches of ``REID.SAMPLER.P * K / world`` crops for this process.

    P identities x K crops (:class:`PKSampler`) when ``REID.LOSS.TRIPLET`` is on, random batches
    of the same size otherwise (Table 6: class-aware sampling only with the triplet loss).
    Iteration ``start_iter`` of the stream comes first.
    """
    p, k = per_rank_identities(cfg), cfg.REID.SAMPLER.K
    if cfg.REID.LOSS.TRIPLET:
        sampler: Union[PKSampler, ShuffledSampler] = PKSampler(
            labels, p, k, seed=seed, start_iter=start_iter
        )
    else:
        sampler = ShuffledSampler(len(crops), p * k, seed=seed, start_iter=start_iter)
    dataset = AugmentedCrops(crops, labels, build_reid_transform(cfg, is_train=True), seed=seed)
    return DataLoader(
        dataset,
        batch_sampler=BatchSampler(_PositionedSampler(sampler), sampler.batch_size, drop_last=True),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=reid_collate,
    )


def build_reid_test_loader(cfg: CfgNode, crops: Sequence, labels: Sequence[int]) -> DataLoader:
    """This process's share of ``crops`` (test transform), ``REID.TEST_IMS_PER_BATCH`` a batch."""
    dataset = AugmentedCrops(crops, labels, build_reid_transform(cfg, is_train=False))
    sampler = InferenceSampler(len(dataset))
    return DataLoader(
        dataset,
        batch_sampler=BatchSampler(sampler, cfg.REID.TEST_IMS_PER_BATCH, drop_last=False),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=reid_collate,
    )
