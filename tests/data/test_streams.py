"""Streams: batchify layout, disjoint contiguous DDP shards, the variable-BPTT rule, window iteration."""

from __future__ import annotations

import statistics

import pytest
import torch
from torch.utils.data import DataLoader

from alstm_lightning.data import ResumableWindowLoader, StreamWindows, batchify, bptt_schedule, shard_streams


def test_batchify_cuts_contiguous_streams_and_drops_the_tail():
    ids = torch.arange(23)
    streams = batchify(ids, 3)
    assert streams.shape == (7, 3)
    for b in range(3):
        assert streams[:, b].tolist() == list(range(7 * b, 7 * b + 7))  # tokens 21, 22 dropped


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shards_are_disjoint_contiguous_and_cover_the_global_layout(world_size):
    ids = torch.arange(6 * 11 + 4)
    streams = batchify(ids, 6)  # (11, 6)
    per_rank = 6 // world_size
    seen = []
    for rank in range(world_size):
        shard = shard_streams(streams, rank, world_size)
        assert shard.shape == (11, per_rank)
        # Read stream by stream, a rank's data is one contiguous piece of the corpus.
        flat = shard.t().reshape(-1)
        start = rank * per_rank * 11
        assert flat.tolist() == list(range(start, start + per_rank * 11))
        seen.append(flat)
    everything = torch.cat(seen)
    assert everything.unique().numel() == everything.numel() == 66  # disjoint, and all of it


def test_stream_errors():
    with pytest.raises(ValueError, match="batch_size"):
        batchify(torch.arange(5), 3)
    with pytest.raises(ValueError, match="ids must be 1-d"):
        batchify(torch.zeros(4, 4, dtype=torch.long), 2)
    with pytest.raises(TypeError, match="batch_size"):
        batchify(torch.arange(10), 2.0)
    streams = batchify(torch.arange(40), 4)
    with pytest.raises(ValueError, match="world_size=3"):
        shard_streams(streams, 0, 3)
    with pytest.raises(ValueError, match="rank"):
        shard_streams(streams, 2, 2)


def test_fixed_schedule():
    assert bptt_schedule(24, 7, variable=False) == [7, 7, 7, 2]
    assert bptt_schedule(22, 7, variable=False) == [7, 7, 7]


def test_variable_schedule_follows_the_rule():
    bptt = 70
    lengths = bptt_schedule(300_000, bptt, variable=True, seed=3, epoch=1)
    assert sum(lengths) == 300_000 - 1
    body = lengths[:-1]  # the last window is cut to what is left
    assert min(body) >= 5 and min(lengths) >= 1
    # Two populations: around bptt (p = 0.95) and around bptt / 2, each with std 5 (int() floors).
    full = [length for length in body if length > 0.75 * bptt]
    half = [length for length in body if length <= 0.75 * bptt]
    assert 0.035 < len(half) / len(body) < 0.065
    assert abs(statistics.mean(full) - (bptt - 0.5)) < 0.3
    assert abs(statistics.mean(half) - (bptt / 2 - 0.5)) < 1.5
    assert 4.5 < statistics.stdev(full) < 5.5


def test_variable_schedule_is_clamped_at_five():
    lengths = bptt_schedule(5_000, 6, variable=True)[:-1]
    assert min(lengths) == 5  # normal(6, 5) and normal(3, 5) often fall below 5


def test_variable_schedule_is_reproducible_per_seed_and_epoch():
    schedule = bptt_schedule(5_000, 30, seed=1, epoch=2)
    assert bptt_schedule(5_000, 30, seed=1, epoch=2) == schedule
    assert bptt_schedule(5_000, 30, seed=1, epoch=3) != schedule
    assert bptt_schedule(5_000, 30, seed=2, epoch=2) != schedule


def test_windows_continue_the_streams_and_shift_targets():
    streams = batchify(torch.arange(3 * 50), 3)  # (50, 3)
    dataset = StreamWindows(streams, bptt=8, variable_bptt=True, seed=0)
    batches = list(DataLoader(dataset, batch_size=None))
    assert len(batches) == len(dataset) == len(dataset.schedule())
    assert [input.size(0) for input, _ in batches] == dataset.schedule()
    inputs = torch.cat([input for input, _ in batches])
    targets = torch.cat([target for _, target in batches])
    torch.testing.assert_close(inputs, streams[:-1])
    torch.testing.assert_close(targets, streams[1:])


def test_set_epoch_changes_the_schedule():
    dataset = StreamWindows(batchify(torch.arange(2 * 400), 2), bptt=20, variable_bptt=True, seed=0)
    first = dataset.schedule()
    dataset.set_epoch(1)
    assert dataset.schedule() == bptt_schedule(400, 20, True, 0, 1) != first
    assert [input.size(0) for input, _ in dataset] == dataset.schedule()


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_take_equal_steps_and_together_match_one_process(world_size):
    streams = batchify(torch.arange(6 * 300 + 5), 6)
    whole = list(StreamWindows(streams, bptt=12, variable_bptt=True, seed=4))
    per_rank = [
        list(StreamWindows(shard_streams(streams, rank, world_size), 12, True, 4)) for rank in range(world_size)
    ]
    assert {len(batches) for batches in per_rank} == {len(whole)}
    for step, (input, target) in enumerate(whole):
        torch.testing.assert_close(torch.cat([batches[step][0] for batches in per_rank], dim=1), input)
        torch.testing.assert_close(torch.cat([batches[step][1] for batches in per_rank], dim=1), target)


def test_window_errors():
    with pytest.raises(ValueError, match="streams must be"):
        StreamWindows(torch.arange(10), bptt=3)
    with pytest.raises(TypeError, match="bptt"):
        StreamWindows(torch.zeros(4, 2, dtype=torch.long), bptt=3.5)
    with pytest.raises(TypeError, match="variable_bptt"):
        StreamWindows(torch.zeros(4, 2, dtype=torch.long), bptt=3, variable_bptt=1)


def test_skip_next_skips_the_first_windows_of_one_iteration_only():
    windows = StreamWindows(torch.arange(40).view(20, 2), bptt=4)
    whole = [input.clone() for input, _ in windows]
    windows.skip_next(2)
    resumed = [input for input, _ in windows]
    assert len(resumed) == len(whole) - 2 and all(torch.equal(a, b) for a, b in zip(resumed, whole[2:]))
    assert len(list(windows)) == len(whole)  # the next iteration is whole again
    windows.skip_next(len(whole))
    assert list(windows) == []
    with pytest.raises(ValueError, match=rf"StreamWindows.skip_next: windows must be in \[0, {len(whole)}\], got -1"):
        windows.skip_next(-1)


def test_resumable_loader_saves_the_windows_done_and_skips_them_when_loaded():
    done = [3]
    loader = ResumableWindowLoader(StreamWindows(torch.arange(40).view(20, 2), bptt=4), lambda: done[0])
    assert loader.state_dict() == {
        "windows_done": 3,
        "layout": {"streams": [20, 2], "world_size": 1, "bptt": 4, "variable_bptt": False, "seed": 0, "epoch": 0},
    }
    first_inputs = [input.clone() for input, _ in loader]
    resumed = ResumableWindowLoader(StreamWindows(torch.arange(40).view(20, 2), bptt=4), lambda: 0)
    resumed.load_state_dict(loader.state_dict())
    assert [input.tolist() for input, _ in resumed] == [input.tolist() for input in first_inputs[3:]]
