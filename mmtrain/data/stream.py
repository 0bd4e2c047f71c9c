"""The batch stream: families mixed by weight, split across ranks and workers, resumable.

Batch `b` of a rank comes from reader slot `b % workers` (the DataLoader takes batches
from its workers in turn) and its family is drawn from the mix with an RNG keyed by `b`
alone, so every DDP rank steps the same family at the same step. Each slot owns one
FamilyPipeline per family over its disjoint share of the shards (rank x workers slots in
all, see readers.py).

Every batch carries a `_position` (a SlotPosition: the producing slot's state right after
it), so the trainer can record the position of the batches it actually trained on, not
of the ones the DataLoader prefetched. Restarting the stream from those positions
(`StreamStart`) continues with exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from mmtrain.data.pipeline import FamilyPipeline
from mmtrain.data.shards import BadSample, Sample, ShardReadError, read_shard


@dataclass
class Feed:
    """One family's data: its sources (name -> shards, weight) and its codec."""

    sources: dict[str, list[str]]
    decode: Callable[[Sample], Sample]  # raises BadSample for an unusable sample
    collate: Callable[[list[Sample]], dict]
    weights: dict[str, float] = field(default_factory=dict)  # default: equal


@dataclass
class SlotPosition:
    """Travels with a batch (a plain class, so DataLoader collation leaves it alone)."""

    slot: int
    batch: int  # the batch index (per rank) this state follows
    families: dict[str, dict]  # family -> FamilyPipeline.state_dict()
    counts: dict[str, dict[str, int]]  # family -> FamilyPipeline.counts()


@dataclass
class StreamStart:
    """Where a rank's stream starts: the next batch index and the saved slot states."""

    next_batch: int = 0
    slots: dict[int, dict[str, dict]] = field(default_factory=dict)  # slot -> family -> state
    first_epoch: int = 0  # for slots without a saved state (a re-sharded resume)


@dataclass
class StreamOptions:
    batch_size: int
    seed: int
    shuffle_buffer: int = 0
    resampled: bool = False
    max_skip_rate: float = 0.1
    min_samples_for_rate: int = 200
    max_epochs: int | None = None  # None: endless; N: a finite stream of N epochs


class MixtureStream(IterableDataset):
    def __init__(self, feeds: dict[str, Feed], mix: dict[str, float], options: StreamOptions,
                 *, rank: int = 0, world_size: int = 1, start: StreamStart | None = None) -> None:
        self.feeds, self.o = feeds, options
        self.rank, self.world_size = rank, world_size
        self.start = start or StreamStart()
        self.families = sorted(mix)
        self.weights = np.array([mix[f] for f in self.families], dtype=np.float64)

    def family_of(self, batch_index: int, live: list[str] | None = None) -> str:
        names = live or self.families
        if len(names) == 1:
            return names[0]
        p = np.array([self.weights[self.families.index(n)] for n in names])
        rng = np.random.default_rng([self.o.seed, batch_index, 7])
        return names[int(rng.choice(len(names), p=p / p.sum()))]

    def pipelines(self, slot: int, workers: int) -> dict[str, FamilyPipeline]:
        o = self.o
        out = {}
        for family in self.families:
            feed = self.feeds[family]
            weights = {s: feed.weights.get(s, 1.0) for s in feed.sources}
            out[family] = FamilyPipeline(
                family, feed.sources, weights, feed.decode, seed=o.seed,
                slot=self.rank * workers + slot, n_slots=self.world_size * workers,
                resampled=o.resampled, shuffle_buffer=o.shuffle_buffer,
                max_skip_rate=o.max_skip_rate, min_samples_for_rate=o.min_samples_for_rate,
                max_epochs=o.max_epochs, first_epoch=self.start.first_epoch)
        return out

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        index = self.start.next_batch + worker  # the first batch this worker produces
        slot = index % workers
        pipes = self.pipelines(slot, workers)
        for family, state in self.start.slots.get(slot, {}).items():
            pipes[family].load_state_dict(state)
        live = list(self.families)
        while live:
            family = self.family_of(index, live if self.o.max_epochs else None)
            samples = []
            while len(samples) < self.o.batch_size:
                if (sample := pipes[family].next_sample()) is None:
                    break
                samples.append(sample)
            if not samples:  # only a finite stream runs dry
                live.remove(family)
                continue
            position = SlotPosition(
                slot, index, {f: p.state_dict() for f, p in pipes.items()},
                {f: p.counts() for f, p in pipes.items()})
            yield {"family": family, **self.feeds[family].collate(samples), "_position": position}
            index += workers


class ValidationStream(IterableDataset):
    """A finite pass over validation shards in order (every rank reads the same batches,
    so sample-based metrics need no gathering). Bad samples and shard tails are skipped."""

    def __init__(self, family: str, feed: Feed, *, batch_size: int, limit_batches: int) -> None:
        self.family, self.feed = family, feed
        self.batch_size, self.limit_batches = batch_size, limit_batches

    def _decoded(self) -> Iterator[Sample]:
        for shards in self.feed.sources.values():
            for url in shards:
                try:
                    for _, raw in read_shard(url):
                        try:
                            yield self.feed.decode(raw)
                        except BadSample:
                            continue
                except ShardReadError:
                    continue

    def __iter__(self) -> Iterator[dict]:
        batch: list[Sample] = []
        count = 0
        for sample in self._decoded():
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield {"family": self.family, **self.feed.collate(batch)}
                batch, count = [], count + 1
                if count >= self.limit_batches:
                    return
        if batch:
            yield {"family": self.family, **self.feed.collate(batch)}
