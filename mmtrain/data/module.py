"""The phase's LightningDataModule: a resumable training mixture + validation streams.

Everything that can be checked without training is checked when it is built or set up:
every shard exists and opens as a tar, every source has the fields its families need,
and epoch mode has at least one shard per reader (ranks x workers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lightning as L
from torch.utils.data import DataLoader

from mmtrain.config.schema import DataConfig, PhaseConfig
from mmtrain.data.position import DataPosition, layout_of
from mmtrain.data.readers import check_share
from mmtrain.data.sources import DataError, check_fields, expand_shards
from mmtrain.data.stream import Feed, MixtureStream, StreamOptions, ValidationStream


@dataclass
class Codec:
    """A family's side of the data contract (from its batch.py)."""

    decode: Callable[[dict], dict]
    collate: Callable[[list[dict]], dict]
    fields: dict[str, tuple[str, ...]]  # field -> extensions that can carry it
    check_source: Callable[[str, list[str]], None] = lambda source, shards: None


def family_feed(data: DataConfig, family: str, codec: Codec, split: str) -> Feed | None:
    sources: dict[str, list[str]] = {}
    for name in data.family_sources[family]:
        pattern = getattr(data.sources[name], split)
        if pattern is None:
            continue
        shards = expand_shards(pattern, what=f"data.sources.{name}.{split} (family {family})")
        check_fields(name, shards[0], family, codec.fields)
        codec.check_source(name, shards)
        sources[name] = shards
    if not sources:
        return None
    weights = {name: data.sources[name].weight for name in sources}
    return Feed(sources, codec.decode, codec.collate, weights)


class PhaseData(L.LightningDataModule):
    def __init__(self, data: DataConfig, phase: PhaseConfig, codecs: dict[str, Codec], *,
                 seed: int, limit_val_batches: int, position: DataPosition | None = None) -> None:
        super().__init__()
        self.data, self.phase, self.seed = data, phase, seed
        self.limit_val_batches = limit_val_batches
        self.position = position
        self.train_feeds = {f: family_feed(data, f, codecs[f], "train") for f in phase.families}
        for family, feed in self.train_feeds.items():
            if feed is None:
                raise DataError(f"family {family}: its sources list no training shards")
        self.val_feeds = {f: family_feed(data, f, codecs[f], "val") for f in phase.families}

    def setup(self, stage: str) -> None:
        n_slots = self.trainer.world_size * max(1, self.data.num_workers)
        for feed in self.train_feeds.values():
            for name, shards in feed.sources.items():
                check_share(name, len(shards), n_slots, self.data.sampling == "resampled")

    def stream(self, rank: int, world_size: int, global_step: int = 0) -> MixtureStream:
        d = self.data
        start = None
        if self.position is not None:
            self.position.layout = layout_of(
                world_size=world_size, num_workers=d.num_workers, batch_size=d.batch_size,
                sampling=d.sampling,
                sources={f: feed.sources for f, feed in self.train_feeds.items()})
            start = self.position.stream_start(rank, global_step)
        options = StreamOptions(
            batch_size=d.batch_size, seed=self.seed, shuffle_buffer=d.shuffle_buffer,
            resampled=d.sampling == "resampled", max_skip_rate=d.max_skip_rate,
            min_samples_for_rate=d.skip_rate_min_samples)
        mix = self.phase.mix or {f: 1.0 for f in self.phase.families}
        return MixtureStream(self.train_feeds, mix, options, rank=rank, world_size=world_size,
                             start=start)

    def train_dataloader(self) -> DataLoader:
        t = self.trainer
        return DataLoader(self.stream(t.global_rank, t.world_size, t.global_step),
                          batch_size=None, num_workers=self.data.num_workers,
                          persistent_workers=False)

    def val_dataloader(self) -> list[DataLoader]:
        return [
            DataLoader(ValidationStream(f, feed, batch_size=self.data.val_batch_size,
                                        limit_batches=max(1, self.limit_val_batches)),
                       batch_size=None)
            for f, feed in self.val_feeds.items() if feed is not None
        ]
