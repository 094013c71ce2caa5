"""Class-aware P x K sampler and the plain shuffled sampler of STL step 1."""

import itertools
from collections import Counter

import numpy as np
import pytest

from stl_search.data.reid.samplers import PKSampler, ShuffledSampler


def _labels():
    # 11 identities with 1..12 crops: long-tailed, some shorter than K=4.
    rng = np.random.default_rng(0)
    counts = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12]
    labels = np.concatenate([[i] * c for i, c in enumerate(counts)])
    return rng.permutation(labels).tolist() + [-1, -1]  # two unlabeled crops, never sampled


def _batches(sampler, n):
    return [sampler.batch_for_iter(i) for i in range(n)]


def test_every_batch_is_p_identities_by_k_with_repeats_only_when_short():
    labels = _labels()
    counts = Counter(labels)
    s = PKSampler(labels, p=3, k=4, seed=1, rank=0, world_size=1)
    for batch in _batches(s, 40):
        assert len(batch) == 12
        ids = [labels[i] for i in batch]
        assert all(i >= 0 for i in ids)
        per_id = Counter(ids)
        assert len(per_id) == 3 and set(per_id.values()) == {4}
        for pid in per_id:
            crops = [i for i in batch if labels[i] == pid]
            if counts[pid] >= 4:
                assert len(set(crops)) == 4, "repeats although the identity has >= K crops"
            else:
                assert set(crops) == {i for i, label in enumerate(labels) if label == pid}, (
                    "a short identity must use all its crops"
                )


def test_an_epoch_covers_every_identity():
    labels = _labels()
    s = PKSampler(labels, p=3, k=4, seed=2, rank=0, world_size=1)
    assert s.batches_per_epoch == 4  # ceil(11 / 3)
    for epoch in range(3):
        seen = {
            labels[i] for b in range(s.batches_per_epoch) for i in s.global_batch(epoch * 4 + b)
        }
        assert seen == set(range(11))


def test_two_ranks_get_disjoint_batches_and_the_union_is_the_global_stream():
    labels = [i // 4 for i in range(12 * 4)]  # 12 identities x 4: an epoch splits exactly
    r0 = PKSampler(labels, p=3, k=4, seed=3, rank=0, world_size=2)
    r1 = PKSampler(labels, p=3, k=4, seed=3, rank=1, world_size=2)
    single = PKSampler(labels, p=3, k=4, seed=3, rank=0, world_size=1)
    for it in range(6):
        a, b = r0.batch_for_iter(it), r1.batch_for_iter(it)
        assert not set(a) & set(b)
        assert not {labels[i] for i in a} & {labels[i] for i in b}
        assert a == single.global_batch(2 * it) and b == single.global_batch(2 * it + 1)


def test_deterministic_for_a_seed_and_resumable_at_any_iteration():
    labels = _labels()
    a = list(itertools.islice(iter(PKSampler(labels, 3, 4, seed=5, rank=0, world_size=1)), 12 * 10))
    b = list(itertools.islice(iter(PKSampler(labels, 3, 4, seed=5, rank=0, world_size=1)), 12 * 10))
    c = list(itertools.islice(iter(PKSampler(labels, 3, 4, seed=6, rank=0, world_size=1)), 12 * 10))
    resumed = list(
        itertools.islice(
            iter(PKSampler(labels, 3, 4, seed=5, start_iter=7, rank=0, world_size=1)), 12 * 3
        )
    )
    assert a == b and a != c
    assert resumed == a[12 * 7 :]
    positions = [
        p
        for _, p in itertools.islice(
            PKSampler(
                labels, 3, 4, seed=5, start_iter=7, rank=0, world_size=1
            ).iter_with_positions(),
            12,
        )
    ]
    assert positions == list(range(12 * 7, 12 * 8))


def test_too_few_identities_is_an_error():
    with pytest.raises(ValueError, match="at least P"):
        PKSampler([0, 0, 1, 1], p=3, k=2, rank=0, world_size=1)


def test_shuffled_sampler_epoch_is_a_permutation_and_ranks_are_disjoint():
    s = ShuffledSampler(20, 5, seed=0, rank=0, world_size=1)
    epoch = sum((s.global_batch(g) for g in range(4)), [])
    assert sorted(epoch) == list(range(20))
    r0 = ShuffledSampler(20, 5, seed=0, rank=0, world_size=2)
    r1 = ShuffledSampler(20, 5, seed=0, rank=1, world_size=2)
    assert not set(r0.batch_for_iter(0)) & set(r1.batch_for_iter(0))
