"""A deterministic, resumable stream of batches mixed across families.

The sequence of batches a rank sees is a pure function of (seed, rank, world size,
worker count, shard lists, mix): batch `b` comes from data slot `b % workers`, its family
is drawn from the mix with an RNG keyed by `b` (the same on every rank, so DDP ranks step
the same family together), and each slot reads its own disjoint share of the shards,
reshuffled every pass. Resuming at batch `start` replays and drops the batches before it,
so the remainder is identical to an uninterrupted run.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.tariterators import tarfile_samples

from mmtrain.data.sources import DataError

Sample = dict[str, object]


@dataclass
class Feed:
    """One family's data: its shards and how to turn raw samples into a batch."""

    shards: list[str]
    decode: Callable[[Sample], Sample | None]  # None: the sample is unusable, skip it
    collate: Callable[[list[Sample]], dict]


def _key(name: str) -> int:
    return zlib.crc32(name.encode())


def shuffled(samples: Iterator[Sample], size: int, rng: np.random.Generator) -> Iterator[Sample]:
    """A shuffle buffer: holds `size` samples and yields a random one per new arrival."""
    buffer: list[Sample] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        i = int(rng.integers(size))
        buffer[i], sample = sample, buffer[i]
        yield sample
    rng.shuffle(buffer)
    yield from buffer


class MixtureStream(IterableDataset):
    def __init__(
        self,
        feeds: dict[str, Feed],
        mix: dict[str, float],
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle_buffer: int = 0,
        start_batch: int = 0,
    ) -> None:
        self.feeds, self.batch_size, self.seed = feeds, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.shuffle_buffer, self.start_batch = shuffle_buffer, start_batch
        self.families = sorted(mix)
        weights = np.array([mix[f] for f in self.families], dtype=np.float64)
        self.probs = weights / weights.sum()

    def family_of(self, batch_index: int) -> str:
        if len(self.families) == 1:
            return self.families[0]
        rng = np.random.default_rng([self.seed, batch_index, 7])
        return self.families[int(rng.choice(len(self.families), p=self.probs))]

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        slot = (self.start_batch + worker) % workers  # the data slot this worker plays
        n_slots = self.world_size * workers
        samples = {
            f: self._samples(f, self.rank * workers + slot, n_slots) for f in self.families
        }
        index = slot
        while True:
            family = self.family_of(index)
            batch = [self._next_usable(samples[family], family) for _ in range(self.batch_size)]
            if index >= self.start_batch:
                yield {"family": family, **self.feeds[family].collate(batch)}
            index += workers

    def _next_usable(self, samples: Iterator[Sample], family: str) -> Sample:
        for raw in samples:
            decoded = self.feeds[family].decode(raw)
            if decoded is not None:
                return decoded
        raise AssertionError("unreachable: sample streams are infinite")

    def _samples(self, family: str, slot: int, n_slots: int) -> Iterator[Sample]:
        shards = self.feeds[family].shards
        if len(shards) < n_slots:
            raise DataError(
                f"family {family}: {len(shards)} shard(s) for {n_slots} readers "
                f"({self.world_size} rank(s) x workers); every reader needs at least one "
                "shard: write smaller shards or use fewer data workers"
            )
        epoch = 0
        while True:
            rng = np.random.default_rng([self.seed, epoch, _key(family)])
            mine = [shards[i] for i in rng.permutation(len(shards))[slot::n_slots]]
            stream = tarfile_samples({"url": url} for url in mine)
            if self.shuffle_buffer:
                slot_rng = np.random.default_rng([self.seed, epoch, _key(family), slot])
                stream = shuffled(stream, self.shuffle_buffer, slot_rng)
            yield from stream
            epoch += 1


class ValidationStream(IterableDataset):
    """A finite pass over validation shards in order (every rank reads the same batches,
    so sample-based metrics need no gathering)."""

    def __init__(self, family: str, feed: Feed, *, batch_size: int, limit_batches: int) -> None:
        self.family, self.feed = family, feed
        self.batch_size, self.limit_batches = batch_size, limit_batches

    def __iter__(self) -> Iterator[dict]:
        batch: list[Sample] = []
        count = 0
        for raw in tarfile_samples({"url": url} for url in self.feed.shards):
            decoded = self.feed.decode(raw)
            if decoded is None:
                continue
            batch.append(decoded)
            if len(batch) == self.batch_size:
                yield {"family": self.family, **self.feed.collate(batch)}
                batch, count = [], count + 1
                if count >= self.limit_batches:
                    return
        if batch:
            yield {"family": self.family, **self.feed.collate(batch)}
