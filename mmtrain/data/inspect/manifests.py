"""Manifests next to the shards: `shards.json` (written by `python -m mmtrain.data pack`)
and the synthetic world's `manifest.json`. Both list shard names with sample counts and
bytes; inspect compares them with what it read. Read as plain JSON when present, so
inspect works on any shards, with or without one."""

from __future__ import annotations

import json
import os

from mmtrain.data.inspect.report import ManifestMismatch, Report

PACK_MANIFEST = "shards.json"
WORLD_MANIFEST = "manifest.json"


def _entries(manifest: dict) -> list[dict]:
    """Shard entries ({name, samples, bytes}) of either manifest kind."""
    if "kinds" in manifest:  # the synthetic world: kinds -> splits -> shards
        splits = [s for kind in manifest["kinds"].values() for s in kind["splits"].values()]
    else:  # a pack: splits -> shards
        splits = list(manifest["splits"].values())
    return [shard for split in splits for shard in split["shards"]]


def _load(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        base = os.path.dirname(path)
        shards = {os.path.normpath(os.path.join(base, e["name"])): e for e in _entries(manifest)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # not a manifest of ours (or a half-written one): nothing to compare
    return {"manifest": manifest, "shards": shards}


def find_manifests(shards: list[str]) -> dict[str, dict]:
    """manifest path -> {"manifest": its JSON, "shards": {shard path: entry}} for the
    manifests that may list these shards: `shards.json` in a shard's directory, a world
    `manifest.json` there or one level up."""
    found: dict[str, dict] = {}
    dirs = {os.path.dirname(os.path.abspath(s)) for s in shards if not s.startswith("pipe:")}
    for d in sorted(dirs):
        for path in (os.path.join(d, PACK_MANIFEST), os.path.join(d, WORLD_MANIFEST),
                     os.path.join(os.path.dirname(d), WORLD_MANIFEST)):
            if path in found or not os.path.isfile(path):
                continue
            loaded = _load(path)
            if loaded is not None:
                found[path] = loaded
    return found


def compare(report: Report, manifests: dict[str, dict]) -> None:
    """Adds the manifests' view of the shards read to `report`."""
    read = {os.path.normpath(os.path.abspath(s.shard)): s for s in report.shards}
    for path, loaded in manifests.items():
        manifest, entries = loaded["manifest"], loaded["shards"]
        mine = {shard: e for shard, e in entries.items() if shard in read}
        if not mine:
            continue
        report.manifests.append(path)
        if manifest.get("complete") is False:
            report.manifest_mismatches.append(ManifestMismatch(
                path, os.path.dirname(path), "the manifest marks the pack unfinished "
                "(a pack still running or killed): rerun the pack command to finish it"))
        for shard, entry in mine.items():
            got = read[shard]
            problems = []
            if got.complete or got.error:
                report.manifest_shards += 1
                if got.samples != entry.get("samples"):
                    how = "before it broke" if got.error else ""
                    problems.append(f"manifest says {entry.get('samples')} samples, "
                                    f"read {got.samples} {how}".rstrip())
            if got.file_bytes is not None and entry.get("bytes") not in (None, got.file_bytes):
                problems.append(f"manifest says {entry['bytes']} bytes, the file has "
                                f"{got.file_bytes}")
            if problems:
                report.manifest_mismatches.append(
                    ManifestMismatch(path, got.shard, "; ".join(problems)))
        # Shards the manifest lists next to these that are gone from disk.
        dirs = {os.path.dirname(s) for s in mine}
        for shard, entry in entries.items():
            if os.path.dirname(shard) in dirs and not os.path.exists(shard):
                report.manifest_mismatches.append(ManifestMismatch(
                    path, shard, f"listed with {entry.get('samples')} samples, "
                    "but the file is missing"))
