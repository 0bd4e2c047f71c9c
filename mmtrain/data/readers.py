"""One source's shards as one reader slot (a rank x worker pair) sees them, with a position.

Epoch mode: each epoch draws a fresh permutation of the source's shards (keyed by seed,
source and epoch) and slot `s` of `n` reads shards `perm[s::n]`. The slots' shares are
disjoint and together cover every shard, so across all ranks and workers every sample is
read exactly once per epoch. Resampled mode: slot `s` draws its i-th shard uniformly with
replacement (keyed by seed, source, slot, i): an endless stream that needs no epoch
boundary and works with fewer shards than readers.

The position is (epoch, cursor, offset): the cursor-th shard of the slot's sequence for
that epoch, `offset` samples into it. A sample's reference (epoch, cursor, index) names
it for good, so a saved shuffle buffer can be refilled by reading its samples again.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mmtrain.data.shards import Sample, ShardReadError, read_shard
from mmtrain.data.sources import DataError

log = logging.getLogger(__name__)

SampleRef = tuple[int, int, int]  # (epoch, cursor, index in shard)


def name_key(name: str) -> int:
    return zlib.crc32(name.encode())


def check_share(name: str, n_shards: int, n_slots: int, resampled: bool) -> None:
    """Epoch mode gives every reader slot its own shards: refuse too few, up front."""
    if not resampled and n_shards < n_slots:
        raise DataError(
            f"source {name}: {n_shards} shard(s) for {n_slots} readers (ranks x data "
            "workers); in epoch mode every reader needs its own shard. Use fewer "
            "data.num_workers, write smaller shards (`python -m mmtrain.data pack "
            "--shard-size`), or set data.sampling=resampled")


@dataclass
class ReaderPosition:
    epoch: int = 0
    cursor: int = 0
    offset: int = 0


class SourceReader:
    def __init__(self, name: str, shards: list[str], *, seed: int, slot: int, n_slots: int,
                 resampled: bool, max_epochs: int | None = None, first_epoch: int = 0) -> None:
        check_share(name, len(shards), n_slots, resampled)
        self.name, self.shards, self.seed = name, shards, seed
        self.slot, self.n_slots, self.resampled = slot, n_slots, resampled
        self.max_epochs = max_epochs
        self.pos = ReaderPosition(epoch=first_epoch)
        self.shard_errors = 0  # truncated or unreadable shards met by this reader

    def epoch_shards(self, epoch: int) -> list[str]:
        """The shards this slot reads in `epoch` (epoch mode)."""
        rng = np.random.default_rng([self.seed, epoch, name_key(self.name)])
        return [self.shards[i] for i in rng.permutation(len(self.shards))[self.slot::self.n_slots]]

    def shard_at(self, epoch: int, cursor: int) -> str | None:
        if self.resampled:
            rng = np.random.default_rng([self.seed, name_key(self.name), self.slot, cursor])
            return self.shards[int(rng.integers(len(self.shards)))]
        mine = self.epoch_shards(epoch)
        return mine[cursor] if cursor < len(mine) else None

    def __iter__(self) -> Iterator[tuple[SampleRef, Sample]]:
        """Endless (or `max_epochs` long) stream of (reference, raw sample) from the position on."""
        pos = self.pos
        # A resumed reader starts mid-epoch: only an epoch read from its start can prove empty.
        samples_since_progress = int(pos.cursor > 0 or pos.offset > 0)
        shards_since_progress = 0
        while self.max_epochs is None or pos.epoch < self.max_epochs:
            url = self.shard_at(pos.epoch, pos.cursor)
            if url is None:  # end of this slot's share of the epoch
                if samples_since_progress == 0:
                    raise DataError(f"source {self.name}: reader {self.slot} read a whole epoch "
                                    f"({pos.cursor} shard(s)) and found no samples")
                pos.epoch, pos.cursor, pos.offset, samples_since_progress = pos.epoch + 1, 0, 0, 0
                continue
            try:
                for index, sample in read_shard(url, start=pos.offset):
                    pos.offset = index + 1
                    samples_since_progress += 1
                    yield (pos.epoch, pos.cursor, index), sample
            except ShardReadError as err:
                self.shard_errors += 1
                log.warning("skipping the rest of shard %s (source %s): %s", url, self.name, err.cause)
            if self.resampled:
                shards_since_progress = 0 if samples_since_progress else shards_since_progress + 1
                samples_since_progress = 0
                if shards_since_progress >= max(len(self.shards), 8):
                    raise DataError(f"source {self.name}: {shards_since_progress} shards in a "
                                    "row held no readable samples")
            pos.cursor, pos.offset = pos.cursor + 1, 0

    def fetch(self, refs: list[SampleRef]) -> dict[SampleRef, Sample]:
        """Raw samples by reference (refilling a restored shuffle buffer): each shard read
        once, up to the last sample wanted from it."""
        wanted: dict[tuple[int, int], set[int]] = {}
        for epoch, cursor, index in refs:
            wanted.setdefault((epoch, cursor), set()).add(index)
        found: dict[SampleRef, Sample] = {}
        for (epoch, cursor), indices in wanted.items():
            url = self.shard_at(epoch, cursor)
            last = max(indices)
            try:
                for index, sample in read_shard(url):
                    if index in indices:
                        found[(epoch, cursor, index)] = sample
                    if index >= last:
                        break
            except ShardReadError as err:
                raise DataError(f"source {self.name}: cannot restore the saved data position, "
                                f"shard {url} changed since the checkpoint ({err.cause})") from None
        missing = [r for r in refs if r not in found]
        if missing:
            raise DataError(f"source {self.name}: cannot restore the saved data position, "
                            f"{len(missing)} sample(s) are gone from their shards (e.g. {missing[0]} "
                            "as epoch, shard cursor, index); the shards changed since the checkpoint")
        return found
