"""Text encoders for the knowledge base: anything with `embed(texts) -> (n, dim) float32
unit vectors`, a `dim` and a `hash` that changes whenever the vectors would.

The default is the real all-MiniLM-L6-v2 (mmtrain.families.shared.minilm). Its hash
covers the weight, config and vocabulary files plus the pooling and truncation settings,
so a retrained or swapped encoder never silently queries an index it did not build.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

import numpy as np


class Encoder(Protocol):
    dim: int
    hash: str

    def embed(self, texts: list[str]) -> np.ndarray: ...


def hash_files(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        h.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


class MiniLMEncoder:
    """all-MiniLM-L6-v2: mean pooling + L2 norm, 384 dims, inputs cut at `max_length`
    word pieces. Pass `module` to embed with fine-tuned weights (hashed from its state)."""

    dim = 384

    def __init__(self, module=None, *, max_length: int = 256, batch_size: int = 64) -> None:
        from mmtrain.families.shared import minilm

        self._minilm = minilm
        self.module = module if module is not None else minilm.load_encoder()
        self.max_length, self.batch_size = max_length, batch_size
        settings = f"minilm mean-pool l2 max_length={max_length}"
        if module is None:
            root = minilm.model_path()
            files = [p for p in root.iterdir()
                     if p.suffix in (".safetensors", ".json", ".txt") and p.is_file()]
            self.hash = hash_files(files, settings)
        else:
            h = hashlib.sha256(settings.encode())
            for name, tensor in sorted(module.state_dict().items()):
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self.hash = h.hexdigest()[:16]

    def embed(self, texts: list[str]) -> np.ndarray:
        out = self._minilm.embed_texts(self.module, list(texts), batch_size=self.batch_size,
                                       max_length=self.max_length)
        return out.numpy().astype(np.float32, copy=False)
