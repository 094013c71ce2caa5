"""CSR ("compressed rows") helpers shared by the person-search metrics.

Per-image variable-length data is a flat array plus ``splits`` of length ``num_images + 1``: the
rows of image ``i`` are ``splits[i]:splits[i + 1]``. These helpers check such splits and expand
ranges without Python loops.
"""

from __future__ import annotations

import numpy as np


def check_splits(splits: np.ndarray, n: int, what: str) -> np.ndarray:
    """``splits`` as int64, after checking that it starts at 0, never decreases and ends at ``n``;
    ``ValueError`` naming ``what`` otherwise."""
    splits = np.asarray(splits, dtype=np.int64)
    if (
        splits.ndim != 1
        or splits.size < 1
        or splits[0] != 0
        or splits[-1] != n
        or np.any(np.diff(splits) < 0)
    ):
        raise ValueError(f"{what}: splits must start at 0, be non-decreasing and end at {n}")
    return splits


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[i], starts[i] + counts[i])`` for all i, vectorised."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    return np.repeat(np.asarray(starts, dtype=np.int64) - offsets, counts) + np.arange(
        total, dtype=np.int64
    )


def first_in_segments(segment_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Indices ``i`` with ``mask[i]`` that are the first such index of their (sorted) segment."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return idx
    seg = segment_ids[idx]
    return idx[np.r_[True, seg[1:] != seg[:-1]]]
