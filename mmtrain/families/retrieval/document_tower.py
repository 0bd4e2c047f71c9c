"""The document tower: the doc family's LayoutLMv3 encoder over page image + words +
boxes, pooled to one vector (the module projects it into the retrieval space).

Built exactly as the doc family builds its layout model (mmtrain/families/doc/networks.py:
the same tokenizer, sizes and image processor), keeping the backbone (`LayoutLMv3Model`)
and dropping the tagging head; or loaded from a local folder (`pretrained_path`): a doc
export bundle's `layout/`, a LayoutLMv3 checkpoint, or this family's exported
`document_encoder/`. Never downloads.

A document is the doc family's decoded page: a dict with `words`, pixel `boxes` and
`image` (PIL). Without an image it is read as words + layout on a blank page whose size
is `width`/`height` when given, else the boxes' extent.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn
from transformers import LayoutLMv3Config, LayoutLMv3Model, LayoutLMv3Tokenizer

from mmtrain.families.doc import networks as doc_networks
from mmtrain.families.doc.batch import normalised_boxes
from mmtrain.families.doc.config import DocConfig
from mmtrain.families.retrieval.config import DocumentTowerConfig


def doc_config(cfg: DocumentTowerConfig) -> DocConfig:
    return DocConfig(pretrained_path=cfg.pretrained_path, layout=cfg.layout)


def _on_meta_device() -> bool:
    return torch.empty(0).device.type == "meta"


class DocumentTower(nn.Module):
    """pages -> (N, hidden_size) pooled LayoutLMv3 features."""

    def __init__(self, cfg: DocumentTowerConfig) -> None:
        super().__init__()
        self.pool = cfg.pool
        dcfg = doc_config(cfg)
        if cfg.pretrained_path:
            path = cfg.pretrained_path
            self.tokenizer = LayoutLMv3Tokenizer.from_pretrained(path, local_files_only=True)
            self.model = (LayoutLMv3Model(LayoutLMv3Config.from_pretrained(path))
                          if _on_meta_device() else
                          LayoutLMv3Model.from_pretrained(path, local_files_only=True))
        else:
            self.tokenizer, _ = doc_networks.build_tokenizers(dcfg)
            # the doc family's token-classification model; its backbone is the encoder
            self.model = doc_networks.build_layout(dcfg, self.tokenizer).layoutlmv3
        self.image_processor = doc_networks.build_layout_image_processor(
            dcfg, self.model.config.input_size)
        self.max_length = (cfg.layout.max_length if not cfg.pretrained_path
                           else min(self.tokenizer.model_max_length,
                                    self.model.config.max_position_embeddings - 2))
        self.out_dim = self.model.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def inputs(self, pages: list[dict]) -> dict[str, Tensor]:
        images = [page_image(p) for p in pages]
        enc = self.tokenizer(
            [list(p["words"]) or [""] for p in pages],
            boxes=[normalised_boxes(p["boxes"], *im.size) or [[0, 0, 0, 0]]
                   for p, im in zip(pages, images, strict=True)],
            padding="longest", truncation=True, max_length=self.max_length,
            return_tensors="pt")
        pixels = self.image_processor(images, return_tensors="pt").pixel_values
        out = {k: v.to(self.device) for k, v in enc.items()}
        out["pixel_values"] = pixels.to(self.device)
        return out

    def forward(self, pages: list[dict]) -> Tensor:
        enc = self.inputs(pages)
        hidden = self.model(**enc).last_hidden_state  # text tokens, then the image patches
        if self.pool == "cls":
            return hidden[:, 0]
        # mean over the (non-pad) text tokens: the words carry what a query asks for
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        text = hidden[:, : mask.shape[1]]
        return (text * mask).sum(1) / mask.sum(1).clamp(min=1)

    def save(self, out: Path) -> None:
        """A transformers folder: LayoutLMv3Model + its tokenizer + image processor
        (LayoutLMv3Processor loads the latter two)."""
        out = Path(out)
        self.model.save_pretrained(out, safe_serialization=True)
        self.tokenizer.save_pretrained(out)
        self.image_processor.save_pretrained(out)


def page_image(page: dict) -> Image.Image:
    if page.get("image") is not None:
        return page["image"].convert("RGB")
    boxes = page.get("boxes") or [[0, 0, 1, 1]]
    width = int(page.get("width") or max(b[2] for b in boxes) + 1)
    height = int(page.get("height") or max(b[3] for b in boxes) + 1)
    return Image.new("RGB", (width, height), "white")


def summary(page: dict) -> str:
    """The text paired with a document page: its title (the header entities) and its
    key-value fields in reading order, "Sales Invoice. Customer Hiro Novak, Total $753.83".
    The synthetic forms carry no caption; this is what a person searching for the page
    would type, and every page's values make it its own."""
    title = " ".join(e["text"] for e in page.get("entities", []) if e.get("label") == "header")
    fields = ", ".join(f"{k} {v}" for k, v in (page.get("fields") or {}).items())
    text = ". ".join(t for t in (title, fields) if t)
    return text or " ".join(page["words"])


def eval_pages(seed: int, cfg: DocumentTowerConfig) -> list[dict]:
    """Held-out synthetic form pages from their own random stream (the shard writer and
    the doc family's evaluation use others), as decoded pages with a `source`."""
    import numpy as np

    from mmtrain.data.synth.documents import sample_document

    pages = []
    for i in range(cfg.eval_documents):
        doc = sample_document(np.random.default_rng([seed, 0xD0C5, i]), cfg.page_size,
                              cfg.page_size)
        pages.append({"image": doc.image, **doc.annotation(),
                      "source": f"synthetic:{doc.form}:{seed}:{i}"})
    return pages
