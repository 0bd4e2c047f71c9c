"""Checkpoint writes that a kill cannot corrupt: write a temp file, fsync, rename."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mmtrain.files import fsync_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, except that the file appears under its final name
    only once it is complete on disk; a previous file of that name stays intact until then."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            fsync_path(path.parent)  # make the rename itself durable
        finally:
            tmp.unlink(missing_ok=True)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a checkpoint on CPU (mmap: large files are not read in full for metadata)."""
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)
