"""Packer options, shared by the Python API and the CLI."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from mmtrain.data.pack.common import PackError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
MIN_SHARD_BYTES = 20480  # an empty tar is 10 KiB; leave room for at least one sample


def parse_size(text: str | int) -> int:
    """'1GB' -> 10**9, '500MiB' -> 500 * 2**20, '1024' -> 1024 bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise PackError(
            f"cannot read the size {text!r}: write a number with an optional unit, "
            "e.g. 500MB, 1GB, 64MiB (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024)"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass
class PackOptions:
    kind: str
    input: Path
    out: Path
    captions: Path | None = None  # images: JSONL/CSV captions instead of sidecar .txt
    images_root: Path | None = None  # vqa: where relative image paths point
    shard_size: int | None = 1000  # samples per shard; None: no count limit
    max_shard_bytes: int | None = 10**9  # None: no byte limit
    val_fraction: float = 0.0
    prefix: str = ""
    max_views: int | None = None  # views3d: keep at most this many, evenly spaced
    view_size: int | None = None  # views3d: resize views to this width, px
    background: str = "white"  # views3d: what transparent pixels become
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.input, self.out = Path(self.input).expanduser(), Path(self.out).expanduser()
        for name in ("captions", "images_root"):
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)).expanduser())
        if isinstance(self.max_shard_bytes, str):
            self.max_shard_bytes = parse_size(self.max_shard_bytes)
        self.validate()

    def validate(self) -> None:
        if self.shard_size is not None and self.shard_size < 1:
            raise PackError(f"--shard-size must be >= 1, got {self.shard_size}")
        if self.max_shard_bytes is not None and self.max_shard_bytes < MIN_SHARD_BYTES:
            raise PackError(
                f"--max-shard-bytes must be at least {MIN_SHARD_BYTES} bytes (an empty tar "
                f"takes 10 KiB), got {self.max_shard_bytes}"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise PackError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.prefix and not re.fullmatch(r"[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*", self.prefix):
            raise PackError(f"--prefix {self.prefix!r}: use letters, digits, '_', '.' and '-' only")
        for name in ("max_views", "view_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PackError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.background not in ("white", "black"):
            raise PackError(f"--background must be white or black, got {self.background!r}")

    def arguments(self) -> dict:
        """What the manifest records (absolute paths: where the data came from)."""
        args = asdict(self)
        for name in ("input", "out", "captions", "images_root"):
            if args[name] is not None:
                args[name] = str(Path(args[name]).resolve())
        del args["overwrite"], args["progress"]
        return args

    def content_options(self) -> dict:
        """Options that change shard bytes or boundaries: part of the plan fingerprint.
        Paths are left out, so moving the inputs or the output keeps a resumable plan."""
        return {
            k: v
            for k, v in self.arguments().items()
            if k not in ("input", "out", "captions", "images_root")
        }
