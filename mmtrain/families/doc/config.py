"""Typed config of the document family (conf/model/doc/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmtrain.config.schema import bounded


@dataclass
class LayoutConfig:
    """LayoutLMv3 (text + 2-D layout + image patches) for token classification."""
    hidden_size: int = bounded(64, ge=8)
    num_layers: int = bounded(2, ge=1)
    num_heads: int = bounded(2, ge=1)
    intermediate_size: int = bounded(128, ge=8)
    # 4 * coordinate_size + 2 * shape_size must equal hidden_size (LayoutLMv3's embedding).
    coordinate_size: int = bounded(8, ge=1)
    shape_size: int = bounded(16, ge=1)
    input_size: int = bounded(64, ge=16)  # page image side the patch embedding reads
    patch_size: int = bounded(16, ge=1)
    max_length: int = bounded(256, ge=16)  # tokens per page (words split into BPE pieces)


@dataclass
class ReaderConfig:
    """OCR-free page reader (Donut-like): DonutSwin encoder + MBart decoder."""
    image_size: list[int] = field(default_factory=lambda: [128, 128])  # height, width
    patch_size: int = bounded(4, ge=1)
    embed_dim: int = bounded(16, ge=4)
    depths: list[int] = field(default_factory=lambda: [1, 1, 1])
    num_heads: list[int] = field(default_factory=lambda: [1, 2, 4])
    window_size: int = bounded(8, ge=1)
    d_model: int = bounded(64, ge=8)
    decoder_layers: int = bounded(2, ge=1)
    decoder_heads: int = bounded(2, ge=1)
    decoder_ffn_dim: int = bounded(128, ge=8)
    max_length: int = bounded(160, ge=8)  # target tokens: the page's fields as JSON


@dataclass
class DocConfig:
    # Local transformers folders, never downloaded: a LayoutLMv3 checkpoint (model +
    # tokenizer/processor files, e.g. layoutlmv3-base) and a VisionEncoderDecoder reader
    # (e.g. donut-base, or this family's export). The sizes below are then ignored.
    pretrained_path: str | None = None
    reader_pretrained_path: str | None = None
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    page_size: int = bounded(256, ge=64)  # synthetic evaluation pages (px, square)
    eval_pages: int = bounded(16, ge=1)
    reader_eval_pages: int = bounded(4, ge=0)  # generation is slow: fewer pages
