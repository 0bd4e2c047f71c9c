"""Reading `shards.json`, the manifest `python -m mmtrain.data pack` writes next to its
shards: per split the shard names, sample counts, bytes and sha256 (docs/packing.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

FORMAT = "mmtrain.shards"
VERSION = 1
FILENAME = "shards.json"


def read_versioned_json(path: Path, fmt: str, version: int,
                        error: type[ValueError] = ValueError) -> dict | None:
    """A manifest of format `fmt` up to `version`; None when the file is absent. Raises
    `error` for a file that is not valid JSON, not ours, or newer than this mmtrain."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        raise error(f"{path} is not a {fmt} manifest")
    if manifest.get("version", 0) > version:
        raise error(f"{path} has format version {manifest['version']}; this mmtrain reads "
                    f"up to {version}: update mmtrain")
    return manifest


def read_shard_manifest(directory: str | os.PathLike) -> dict | None:
    """The manifest of a packed directory; None when it has no shards.json. Raises
    ValueError for a shards.json that is not one of ours."""
    return read_versioned_json(Path(directory) / FILENAME, FORMAT, VERSION)


def split_shards(
    directory: str | os.PathLike, split: str = "train", *, allow_incomplete: bool = False
) -> list[str]:
    """Paths of a split's shards in order, leaving out shards with no samples (every
    sample in them was skipped). Refuses a pack that is still being written (or was
    killed) unless allow_incomplete."""
    manifest = read_shard_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"no {FILENAME} in {directory}; pack the data first")
    if not manifest.get("complete") and not allow_incomplete:
        raise ValueError(
            f"{directory} holds an unfinished pack; rerun the same pack command to finish it"
        )
    if split not in manifest["splits"]:
        raise KeyError(f"no split {split!r} in {directory}; splits: {sorted(manifest['splits'])}")
    shards = manifest["splits"][split]["shards"]
    return [str(Path(directory) / s["name"]) for s in shards if s["samples"] > 0]


def split_samples(manifest: dict, split: str = "train") -> int:
    """Samples in a split (what the loader needs for epoch lengths)."""
    return int(manifest["splits"][split]["samples"])
