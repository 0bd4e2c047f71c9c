"""Typed config of the VQA / captioning family, BLIP-2 design (conf/model/vqa/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmtrain.config.schema import bounded


@dataclass
class VisionConfig:  # the ViT image encoder
    image_size: int = bounded(32, ge=8)
    patch_size: int = bounded(8, ge=1)
    hidden_size: int = bounded(64, ge=8)
    num_layers: int = bounded(2, ge=1)
    num_heads: int = bounded(4, ge=1)
    intermediate_size: int = bounded(128, ge=8)


@dataclass
class QFormerConfig:  # the querying transformer between the image and the LM
    num_query_tokens: int = bounded(8, ge=1)
    hidden_size: int = bounded(64, ge=8)
    num_layers: int = bounded(2, ge=1)
    num_heads: int = bounded(4, ge=1)
    intermediate_size: int = bounded(128, ge=8)
    cross_attention_frequency: int = bounded(1, ge=1)
    max_text_length: int = bounded(64, ge=8)  # its own text path (stage 1)
    embed_dim: int = bounded(64, ge=8)  # image-text contrastive projection


@dataclass
class LanguageConfig:  # the causal LM decoder (OPT)
    hidden_size: int = bounded(64, ge=8)
    num_layers: int = bounded(2, ge=1)
    num_heads: int = bounded(4, ge=1)
    ffn_dim: int = bounded(128, ge=8)
    max_length: int = bounded(96, ge=16)  # positions, query tokens included


@dataclass
class VQAConfig:
    # A local transformers folder (Blip2ForConditionalGeneration + Blip2Processor, e.g. a
    # blip2-opt-2.7b checkout or one of our exports); the sizes below are then ignored.
    pretrained_path: str | None = None
    vision: VisionConfig = field(default_factory=VisionConfig)
    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    vqa_prompt: str = "Question: {question} Answer:"
    caption_prompt: str = "a photo of"
    context_prompt: str = "Context: {context}"
    max_new_tokens: int = bounded(12, ge=1)
    eval_scenes: int = bounded(24, ge=2)  # held-out scenes evaluate() renders (CIDEr needs > 1)
