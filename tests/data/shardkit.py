"""Tiny real webdataset shards for data-layer tests: PNG + caption samples, and ways to
break them (a truncated tar, a broken image, a missing caption)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image


def png(seed: int, size: int = 8) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def write_shards(folder: Path, sizes: list[int], *, prefix: str = "train",
                 broken: dict[str, str] | None = None) -> list[str]:
    """Shards with sizes[i] samples each, keys `<prefix>-<shard>-<index>`; `broken` maps
    a key to 'image' (undecodable bytes) or 'caption' (member left out)."""
    folder.mkdir(parents=True, exist_ok=True)
    broken = broken or {}
    paths = []
    for s, n in enumerate(sizes):
        path = folder / f"{prefix}-{s:06d}.tar"
        with wds.TarWriter(str(path)) as tar:
            for i in range(n):
                key = f"{prefix}-{s}-{i}"
                sample = {"__key__": key, "png": png(s * 1000 + i), "txt": key}
                if broken.get(key) == "image":
                    sample["png"] = sample["png"][:40]  # a valid header, then nothing
                if broken.get(key) == "caption":
                    del sample["txt"]
                tar.write(sample)
        paths.append(str(path))
    return paths


def truncate(path: str, keep: float = 0.5) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])


def key_decode(raw: dict) -> dict:
    """A decoder that keeps only the key (stream tests that need no pixels)."""
    from mmtrain.data.shards import BadSample

    if "txt" not in raw:
        raise BadSample("missing_caption")
    return {"key": raw["__key__"]}


def key_collate(samples: list[dict]) -> dict:
    return {"keys": [s["key"] for s in samples]}
