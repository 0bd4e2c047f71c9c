"""The batch stream: deterministic, disjoint across ranks, exactly resumable, loud errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from mmtrain.data.sources import DataError, expand_shards
from mmtrain.data.stream import Feed, MixtureStream
from mmtrain.families.t2i import batch as t2i_batch


def feed(world: Path) -> Feed:
    shards = expand_shards(str(world / "scenes" / "train-*.tar"), what="test")
    return Feed(shards, t2i_batch.decoder(16), t2i_batch.collate)


def batches(world: Path, n: int, *, workers: int = 0, start: int = 0, rank: int = 0,
            world_size: int = 1, mix=None, feeds=None) -> list[dict]:
    stream = MixtureStream(feeds or {"t2i": feed(world)}, mix or {"t2i": 1.0}, batch_size=8,
                           seed=3, rank=rank, world_size=world_size, shuffle_buffer=32,
                           start_batch=start)
    loader = DataLoader(stream, batch_size=None, num_workers=workers)
    return list(itertools.islice(loader, n))


def same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x["captions"] == y["captions"] and torch.equal(x["pixels"], y["pixels"])
        for x, y in zip(a, b, strict=True))


def test_same_seed_same_batches_and_shuffled(small_world):
    first, again = batches(small_world, 6), batches(small_world, 6)
    assert same(first, again)
    assert first[0]["pixels"].shape == (8, 3, 16, 16)
    assert -1.0 <= first[0]["pixels"].min() and first[0]["pixels"].max() <= 1.0
    keys = [c for b in first for c in b["captions"]]
    assert len(set(keys)) > 20  # shuffled across the buffer, not one repeated sample


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("start", [1, 5])
def test_resume_at_any_batch_gives_the_identical_remainder(small_world, workers, start):
    full = batches(small_world, 9, workers=workers)
    resumed = batches(small_world, 9 - start, workers=workers, start=start)
    assert same(full[start:], resumed)


def test_ranks_read_disjoint_samples(small_world):
    seen = [{c for b in batches(small_world, 4, rank=r, world_size=2) for c in b["captions"]}
            for r in range(2)]
    pixels = [batches(small_world, 4, rank=r, world_size=2)[0]["pixels"] for r in range(2)]
    assert not torch.equal(pixels[0], pixels[1])
    assert seen[0] and seen[1]


def test_mixture_follows_weights_and_is_rank_invariant(small_world):
    two = {"a": feed(small_world), "b": feed(small_world)}
    out = batches(small_world, 200, feeds=two, mix={"a": 3.0, "b": 1.0})
    share = sum(b["family"] == "a" for b in out) / len(out)
    assert 0.65 < share < 0.85
    other_rank = batches(small_world, 50, feeds=two, mix={"a": 3.0, "b": 1.0}, rank=1,
                         world_size=2)
    assert [b["family"] for b in out[:50]] == [b["family"] for b in other_rank]


def test_more_readers_than_shards_is_a_clear_error(small_world):
    with pytest.raises(DataError, match="4 shard\\(s\\) for 8 readers"):
        batches(small_world, 1, rank=0, world_size=8)


def test_missing_directory_names_it_and_the_fix(tmp_path):
    with pytest.raises(DataError) as err:
        expand_shards(str(tmp_path / "nowhere" / "train-*.tar"), what="data.sources.x.train")
    msg = str(err.value)
    assert "nowhere" in msg and "does not exist" in msg and "python -m mmtrain.data synth" in msg


def test_empty_shard_is_refused(tmp_path):
    (tmp_path / "train-000000.tar").write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        expand_shards(str(tmp_path / "train-*.tar"), what="x")


@pytest.mark.parametrize("content", [b"this is not a tar archive" * 40, b"\0" * 10240])
def test_unreadable_or_sample_less_shard_is_refused(tmp_path, content):
    (tmp_path / "train-000000.tar").write_bytes(content)
    with pytest.raises(DataError, match="train-000000.tar"):
        expand_shards(str(tmp_path / "train-*.tar"), what="x")


def test_unreadable_samples_are_skipped(tmp_path, small_world):
    decode = t2i_batch.decoder(16)
    assert decode({"png": b"not an image", "txt": b"a red circle"}) is None
    assert decode({"txt": b"no image"}) is None
    good = next(iter(__import__("webdataset").WebDataset(
        feed(small_world).shards[0], shardshuffle=False)))
    assert decode(good)["pixels"].shape == (3, 16, 16)
