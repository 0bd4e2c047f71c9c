"""The phase's LightningDataModule: a resumable training mixture + validation streams."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from mmtrain.config.schema import DataConfig, PhaseConfig
from mmtrain.data.sources import DataError, expand_shards
from mmtrain.data.stream import Feed, MixtureStream, ValidationStream


def family_feeds(data: DataConfig, family: str, decode, collate, split: str) -> Feed | None:
    shards: list[str] = []
    for name in data.family_sources[family]:
        pattern = getattr(data.sources[name], split)
        if pattern is None:
            continue
        shards += expand_shards(pattern, what=f"data.sources.{name}.{split} (family {family})")
    return Feed(shards, decode, collate) if shards else None


class PhaseData(L.LightningDataModule):
    def __init__(self, data: DataConfig, phase: PhaseConfig, codecs: dict, *, seed: int,
                 limit_val_batches: int) -> None:
        """codecs: family -> (decode, collate) from the family's batch.py."""
        super().__init__()
        self.data, self.phase, self.seed = data, phase, seed
        self.limit_val_batches = limit_val_batches
        self.train_feeds = {f: family_feeds(data, f, *codecs[f], "train") for f in phase.families}
        for family, feed in self.train_feeds.items():
            if feed is None:
                raise DataError(f"family {family}: its sources list no training shards")
        self.val_feeds = {f: family_feeds(data, f, *codecs[f], "val") for f in phase.families}

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        # Batches already consumed in this phase (non-zero when resuming mid-phase).
        start = trainer.global_step * trainer.accumulate_grad_batches
        mix = self.phase.mix or {f: 1.0 for f in self.phase.families}
        stream = MixtureStream(
            self.train_feeds, mix, batch_size=self.data.batch_size, seed=self.seed,
            rank=trainer.global_rank, world_size=trainer.world_size,
            shuffle_buffer=self.data.shuffle_buffer, start_batch=start,
        )
        return DataLoader(stream, batch_size=None, num_workers=self.data.num_workers,
                          persistent_workers=False)

    def val_dataloader(self) -> list[DataLoader]:
        return [
            DataLoader(ValidationStream(f, feed, batch_size=self.data.val_batch_size,
                                        limit_batches=max(1, self.limit_val_batches)),
                       batch_size=None)
            for f, feed in self.val_feeds.items() if feed is not None
        ]
