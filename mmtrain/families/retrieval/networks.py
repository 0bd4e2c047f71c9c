"""The two towers of the dual encoder, built from config (or loaded from local folders).

Text: a transformers encoder (all-MiniLM-L6-v2 by default, real pretrained weights) with
mean pooling, as sentence-transformers pools it. Image: a small conv net or a
transformers CLIPVisionModel. Each tower ends in a linear projection to `embed_dim`; the
module L2-normalises, so both modalities live on one unit sphere.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
)

from mmtrain.families.retrieval.config import ImageTowerConfig, RetrievalConfig
from mmtrain.families.shared import minilm


def on_meta_device() -> bool:
    """`validate=true` builds models under `torch.device("meta")`, where from_pretrained
    refuses to run: build the same architecture from its config instead."""
    return torch.empty(0).device.type == "meta"


def build_text_tower(cfg: RetrievalConfig) -> tuple[nn.Module, object]:
    """-> (encoder, tokenizer); never downloads."""
    # a fresh tokenizer object (minilm.tokenizer() is a shared cached one)
    path = cfg.text.pretrained_path or str(minilm.model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if on_meta_device():
        return AutoModel.from_config(AutoConfig.from_pretrained(path)), tokenizer
    return AutoModel.from_pretrained(path, local_files_only=True), tokenizer


def text_features(encoder: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return minilm.mean_pool(hidden, attention_mask)


class ConvTower(nn.Module):
    """Stride-2 conv blocks, then the feature map flattened: where the shape sits (left,
    top, ...) is part of the caption, and global pooling would throw it away."""

    def __init__(self, channels: list[int], resolution: int) -> None:
        super().__init__()
        self.config = {"kind": "cnn", "channels": list(channels), "resolution": resolution}
        layers, c_in = [], 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(min(8, c), c),
                       nn.GELU()]
            c_in = c
        self.body = nn.Sequential(*layers)
        side = resolution
        for _ in channels:
            side = (side + 1) // 2
        self.out_dim = c_in * side * side

    def forward(self, pixels: Tensor) -> Tensor:
        return self.body(pixels).flatten(1)

    def save(self, out: Path) -> None:
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(self.config, indent=2, sort_keys=True))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()},
                  str(out / "model.safetensors"))

    @classmethod
    def load(cls, folder: Path) -> ConvTower:
        from safetensors.torch import load_file

        config = json.loads((Path(folder) / "config.json").read_text())
        tower = cls(config["channels"], config["resolution"])
        tower.load_state_dict(load_file(str(Path(folder) / "model.safetensors")))
        return tower


class ViTTower(nn.Module):
    """CLIPVisionModel -> its pooled (post-layernorm class token) output."""

    def __init__(self, model: CLIPVisionModel) -> None:
        super().__init__()
        self.model = model
        self.out_dim = model.config.hidden_size

    def forward(self, pixels: Tensor) -> Tensor:
        return self.model(pixel_values=pixels).pooler_output


def build_image_tower(cfg: RetrievalConfig) -> nn.Module:
    im: ImageTowerConfig = cfg.image
    if im.kind == "cnn":
        if im.pretrained_path and not on_meta_device():
            return ConvTower.load(Path(im.pretrained_path))
        return ConvTower(im.channels, cfg.resolution)
    if im.pretrained_path and on_meta_device():
        return ViTTower(CLIPVisionModel(CLIPVisionConfig.from_pretrained(im.pretrained_path)))
    if im.pretrained_path:
        # a CLIPVisionModel folder, or a whole CLIPModel checkpoint (its vision half loads)
        model = CLIPVisionModel.from_pretrained(im.pretrained_path, local_files_only=True)
        if model.config.image_size != cfg.resolution:
            raise ValueError(f"image tower at {im.pretrained_path} expects "
                             f"{model.config.image_size} px images; set resolution to match")
        return ViTTower(model)
    return ViTTower(CLIPVisionModel(CLIPVisionConfig(
        hidden_size=im.hidden_size, num_hidden_layers=im.num_layers,
        num_attention_heads=im.num_heads, intermediate_size=im.intermediate_size,
        image_size=cfg.resolution, patch_size=im.patch_size, hidden_act="quick_gelu",
    )))


def projection(in_dim: int, out_dim: int) -> nn.Linear:
    # bias-free, as CLIP's text/visual projections
    return nn.Linear(in_dim, out_dim, bias=False)


def canonical_hash(modules: dict[str, nn.Module | Tensor]) -> str:
    """sha256 over every tensor of the encoder in sorted-name order (name, dtype, shape,
    bytes): equal weights give equal hashes across processes and save/load round trips."""
    import hashlib

    digest = hashlib.sha256()
    state: dict[str, Tensor] = {}
    for prefix, m in modules.items():
        items = m.state_dict().items() if isinstance(m, nn.Module) else [("", m)]
        state.update({f"{prefix}.{k}" if k else prefix: v for k, v in items})
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
