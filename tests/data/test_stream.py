"""The batch stream: deterministic, shuffled, mixed by weight, exactly resumable from the
position each batch carries."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from mmtrain.data.sources import expand_shards
from mmtrain.data.stream import Feed, MixtureStream, StreamOptions, StreamStart
from mmtrain.families.t2i import batch as t2i_batch
from tests.data.shardkit import key_collate, key_decode, write_shards


def t2i_feed(world: Path) -> Feed:
    shards = expand_shards(str(world / "scenes" / "train-*.tar"), what="test")
    return Feed({"scenes": shards}, t2i_batch.decoder(16), t2i_batch.collate)


def stream(feeds, mix=None, *, rank=0, world_size=1, start=None, **options) -> MixtureStream:
    o = StreamOptions(**{"batch_size": 8, "seed": 3, "shuffle_buffer": 32, **options})
    return MixtureStream(feeds, mix or {f: 1.0 for f in feeds}, o, rank=rank,
                         world_size=world_size, start=start)


def take(s: MixtureStream, n: int | None, workers: int = 0) -> list[dict]:
    loader = DataLoader(s, batch_size=None, num_workers=workers)
    return list(itertools.islice(loader, n))


def start_after(batches: list[dict]) -> StreamStart:
    """What DataPosition saves after training on `batches`: each slot's latest state."""
    slots = {b["_position"].slot: b["_position"].families for b in batches}
    return StreamStart(next_batch=batches[-1]["_position"].batch + 1, slots=slots)


def keys(batches: list[dict]) -> list[list[str]]:
    return [b["keys"] for b in batches]


@pytest.fixture
def shards(tmp_path) -> list[str]:
    return write_shards(tmp_path / "a", [13, 9, 16, 11, 7, 12])


def test_same_seed_same_batches_shuffled_and_decoded(small_world):
    first, again = take(stream({"t2i": t2i_feed(small_world)}), 4), \
        take(stream({"t2i": t2i_feed(small_world)}), 4)
    assert all(torch.equal(a["pixels"], b["pixels"]) and a["captions"] == b["captions"]
               for a, b in zip(first, again, strict=True))
    assert first[0]["pixels"].shape == (8, 3, 16, 16)
    assert -1.0 <= first[0]["pixels"].min() and first[0]["pixels"].max() <= 1.0
    other_seed = take(stream({"t2i": t2i_feed(small_world)}, seed=4), 1)
    assert other_seed[0]["captions"] != first[0]["captions"]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("k", [1, 5, 14])
def test_resume_from_the_saved_position_gives_the_identical_remainder(shards, workers, k):
    feeds = {"f": Feed({"a": shards}, key_decode, key_collate)}
    full = take(stream(feeds), 24, workers)
    resumed = take(stream(feeds, start=start_after(full[:k])), 24 - k, workers)
    assert keys(resumed) == keys(full[k:])  # k=14 crosses an epoch boundary (68 samples)


def test_resume_restores_the_shuffle_buffer_and_source_mix(tmp_path):
    a = write_shards(tmp_path / "a", [20, 20, 20])
    b = write_shards(tmp_path / "b", [15, 15], prefix="b")
    feeds = {"f": Feed({"a": a, "b": b}, key_decode, key_collate, {"a": 2.0, "b": 1.0})}
    full = take(stream(feeds, shuffle_buffer=64), 20)
    resumed = take(stream(feeds, shuffle_buffer=64, start=start_after(full[:7])), 13)
    assert keys(resumed) == keys(full[7:])


def test_sources_mix_by_weight(tmp_path):
    a = write_shards(tmp_path / "a", [50] * 4)
    b = write_shards(tmp_path / "b", [50] * 4, prefix="b")
    feeds = {"f": Feed({"a": a, "b": b}, key_decode, key_collate, {"a": 3.0, "b": 1.0})}
    drawn = [k for batch in take(stream(feeds, shuffle_buffer=0), 100) for k in batch["keys"]]
    share_a = sum(k.startswith("train") for k in drawn) / len(drawn)
    assert abs(share_a - 0.75) < 0.03, share_a  # 800 draws: 3 standard deviations is 0.046


def test_families_mix_by_weight_and_every_rank_steps_the_same_family(shards):
    two = {"a": Feed({"s": shards}, key_decode, key_collate),
           "b": Feed({"s": shards}, key_decode, key_collate)}
    out = take(stream(two, {"a": 3.0, "b": 1.0}), 200)
    share = sum(b["family"] == "a" for b in out) / len(out)
    assert 0.65 < share < 0.85
    other_rank = take(stream(two, {"a": 3.0, "b": 1.0}, rank=1, world_size=2), 50)
    assert [b["family"] for b in out[:50]] == [b["family"] for b in other_rank]


def test_finite_epochs_see_every_sample_once_per_epoch_in_a_new_order(shards):
    feeds = {"f": Feed({"a": shards}, key_decode, key_collate)}
    seen = [k for b in take(stream(feeds, max_epochs=2), None) for k in b["keys"]]
    assert Counter(seen) == Counter({k: 2 for k in set(seen)}) and len(set(seen)) == 68
    # Without a shuffle buffer (which spans the boundary) the epochs split cleanly.
    seen = [k for b in take(stream(feeds, max_epochs=2, shuffle_buffer=0), None) for k in b["keys"]]
    first, second = seen[:68], seen[68:]
    assert set(first) == set(second) and first != second


def test_resampled_mode_is_endless_deterministic_and_needs_few_shards(tmp_path):
    one = write_shards(tmp_path / "one", [5])
    feeds = {"f": Feed({"a": one}, key_decode, key_collate)}
    a = take(stream(feeds, resampled=True, batch_size=4), 10, workers=2)
    b = take(stream(feeds, resampled=True, batch_size=4), 10, workers=2)
    assert keys(a) == keys(b) and len(a) == 10  # 2 readers over 1 shard, 40 samples from 5


def test_pipe_urls_stream_like_local_files(shards):
    local = {"f": Feed({"a": shards}, key_decode, key_collate)}
    piped = {"f": Feed({"a": [f"pipe:cat {s}" for s in shards]}, key_decode, key_collate)}
    assert keys(take(stream(piped), 6)) == keys(take(stream(local), 6))
