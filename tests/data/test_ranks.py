"""2 ranks (gloo process group) x 2 data workers: every sample exactly once per epoch, and
a position saved after k batches (gathered from both ranks, as in a checkpoint) resumes
each rank to the identical remainder of its sequence."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from mmtrain.data.position import DataPosition
from mmtrain.data.stream import Feed, MixtureStream, StreamOptions
from tests.data.shardkit import key_collate, key_decode, write_shards

WORKERS, K, N = 2, 5, 14


def keys_of(stream: MixtureStream, n: int | None) -> list[dict]:
    return list(itertools.islice(DataLoader(stream, batch_size=None, num_workers=WORKERS), n))


def rank_main(rank: int, shards: list[str], out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out}.pg", rank=rank, world_size=2)
    feeds = {"f": Feed({"a": shards}, key_decode, key_collate)}

    def stream(max_epochs=None, start=None) -> MixtureStream:
        options = StreamOptions(batch_size=3, seed=5, shuffle_buffer=8, max_epochs=max_epochs)
        return MixtureStream(feeds, {"f": 1.0}, options, rank=rank, world_size=2, start=start)

    epoch = [k for b in keys_of(stream(max_epochs=1), None) for k in b["keys"]]
    full = keys_of(stream(), N)
    saver = DataPosition()
    for batch in full[:K]:  # what the trainer consumed before the checkpoint
        saver.on_train_batch_start(None, None, batch, 0)
    checkpoint: dict = {}
    saver.on_save_checkpoint(None, None, checkpoint)  # gathers both ranks' positions
    loader = DataPosition()
    loader.on_load_checkpoint(None, None, checkpoint)
    loader.layout = saver.layout
    resumed = keys_of(stream(start=loader.stream_start(rank, global_step=K)), N - K)
    result = {"epoch": epoch, "full": [b["keys"] for b in full],
              "resumed": [b["keys"] for b in resumed]}
    gathered = [None, None]
    dist.all_gather_object(gathered, result)
    if rank == 0:
        Path(out).write_text(json.dumps(gathered))
    dist.destroy_process_group()


def test_two_ranks_two_workers_exactly_once_and_exact_resume(tmp_path):
    shards = write_shards(tmp_path / "d", [9, 14, 6, 11, 8, 13, 10, 7, 12])  # 90 samples
    out = str(tmp_path / "result.json")
    mp.spawn(rank_main, args=(shards, out), nprocs=2, join=True)
    ranks = json.loads(Path(out).read_text())

    seen = Counter(k for r in ranks for k in r["epoch"])
    assert len(seen) == 90 and set(seen.values()) == {1}  # all 90, none twice
    assert set(ranks[0]["epoch"]).isdisjoint(ranks[1]["epoch"])
    for r in ranks:
        assert r["resumed"] == r["full"][K:]
    assert ranks[0]["full"] != ranks[1]["full"]
