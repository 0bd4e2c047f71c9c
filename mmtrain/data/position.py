"""The training stream's position in the checkpoint, and the data metrics.

`DataPosition` takes the `_position` each batch carries (see stream.py) when the trainer
starts training on that batch, so what it saves is the position after the last batch
that was trained on; Lightning's prefetching cannot put it ahead. Every rank's position
goes into the checkpoint (rank 0 writes the file, so the others are gathered first).

Resuming needs the same layout: number of ranks, data workers, batch size, sampling
mode and shard lists. A different layout is refused, unless `data.reshard_on_resume`
is set: then the stream starts the next epoch with the new layout (the rest of the
interrupted epoch is skipped; nothing is seen twice within an epoch).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter

import lightning as L
import torch.distributed as dist

from mmtrain.data.sources import DataError
from mmtrain.data.stream import SlotPosition, StreamStart

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "data_position"


def layout_of(*, world_size: int, num_workers: int, batch_size: int, sampling: str,
              sources: dict[str, dict[str, list[str]]]) -> dict:
    """What a saved position is only valid for; `sources` is family -> source -> shards."""
    digest = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()[:16]
    return {"world_size": world_size, "num_workers": max(1, num_workers),
            "batch_size": batch_size, "sampling": sampling, "shards": digest}


def gather(obj) -> list:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class DataPosition(L.Callback):
    def __init__(self, *, reshard_on_resume: bool = False) -> None:
        self.reshard_on_resume = reshard_on_resume
        self.layout: dict = {}  # set by the data module when it builds the stream (layout_of)
        self.next_batch = 0
        self.slots: dict[int, dict[str, dict]] = {}  # slot -> family -> pipeline state
        self.counts: dict[int, dict[str, dict[str, int]]] = {}  # slot -> family -> counts
        self.saved: dict | None = None

    # ---- recording ----------------------------------------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        position: SlotPosition | None = batch.pop("_position", None)
        if position is None:
            return
        self.slots[position.slot] = position.families
        self.counts[position.slot] = position.counts
        self.next_batch = position.batch + 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % trainer.log_every_n_steps or not self.counts:
            return
        per_rank = gather(self.totals())  # a collective: every rank logs at the same steps
        totals: Counter[str] = Counter()
        for counts in per_rank:
            totals.update(counts)
        metrics = {f"data/{k}": float(v) for k, v in totals.items()}
        for family in {k.split("/")[0] for k in totals}:
            seen = totals.get(f"{family}/seen", 0)
            skipped = sum(v for k, v in totals.items() if k.startswith(f"{family}/skipped/"))
            metrics[f"data/{family}/skip_rate"] = skipped / seen if seen else 0.0
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, rank_zero_only=True)

    def totals(self) -> dict[str, int]:
        """family/counter -> sum over this rank's slots."""
        out: Counter[str] = Counter()
        for per_family in self.counts.values():
            for family, counts in per_family.items():
                out.update({f"{family}/{k}": v for k, v in counts.items()})
        return dict(out)

    # ---- checkpoint ---------------------------------------------------------------------
    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        mine = {"next_batch": self.next_batch, "slots": self.slots, "counts": self.counts}
        checkpoint[CHECKPOINT_KEY] = {"layout": self.layout, "ranks": gather(mine)}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self.saved = checkpoint.get(CHECKPOINT_KEY)

    def stream_start(self, rank: int, global_step: int) -> StreamStart:
        """Where this rank's stream starts (called when the train dataloader is built)."""
        if self.saved is None:
            if global_step:
                log.warning("the checkpoint holds no data position (an older mmtrain wrote it): "
                            "the stream restarts from its beginning")
            return StreamStart()
        saved, self.saved = self.saved, None
        changed = {k: (saved["layout"].get(k), v) for k, v in self.layout.items()
                   if saved["layout"].get(k) != v}
        if not changed:
            mine = saved["ranks"][rank]
            self.next_batch, self.slots = mine["next_batch"], dict(mine["slots"])
            self.counts = dict(mine["counts"])
            return StreamStart(next_batch=self.next_batch, slots=self.slots)
        described = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
        if not self.reshard_on_resume:
            raise DataError(
                f"cannot resume the data stream exactly: its layout changed since the "
                f"checkpoint ({described}). Resume with the original ranks, data.num_workers, "
                "batch size and shards, or set data.reshard_on_resume=true to continue from "
                "the next epoch with the new layout")
        epochs = [pos["epoch"] for r in saved["ranks"] for slot in r["slots"].values()
                  for fam in slot.values() for pos in fam["readers"].values()]
        first_epoch = max(epochs, default=-1) + 1
        log.warning("data layout changed (%s): data.reshard_on_resume starts epoch %d with "
                    "the new layout", described, first_epoch)
        self.next_batch = max(r["next_batch"] for r in saved["ranks"])
        return StreamStart(next_batch=self.next_batch, first_epoch=first_epoch)
