"""A training stream whose content depends only on (seed, position): resuming loses nothing.

Detectron2's ``TrainingSampler`` restarts its random stream when a job is resumed, and
augmentations draw from process-global RNGs, so a resumed run sees different data from an
uninterrupted one. Here sample ``p`` of the stream is always the same image with the same
augmentation: the image is ``permutation(seed, p // n)[p % n]`` and the global RNGs are seeded
from ``(seed, p)`` just before the mapper runs. A job resumed at iteration ``i`` starts the stream
at position ``i * total_batch_size`` and continues exactly where the killed job stopped (with
``DATALOADER.ASPECT_RATIO_GROUPING`` off, or when all images share an orientation: grouping
buffers samples across iterations).

The Re-ID crop stream of STL step 1 (``stl_search.data.reid``) is resumable the same way and
shares two pieces: :class:`PositionSampler` (which global positions this process reads, with
``batch_size`` > 1 for whole batches per rank) and :class:`DataStreamSeed` (the seed kept in the
checkpoints). Its order of crops (P x K epochs) and its per-sample seed (an explicit
``torch.Generator`` for its transforms instead of the global RNGs that Detectron2's
augmentations read) are its own.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import torch
from detectron2.data.common import DatasetFromList
from detectron2.utils import comm
from torch.utils.data import Dataset, Sampler

__all__ = ["DataStreamSeed", "PositionSampler", "PositionSeededDataset"]


class PositionSampler(Sampler):
    """Infinite stream of the global sample positions this process reads, from ``start``.

    The global stream is cut into batches of ``batch_size`` consecutive positions, and global
    batch ``g`` goes to rank ``g % world_size``: the ``k``-th position of this process is
    ``start + ((k // batch_size) * world_size + rank) * batch_size + k % batch_size``. With
    ``batch_size=1`` (the person-search stream) that is ``start + rank + k * world_size``.

    Args:
        start: first global position (``start_iter`` x the batch size of all processes).
        rank, world_size: default to Detectron2's ``comm``.
        batch_size: positions per batch of one process.
    """

    def __init__(
        self,
        start: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        batch_size: int = 1,
    ):
        self._start = int(start)
        self._rank = comm.get_rank() if rank is None else int(rank)
        self._world_size = comm.get_world_size() if world_size is None else int(world_size)
        self._batch_size = int(batch_size)
        if not 0 <= self._rank < self._world_size:
            raise ValueError(f"rank {self._rank} out of range for world size {self._world_size}")
        if self._batch_size < 1:
            raise ValueError(f"PositionSampler: batch_size must be >= 1, got {self._batch_size}")

    def __iter__(self) -> Iterator[int]:
        block = self._start + self._rank * self._batch_size
        stride = self._world_size * self._batch_size
        while True:
            yield from range(block, block + self._batch_size)
            block += stride


class DataStreamSeed:
    """Checkpointable holder of a data stream's seed (a resumed run must reuse the killed run's)."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def state_dict(self) -> Dict[str, int]:
        return {"seed": self.seed}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.seed = int(state["seed"])


class PositionSeededDataset(Dataset):
    """Maps a global stream position to ``mapper(dicts[permutation(seed, epoch)[offset]])``.

    Args:
        dicts: the training records (Detectron2 dataset dicts).
        mapper: callable turning one record into the model's input dict.
        seed: seed of the stream; the same seed gives the same stream.
    """

    def __init__(self, dicts: List[dict], mapper: Callable[[dict], Any], seed: int):
        if len(dicts) == 0:
            raise ValueError("PositionSeededDataset: the training set is empty")
        self._dicts = DatasetFromList(dicts, copy=False)
        self._mapper = mapper
        self._seed = int(seed)
        self._epoch = -1
        self._perm: Optional[torch.Tensor] = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            generator = torch.Generator()
            generator.manual_seed(self._seed * 1_000_003 + epoch)
            self._perm = torch.randperm(len(self._dicts), generator=generator)
            self._epoch = epoch
        return self._perm

    def index_at(self, position: int) -> int:
        """Index into the records of the sample at stream ``position``."""
        epoch, offset = divmod(int(position), len(self._dicts))
        return int(self._permutation(epoch)[offset])

    def __len__(self) -> int:
        return len(self._dicts)

    def __getitem__(self, position: int) -> Any:
        record = self._dicts[self.index_at(position)]
        sample_seed = (self._seed * 2_654_435_761 + int(position)) % (2**32)
        random.seed(sample_seed)
        np.random.seed(sample_seed)
        torch.manual_seed(sample_seed)
        return self._mapper(record)
