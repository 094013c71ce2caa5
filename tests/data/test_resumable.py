"""The position layout shared by the person-search and Re-ID streams, and the seed holder."""

import itertools

import pytest

from stl_search.data.resumable import DataStreamSeed, PositionSampler


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_single_positions_interleave_ranks():
    assert _take(PositionSampler(start=8, rank=1, world_size=3), 4) == [9, 12, 15, 18]


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_batches_of_positions_go_to_ranks_in_turn_and_cover_the_stream_once(world_size):
    batch, start = 4, 2 * world_size * 4  # resumed at iteration 2
    per_rank = [
        _take(PositionSampler(start, rank, world_size, batch_size=batch), 3 * batch)
        for rank in range(world_size)
    ]
    for rank, positions in enumerate(per_rank):
        for it in range(3):
            g = (2 + it) * world_size + rank
            assert positions[it * batch : (it + 1) * batch] == list(
                range(g * batch, (g + 1) * batch)
            )
    union = sorted(p for positions in per_rank for p in positions)
    assert union == list(range(start, start + 3 * batch * world_size))


def test_bad_rank_or_batch_size_is_an_error():
    with pytest.raises(ValueError, match="rank 2 out of range"):
        PositionSampler(rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        PositionSampler(rank=0, world_size=1, batch_size=0)


def test_stream_seed_round_trips_through_its_state_dict():
    resumed = DataStreamSeed(0)
    resumed.load_state_dict(DataStreamSeed(1234).state_dict())
    assert resumed.seed == 1234
