"""Infinite, resumable samplers for STL step 1 (Re-ID pretraining on person crops).

Both samplers are Detectron2-style infinite index streams (``TrainingSampler``'s contract: an
endless iterator of dataset indices for *this* process, to be grouped into batches by a
``BatchSampler``), with two properties Detectron2's sampler lacks:

- **a pure function of (seed, position)**: batch ``g`` of the global stream is always the same
  indices, so a run resumed at iteration ``i`` (``start_iter=i``) sees exactly what the killed run
  would have seen next; :meth:`iter_with_positions` also exposes each sample's global stream
  position, from which the data loader derives a per-sample augmentation seed;
- **disjoint per-rank batches**: global batch ``g`` goes to rank ``g % world_size``, so the
  ranks of one iteration hold consecutive, different batches of the same epoch (the position
  layout of :class:`stl_search.data.resumable.PositionSampler`, shared with the person-search
  stream).

:class:`PKSampler` is the class-aware sampler of paper 3.1 (used only with the triplet loss):
an *epoch* is a random permutation of the identities cut into groups of ``P`` (the last group is
topped up with other identities drawn at random), so every epoch visits every identity once and
identities are sampled uniformly whatever their number of crops — the point of class-aware
sampling under a long-tailed identity distribution. Each identity contributes ``K`` of its crops,
drawn without replacement; only an identity with fewer than ``K`` crops repeats some (all its
crops first, then random repeats). :class:`ShuffledSampler` gives plain random batches (the
"softmax" row of Table 6).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.utils import comm
from torch.utils.data import Sampler

from ..resumable import PositionSampler

__all__ = ["PKSampler", "ShuffledSampler", "sample_seed"]


def sample_seed(seed: int, position: int) -> int:
    """A 32-bit seed for the augmentation of the sample at global stream ``position``."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(position)]).generate_state(1)[0])


class _BatchStream(Sampler):
    """Common part: global batch ``g`` of ``batch_size`` indices, ``g = it * world + rank``.

    Subclasses implement :meth:`_epoch_batches` (the batches of one epoch, a pure function of
    ``(seed, epoch)``) and set ``self.batches_per_epoch``.
    """

    batches_per_epoch: int
    batch_size: int

    def __init__(self, seed: int, start_iter: int, rank: Optional[int], world_size: Optional[int]):
        self.seed = int(seed)
        self.start_iter = int(start_iter)
        self.rank = comm.get_rank() if rank is None else int(rank)
        self.world_size = comm.get_world_size() if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} out of range for world size {self.world_size}")
        self._cache: "OrderedDict[int, List[List[int]]]" = OrderedDict()

    def _epoch_batches(self, epoch: int) -> List[List[int]]:
        raise NotImplementedError

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, int(epoch)])

    def global_batch(self, g: int) -> List[int]:
        """Indices of batch ``g`` of the global stream (all ranks together)."""
        epoch, offset = divmod(int(g), self.batches_per_epoch)
        if epoch not in self._cache:
            self._cache[epoch] = self._epoch_batches(epoch)
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
        return self._cache[epoch][offset]

    def batch_for_iter(self, it: int) -> List[int]:
        """This rank's batch at training iteration ``it``."""
        return self.global_batch(it * self.world_size + self.rank)

    def iter_with_positions(self) -> Iterator[Tuple[int, int]]:
        """Endless ``(index, global stream position)`` pairs for this rank, from ``start_iter``."""
        positions = PositionSampler(
            start=self.start_iter * self.world_size * self.batch_size,
            rank=self.rank,
            world_size=self.world_size,
            batch_size=self.batch_size,
        )
        for position in positions:
            g, j = divmod(position, self.batch_size)
            yield self.global_batch(g)[j], position

    def __iter__(self) -> Iterator[int]:
        for index, _ in self.iter_with_positions():
            yield index


class PKSampler(_BatchStream):
    """Class-aware P x K sampler: each batch holds ``p`` distinct identities x ``k`` crops each.

    Args:
        identities: the training label of every dataset index (``person_id``); indices with a
            negative label are never sampled.
        p: identities per batch *of this process* (the config's P divided by the world size).
        k: crops per identity.
        seed: stream seed; same seed, same stream.
        start_iter: first iteration to produce (resume).
        rank, world_size: default to Detectron2's ``comm``.
    """

    def __init__(
        self,
        identities: Sequence[int],
        p: int,
        k: int,
        *,
        seed: int = 0,
        start_iter: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ):
        super().__init__(seed, start_iter, rank, world_size)
        if p < 1 or k < 1:
            raise ValueError(f"P and K must be positive, got P={p}, K={k}")
        groups: Dict[int, List[int]] = {}
        for index, pid in enumerate(identities):
            if int(pid) >= 0:
                groups.setdefault(int(pid), []).append(index)
        if len(groups) < p:
            raise ValueError(
                f"PKSampler needs at least P={p} identities per batch, "
                f"the training set has {len(groups)}"
            )
        self.identities = sorted(groups)
        self._instances = [np.asarray(groups[i], dtype=np.int64) for i in self.identities]
        self.p, self.k = int(p), int(k)
        self.batch_size = self.p * self.k
        self.batches_per_epoch = -(-len(self.identities) // self.p)

    def _epoch_batches(self, epoch: int) -> List[List[int]]:
        rng = self._rng(epoch)
        n = len(self.identities)
        order = rng.permutation(n)
        batches = []
        for start in range(0, n, self.p):
            group = order[start : start + self.p]
            if len(group) < self.p:  # top up the last group with other identities
                others = np.setdiff1d(np.arange(n), group)
                group = np.concatenate(
                    [group, rng.choice(others, self.p - len(group), replace=False)]
                )
            batch: List[int] = []
            for slot in group:
                batch.extend(self._draw(rng, self._instances[slot]))
            batches.append(batch)
        return batches

    def _draw(self, rng: np.random.Generator, instances: np.ndarray) -> List[int]:
        if len(instances) >= self.k:
            return instances[rng.choice(len(instances), self.k, replace=False)].tolist()
        extra = rng.choice(len(instances), self.k - len(instances), replace=True)
        return np.concatenate([rng.permutation(instances), instances[extra]]).tolist()


class ShuffledSampler(_BatchStream):
    """Random batches of ``batch_size`` over all indices, one permutation per epoch (drops the
    tail).

    Args:
        size: number of dataset indices.
        batch_size: samples per batch *of this process*.
        seed, start_iter, rank, world_size: as :class:`PKSampler`.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int = 0,
        start_iter: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ):
        super().__init__(seed, start_iter, rank, world_size)
        if not 0 < batch_size <= size:
            raise ValueError(f"batch size {batch_size} must be in [1, {size}] (the data set size)")
        self.size, self.batch_size = int(size), int(batch_size)
        self.batches_per_epoch = self.size // self.batch_size

    def _epoch_batches(self, epoch: int) -> List[List[int]]:
        order = self._rng(epoch).permutation(self.size)
        return [
            order[i * self.batch_size : (i + 1) * self.batch_size].tolist()
            for i in range(self.batches_per_epoch)
        ]
