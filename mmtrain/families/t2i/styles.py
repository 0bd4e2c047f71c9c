"""Style presets: learned context tokens that sampling selects by name.

Each style is `tokens` learned vectors of the text encoder's width, appended to the UNet's
context after the prompt (and retrieved passages). Row 0 is "no style": the unconditional
branch of classifier-free guidance, samples without a style label, and the style dropout
at training use it, so sampling without a style stays in the training distribution.

A training sample's style comes from its `style` member (`style.txt`, or a "style" key in
its json), else, for the synthetic world (which has no style attribute), from its scene
background through `styles.from_background` (docs/t2i.md "Style presets").
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from mmtrain.data.shards import BadSample
from mmtrain.families.t2i.config import StyleConfig

CONFIG, WEIGHTS = "config.json", "style_embeddings.safetensors"


class StyleTokens(nn.Module):
    def __init__(self, names: list[str], tokens: int, hidden_size: int) -> None:
        super().__init__()
        if len(set(names)) != len(names) or "" in names:
            raise ValueError(f"styles.names must be distinct and non-empty, got {names}")
        self.names = list(names)
        # A private generator: creating the table must not move the global RNG.
        init = torch.randn(len(names) + 1, tokens, hidden_size,
                           generator=torch.Generator().manual_seed(0))
        self.table = nn.Parameter(init)

    @property
    def tokens(self) -> int:
        return self.table.shape[1]

    def index(self, style: str | None) -> int:
        if style is None:
            return 0
        if style not in self.names:
            raise ValueError(f"unknown style {style!r}; this model knows "
                             f"{', '.join(self.names)} (or None for no style)")
        return self.names.index(style) + 1

    def forward(self, indices: Tensor) -> Tensor:
        """(batch,) style indices (0: none) -> (batch, tokens, hidden)."""
        return self.table[indices.to(self.table.device)]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"table": self.table.detach().cpu().contiguous()}, folder / WEIGHTS)
        (folder / CONFIG).write_text(json.dumps(
            {"names": self.names, "tokens": self.tokens, "hidden_size": self.table.shape[2],
             "row_0": "no style"}, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> StyleTokens:
        meta = json.loads((folder / CONFIG).read_text())
        styles = cls(meta["names"], meta["tokens"], meta["hidden_size"])
        with torch.no_grad():
            styles.table.copy_(load_file(folder / WEIGHTS)["table"])
        return styles


def build(cfg: StyleConfig, hidden_size: int) -> StyleTokens | None:
    unknown = sorted(set(cfg.from_background.values()) - set(cfg.names))
    if unknown:
        raise ValueError(f"styles.from_background maps to {', '.join(unknown)}, which "
                         f"styles.names ({', '.join(cfg.names) or 'empty'}) does not list")
    return StyleTokens(cfg.names, cfg.tokens, hidden_size) if cfg.names else None


def style_label(raw: dict, from_background: dict[str, str]) -> str | None:
    """A webdataset sample's style name, or None (no label)."""
    for key in ("style", "style.txt"):
        if key in raw:
            value = raw[key]
            return (value.decode() if isinstance(value, bytes) else str(value)).strip() or None
    meta = raw.get("json")
    if meta is None:
        return None
    meta = json.loads(meta) if isinstance(meta, bytes | str) else meta
    if meta.get("style"):
        return str(meta["style"])
    return from_background.get(meta.get("background"))


def _decode_with_style(raw: dict, decode, names: list[str], from_background: dict[str, str]) -> dict:
    sample = decode(raw)
    label = style_label(raw, from_background)
    if label is not None and label not in names:
        raise BadSample("unknown_style", f"style {label!r} is not one of styles.names "
                                         f"({', '.join(names)})")
    sample["style"] = 0 if label is None else names.index(label) + 1
    return sample


def with_style(decode, cfg: StyleConfig):
    """Wraps a sample decoder so decoded samples carry a style index (0: none)."""
    return partial(_decode_with_style, decode=decode, names=list(cfg.names),
                   from_background=dict(cfg.from_background))
