"""The shard packer: users' raw data -> webdataset shards + shards.json.

`python -m mmtrain.data pack KIND INPUT --out DIR` or `pack(kind, input, out, ...)`;
see docs/packing.md.
"""

from __future__ import annotations

import os
from typing import Any

from mmtrain.data.pack.common import PackError
from mmtrain.data.pack.kinds import KINDS as _KIND_MODULES
from mmtrain.data.pack.options import PackOptions, parse_size
from mmtrain.data.pack.writer import ShardHook, run

__all__ = ["KINDS", "PackError", "PackOptions", "pack", "parse_size"]
KINDS = tuple(_KIND_MODULES)


def pack(
    kind: str,
    input: str | os.PathLike,
    out: str | os.PathLike,
    *,
    on_shard: ShardHook | None = None,
    **options: Any,
) -> dict:
    """Packs `input` into `out` and returns the manifest (what shards.json holds).

    `options` are PackOptions fields: captions, images_root, shard_size, max_shard_bytes
    (int or '1GB'), val_fraction, prefix, max_views, view_size, background, overwrite,
    progress. `on_shard(entry)` runs after each shard is finished and recorded. Raises
    PackError for bad input or arguments. Rerunning resumes (docs/packing.md)."""
    return run(PackOptions(kind=kind, input=input, out=out, **options), on_shard=on_shard)
