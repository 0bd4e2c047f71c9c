"""Bad data: skipped and counted per reason, or refused before training with the fix."""

from __future__ import annotations

import logging

import pytest

from mmtrain.config.schema import DataConfig, PhaseConfig, SourceConfig
from mmtrain.data.module import Codec, PhaseData
from mmtrain.data.pipeline import FamilyPipeline
from mmtrain.data.position import DataPosition
from mmtrain.data.sources import DataError, check_fields, expand_shards
from mmtrain.data.stream import Feed
from mmtrain.families.t2i import batch as t2i_batch
from tests.data.shardkit import png, truncate, write_shards
from tests.data.test_stream import stream, take

T2I = Codec(t2i_batch.decoder(8), t2i_batch.collate, t2i_batch.FIELDS)


def t2i(shards) -> dict[str, Feed]:
    return {"t2i": Feed({"s": shards}, T2I.decode, T2I.collate)}


def test_corrupt_samples_are_skipped_counted_and_logged(tmp_path, caplog):
    broken = {"train-0-3": "image", "train-1-2": "caption", "train-2-5": "image"}
    shards = write_shards(tmp_path, [10, 10, 10, 10], broken=broken)
    truncate(shards[3], keep=0.45)  # ends inside a member: about 4 samples survive
    pipeline = FamilyPipeline("t2i", {"s": shards}, {"s": 1.0}, T2I.decode, seed=0, slot=0,
                              n_slots=1, max_epochs=1)
    with caplog.at_level(logging.WARNING):
        decoded = list(iter(pipeline.next_sample, None))
    counts = pipeline.counts()
    assert counts["skipped/corrupt_image"] == 2 and counts["skipped/missing_caption"] == 1
    assert counts["unreadable_shards"] == 1
    assert len(decoded) == counts["seen"] - 3 and 31 <= counts["seen"] <= 38  # shard 3 cut short
    assert "train-0-3" in caplog.text and "train-000000.tar" in caplog.text  # key and shard
    assert "train-000003.tar" in caplog.text


def test_a_run_on_mostly_broken_data_stops_with_a_clear_message(tmp_path):
    broken = {f"train-0-{i}": "image" for i in range(0, 40, 2)}  # half of the samples
    shards = write_shards(tmp_path, [40], broken=broken)
    with pytest.raises(DataError, match=r"max_skip_rate=0.1.*inspect") as err:
        take(stream(t2i(shards), batch_size=4, min_samples_for_rate=20), 20)
    assert "corrupt_image" in str(err.value)


def test_a_source_whose_shards_hold_no_samples_fails_instead_of_hanging(tmp_path):
    shards = write_shards(tmp_path, [3, 3], broken={f"train-{s}-{i}": "caption"
                                                    for s in range(2) for i in range(3)})
    with pytest.raises(DataError, match="max_skip_rate"):
        take(stream(t2i(shards), batch_size=2, min_samples_for_rate=1), 1)
    empty = tmp_path / "empty"
    write_shards(empty, [0, 0])
    with pytest.raises(DataError, match="holds no samples"):
        expand_shards(str(empty / "*.tar"), what="data.sources.x.train")


def test_a_source_missing_a_field_is_named_before_training(tmp_path):
    import webdataset as wds

    path = tmp_path / "no-captions-000000.tar"
    with wds.TarWriter(str(path)) as tar:
        tar.write({"__key__": "a", "png": png(0), "json": b"{}"})
    with pytest.raises(DataError) as err:
        check_fields("laion", str(path), "t2i", t2i_batch.FIELDS)
    msg = str(err.value)
    assert "laion" in msg and "caption (one of .txt, .caption)" in msg and "json, png" in msg


def phase_data(tmp_path, shards: int, workers: int) -> PhaseData:
    write_shards(tmp_path / "d", [4] * shards)
    data = DataConfig(root=str(tmp_path), num_workers=workers, batch_size=2, shuffle_buffer=0,
                      sources={"s": SourceConfig(train=str(tmp_path / "d" / "train-*.tar"))},
                      family_sources={"t2i": ["s"]})
    return PhaseData(data, PhaseConfig(name="p", families=["t2i"]), {"t2i": T2I}, seed=0,
                     limit_val_batches=1, position=DataPosition())


def test_more_readers_than_shards_is_refused_before_training(tmp_path):
    data = phase_data(tmp_path, shards=3, workers=2)
    data.trainer = type("T", (), {"world_size": 2})()
    with pytest.raises(DataError, match=r"3 shard\(s\) for 4 readers.*sampling=resampled"):
        data.setup("fit")


def test_a_changed_layout_is_refused_or_resharded_on_request(tmp_path):
    data = phase_data(tmp_path, shards=4, workers=2)
    first = take(data.stream(rank=0, world_size=1), 3, workers=2)
    saver = data.position
    for batch in first:
        saver.on_train_batch_start(None, None, batch, 0)
    checkpoint: dict = {}
    saver.on_save_checkpoint(None, None, checkpoint)

    data.data.num_workers = 1
    data.position.on_load_checkpoint(None, None, checkpoint)
    with pytest.raises(DataError, match=r"num_workers 2 -> 1.*reshard_on_resume"):
        data.stream(rank=0, world_size=1)

    data.position = DataPosition(reshard_on_resume=True)
    data.position.on_load_checkpoint(None, None, checkpoint)
    resharded = data.stream(rank=0, world_size=1)
    assert resharded.start.first_epoch == 1 and resharded.start.next_batch == 3
    assert take(resharded, 1)[0]["_position"].families["t2i"]["readers"]["s"]["epoch"] == 1
