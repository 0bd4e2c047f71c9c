"""`python -m mmtrain.data inspect SHARDS`: what a set of webdataset shards holds.

Streams every sample once and reports per shard and in total: samples, bytes, fields
(extensions) and how many samples carry each, example keys; bad samples by reason (a
family's own decoder with `family=`, generic per-field decoding without), unreadable
shards, and mismatches with a `shards.json` / synthetic-world `manifest.json` next to the
shards. The CLI also writes a contact sheet PNG. See docs/inspect.md.

    from mmtrain.data.inspect import inspect_shards
    report = inspect_shards("/data/train-{000000..000099}.tar", family="t2i", limit=10_000)
"""

from mmtrain.data.inspect.report import BadExample, ManifestMismatch, Report, ShardReport
from mmtrain.data.inspect.scan import inspect_shards
from mmtrain.data.inspect.sheet import SheetCollector

__all__ = ["BadExample", "ManifestMismatch", "Report", "ShardReport", "SheetCollector",
           "inspect_shards"]
