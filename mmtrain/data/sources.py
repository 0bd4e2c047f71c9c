"""Shard URL patterns -> concrete shard lists, with errors that say how to fix them."""

from __future__ import annotations

import glob
import os
import tarfile

import braceexpand


class DataError(ValueError):
    """Data that cannot feed a run: the message names the problem and the fix."""


def expand_shards(pattern: str, *, what: str) -> list[str]:
    """A directory, glob, brace range or `pipe:` command -> sorted shard URLs."""
    if pattern.startswith("pipe:"):
        return list(braceexpand.braceexpand(pattern))
    path = os.path.expanduser(pattern)
    if os.path.isdir(path):
        shards = sorted(glob.glob(os.path.join(path, "*.tar")))
    else:
        shards = []
        for item in braceexpand.braceexpand(path):
            matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
            shards.extend(m for m in matches if os.path.exists(m) or _missing(m, what))
    if not shards:
        parent = os.path.dirname(path.split("{")[0].split("*")[0]) or "."
        hint = (
            f"; the directory {parent} does not exist"
            if not os.path.isdir(parent) else f"; {parent} holds no matching .tar files"
        )
        raise DataError(
            f"{what}: no shards match {pattern!r}{hint}. Write the synthetic world there with "
            f"`python -m mmtrain.data synth --out {parent.rsplit('/', 1)[0]} --samples 4096`, "
            "or point the source at your shards (see docs/data.md)."
        )
    for shard in shards:
        if not shard.startswith("pipe:"):
            check_readable(shard, what)
    return shards


def check_readable(shard: str, what: str) -> None:
    """Opens the shard and reads its first member header (about a millisecond), so an
    empty or non-tar file fails here, before training, not inside a data worker."""
    if os.path.getsize(shard) == 0:
        raise DataError(f"{what}: shard {shard} is empty (0 bytes); re-write or remove it")
    try:
        with tarfile.open(shard, "r|*") as tar:
            first = tar.next()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{what}: shard {shard} is not a readable tar file ({err}); "
                        "re-write or remove it") from None
    if first is None:
        raise DataError(f"{what}: shard {shard} holds no samples; re-write or remove it")


def _missing(path: str, what: str) -> bool:
    raise DataError(f"{what}: shard {path} does not exist (listed by the source's pattern)")


def check_fields(source: str, shard: str, family: str, fields: dict[str, tuple[str, ...]]) -> None:
    """Reads the first sample of `shard` and names every field `family` needs that it lacks."""
    from mmtrain.data.shards import ShardReadError, read_shard

    try:
        sample = next((s for _, s in read_shard(shard)), None)
    except ShardReadError as err:
        raise DataError(f"source {source}: cannot read {shard} ({err.cause})") from None
    if sample is None:
        raise DataError(f"source {source}: shard {shard} holds no samples; re-write or remove it")
    have = sorted(k for k in sample if not k.startswith("__"))
    lacking = [f"{name} (one of .{', .'.join(exts)})" for name, exts in fields.items()
               if not any(e in sample for e in exts)]
    if lacking:
        raise DataError(
            f"source {source} cannot feed family {family}: its samples lack "
            f"{'; '.join(lacking)}. The first sample of {shard} has: {', '.join(have) or 'nothing'}. "
            f"Point data.family_sources.{family} at sources with these fields, or repack the "
            "data (`python -m mmtrain.data pack`, docs/packing.md)")
