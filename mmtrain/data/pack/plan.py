"""The plan: ordered samples, their keys and splits, and the shard boundaries.

Everything here is a pure function of the inputs and the options, so a rerun computes
the same plan and its fingerprint tells whether finished shards can be kept.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from mmtrain.data.manifest import FORMAT, VERSION
from mmtrain.data.pack.common import Item, PackError, Skips, tar_bytes
from mmtrain.data.pack.kinds import KINDS
from mmtrain.data.pack.options import PackOptions

SPLITS = ("train", "val")
KEY_DIGITS = 9


@dataclass(frozen=True)
class Shard:
    split: str
    name: str
    items: tuple[int, ...]  # indices into Plan.items
    est_bytes: int  # upper bound of the finished tar's size


@dataclass
class Plan:
    items: list[Item]
    keys: list[str]
    shards: list[Shard]
    skips: Skips  # found while planning
    fingerprint: str


def split_of(source: str, val_fraction: float) -> str:
    """A hash of the sample's source path, not of its position: adding inputs never moves
    an existing sample between train and val."""
    if val_fraction <= 0:
        return "train"
    value = int.from_bytes(hashlib.sha256(source.encode()).digest()[:8], "big") / 2**64
    return "val" if value < val_fraction else "train"


def shard_name(prefix: str, split: str, index: int) -> str:
    return f"{prefix}-{split}-{index:06d}.tar" if prefix else f"{split}-{index:06d}.tar"


def _cut(
    indices: list[int], items: list[Item], opts: PackOptions, split: str, skips: Skips
) -> list[Shard]:
    """Greedy shards: a shard closes when the next sample would break a limit."""
    limit_n, limit_bytes = opts.shard_size, opts.max_shard_bytes
    shards: list[Shard] = []
    current: list[int] = []
    members = 0

    def close() -> None:
        if current:
            name = shard_name(opts.prefix, split, len(shards))
            shards.append(Shard(split, name, tuple(current), tar_bytes(members)))

    for i in indices:
        size = items[i].est_bytes
        if limit_bytes is not None and tar_bytes(size) > limit_bytes:
            skips.add("larger_than_max_shard_bytes", items[i].source)
            continue
        full = limit_n is not None and len(current) >= limit_n
        if full or (limit_bytes is not None and tar_bytes(members + size) > limit_bytes):
            close()
            current, members = [], 0
        current.append(i)
        members += size
    close()
    return shards


def _fingerprint(opts: PackOptions, items: list[Item], keys: list[str], shards: list[Shard]) -> str:
    digest = hashlib.sha256()
    head = {
        "format": FORMAT,
        "version": VERSION,
        "kind": opts.kind,
        "options": opts.content_options(),
    }
    digest.update(json.dumps(head, sort_keys=True).encode())
    for key, item in zip(keys, items, strict=True):
        row = [key, item.source, item.stamps, item.data]
        digest.update(json.dumps(row, sort_keys=True).encode())
    for shard in shards:
        digest.update(json.dumps([shard.name, shard.items]).encode())
    return digest.hexdigest()


def make_plan(opts: PackOptions) -> Plan:
    if opts.kind not in KINDS:
        raise PackError(f"unknown kind {opts.kind!r}; valid kinds: {', '.join(KINDS)}")
    items, skips = KINDS[opts.kind].scan(opts)
    if not items:
        found = ", ".join(f"{n} {r}" for r, n in skips.counts.most_common()) or "nothing"
        raise PackError(
            f"no samples to pack in {opts.input} (skipped: {found}); "
            f"check the path and the `{opts.kind}` layout in docs/packing.md"
        )
    keys = [f"{i:0{KEY_DIGITS}d}" for i in range(len(items))]
    by_split: dict[str, list[int]] = {split: [] for split in SPLITS}
    for i, item in enumerate(items):
        by_split[split_of(item.source, opts.val_fraction)].append(i)
    shards = [s for split in SPLITS for s in _cut(by_split[split], items, opts, split, skips)]
    if not shards:
        raise PackError(
            f"every sample is larger than --max-shard-bytes {opts.max_shard_bytes}; raise the limit"
        )
    return Plan(items, keys, shards, skips, _fingerprint(opts, items, keys, shards))
