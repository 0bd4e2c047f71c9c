"""Writes a plan's shards, one temp file -> fsync -> rename at a time, recording each
finished shard in shards.json (itself replaced atomically), so a killed run resumes
where it stopped and never leaves a half shard under a shard's name."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import PIL
from filelock import FileLock, Timeout
from tqdm import tqdm

from mmtrain.data.manifest import FILENAME, FORMAT, VERSION, read_shard_manifest
from mmtrain.data.pack.common import PackError, Skip, Skips
from mmtrain.data.pack.kinds import KINDS
from mmtrain.data.pack.options import PackOptions
from mmtrain.data.pack.plan import SPLITS, Plan, Shard, make_plan
from mmtrain.files import fsync_path

LOCK = ".pack.lock"
_OUR_SHARD = re.compile(r"(?:.+-)?(?:train|val)-\d{6}\.tar")
ShardHook = Callable[[dict], None]


class _HashingWriter:
    """A write-only stream that hashes what passes through: no second read of the shard."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.sha = f, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.f.write(data)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)


def _write_shard(out: Path, shard: Shard, plan: Plan, build: Callable, bar: tqdm) -> dict:
    import webdataset as wds  # pulls in torch (about 2 s): paid only when writing

    tmp, skips, samples = out / f".{shard.name}.tmp", Skips(), 0
    with open(tmp, "wb") as f:
        stream = _HashingWriter(f)
        # Fixed mtime/user/group: the tar bytes depend only on the samples.
        with wds.TarWriter(stream, encoder=False, mtime=0, user="mmtrain", group="mmtrain") as tar:
            for i in shard.items:
                item = plan.items[i]
                try:
                    fields = build(item)
                except Skip as skip:
                    skips.add(skip.reason, item.source)
                    bar.set_postfix(skipped=plan.skips.total() + skips.total(), refresh=False)
                else:
                    tar.write({"__key__": plan.keys[i], **fields})
                    samples += 1
                bar.update()
    fsync_path(tmp)
    os.replace(tmp, out / shard.name)
    fsync_path(out)
    entry = {
        "name": shard.name,
        "samples": samples,
        "bytes": (out / shard.name).stat().st_size,
        "sha256": stream.sha.hexdigest(),
    }
    if skips.counts:
        entry["skipped"], entry["skipped_examples"] = dict(skips.counts), skips.examples
    return entry


def _clear(out: Path, old: dict | None) -> None:
    """--overwrite: removes what a packer wrote, nothing else."""
    names = {s["name"] for split in (old or {}).get("splits", {}).values() for s in split["shards"]}
    for path in out.iterdir():
        if path.name in names or path.name == FILENAME or _OUR_SHARD.fullmatch(path.name):
            path.unlink()


def _resumable(out: Path, plan: Plan, opts: PackOptions) -> dict[str, dict]:
    """Finished shards to keep (name -> manifest entry); refuses a foreign or different
    non-empty directory unless --overwrite."""
    for stale in out.glob(".*.tmp"):  # from a killed run; we hold the lock
        stale.unlink()
    try:
        old = read_shard_manifest(out)
    except ValueError:
        old = None
    if not [p for p in out.iterdir() if p.name != LOCK]:
        return {}
    fingerprint = (old or {}).get("plan", {}).get("fingerprint")
    if fingerprint == plan.fingerprint:
        return {
            s["name"]: s
            for split in old["splits"].values()
            for s in split["shards"]
            if (out / s["name"]).is_file() and (out / s["name"]).stat().st_size == s["bytes"]
        }
    if not opts.overwrite:
        what = (
            "shards packed from different inputs or options"
            if old
            else f"files but no packer {FILENAME}"
        )
        raise PackError(
            f"--out {out} is not empty: it holds {what}. Choose another --out, or pass "
            "--overwrite to replace the packed shards"
        )
    _clear(out, old)
    return {}


def _manifest(opts: PackOptions, plan: Plan, finished: dict[str, dict], complete: bool) -> dict:
    import webdataset as wds

    skips = Skips()
    skips.merge(plan.skips.counts, plan.skips.examples)
    splits = {}
    for split in SPLITS[: 2 if opts.val_fraction > 0 else 1]:
        shards = [finished[s.name] for s in plan.shards if s.split == split and s.name in finished]
        for entry in shards:
            skips.merge(entry.get("skipped", {}), entry.get("skipped_examples", {}))
        splits[split] = {
            "samples": sum(s["samples"] for s in shards),
            "bytes": sum(s["bytes"] for s in shards),
            "shards": shards,
        }
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": opts.kind,
        "complete": complete,
        "schema": KINDS[opts.kind].SCHEMA,
        "arguments": opts.arguments(),
        "plan": {
            "fingerprint": plan.fingerprint,
            "samples": len(plan.items),
            "shards": len(plan.shards),
        },
        "splits": splits,
        "totals": {key: sum(s[key] for s in splits.values()) for key in ("samples", "bytes")}
        | {"shards": sum(len(s["shards"]) for s in splits.values())},
        "skipped": dict(sorted(skips.counts.items())),
        "skipped_examples": dict(sorted(skips.examples.items())),
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pillow": PIL.__version__,
            "webdataset": getattr(wds, "__version__", "unknown"),
        },
    }


def _save(out: Path, manifest: dict) -> None:
    _write_atomic(out / FILENAME, (json.dumps(manifest, indent=1) + "\n").encode())


def run(opts: PackOptions, on_shard: ShardHook | None = None) -> dict:
    plan = make_plan(opts)
    out = opts.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PackError(f"cannot create --out {out}: {e.strerror}") from e
    try:
        with FileLock(out / LOCK, timeout=0):
            return _run_locked(opts, plan, on_shard)
    except Timeout as e:
        raise PackError(f"another packer is writing to {out}; wait for it to finish") from e


def _run_locked(opts: PackOptions, plan: Plan, on_shard: ShardHook | None) -> dict:
    out, build = opts.out, KINDS[opts.kind].build
    finished = _resumable(out, plan, opts)
    _save(out, _manifest(opts, plan, finished, complete=False))
    total = sum(len(s.items) for s in plan.shards)
    with tqdm(
        total=total, desc=f"pack {opts.kind}", unit="sample", disable=not opts.progress
    ) as bar:
        for shard in plan.shards:
            if shard.name in finished:
                bar.update(len(shard.items))
                continue
            finished[shard.name] = _write_shard(out, shard, plan, build, bar)
            _save(out, _manifest(opts, plan, finished, complete=False))
            if on_shard is not None:
                on_shard(finished[shard.name])
    manifest = _manifest(opts, plan, finished, complete=True)
    _save(out, manifest)
    return manifest
