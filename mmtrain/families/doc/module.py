"""Document intelligence: LayoutLMv3 entity tagging + an OCR-free Donut-like reader.

Two losses, which phases weight:
- `entities`: LayoutLMv3ForTokenClassification over words + boxes (0..1000) + page image,
  BIO tags over header/question/answer (FUNSD scheme: `other` is O), loss on each word's
  first token.
- `reader`: VisionEncoderDecoderModel (DonutSwin encoder + MBart decoder) that reads the
  page image into the page's `fields` as a JSON string.
The structure parser (structure.py) turns tagged words into key-value pairs and sections,
rendered as JSON, XML or CSV. Freeze paths: `doc.layout`, `doc.layout.layoutlmv3`
(keep the head training), `doc.reader`, `doc.reader.encoder`, `doc.reader.decoder`.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from mmtrain.data.synth.documents import sample_document
from mmtrain.families.base import FamilyModule
from mmtrain.families.doc import batch as batch_codec
from mmtrain.families.doc import metrics, networks, structure
from mmtrain.families.doc.config import DocConfig

LABEL_COLOURS = {"header": (200, 30, 30), "question": (30, 90, 220), "answer": (20, 160, 60),
                 "other": (150, 150, 150)}


class Document(FamilyModule):
    name = "doc"
    default_loss_weights = {"entities": 1.0, "reader": 1.0}

    def __init__(self, config: DocConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer, self.reader_tokenizer = networks.build_tokenizers(config)
        self.layout = networks.build_layout(config, self.tokenizer)
        self.layout_image_processor = networks.build_layout_image_processor(
            config, self.layout.config.input_size)
        self.reader = networks.build_reader(config, self.reader_tokenizer)
        self.reader_image_processor = networks.build_reader_image_processor(config)

    def sample_decoder(self):
        return batch_codec.decode_sample

    def required_fields(self) -> dict[str, tuple[str, ...]]:
        return batch_codec.FIELDS

    collate = staticmethod(batch_codec.collate)

    # ---- encoding -----------------------------------------------------------------------
    def encode_layout(self, pages: list[dict], labels: bool = True) -> dict[str, Tensor]:
        label_ids = self.layout.config.label2id
        enc = self.tokenizer(
            [p["words"] for p in pages],
            boxes=[batch_codec.normalised_boxes(p["boxes"], *p["image"].size) for p in pages],
            word_labels=[[label_ids[t] for t in batch_codec.word_tags(p)] for p in pages]
            if labels else None,
            padding="longest", truncation=True, max_length=self.tokenizer.model_max_length,
            return_tensors="pt")
        pixels = self.layout_image_processor([p["image"] for p in pages],
                                             return_tensors="pt").pixel_values
        out = {k: v.to(self.device) for k, v in enc.items()}
        out["pixel_values"] = pixels.to(self.device)
        out["word_ids"] = [enc.word_ids(i) for i in range(len(pages))]
        return out

    def encode_reader(self, pages: list[dict]) -> tuple[Tensor, Tensor]:
        pixels = self.reader_image_processor([p["image"] for p in pages],
                                             return_tensors="pt").pixel_values
        targets = [target_text(p["fields"]) for p in pages]
        enc = self.reader_tokenizer(targets, padding="longest", truncation=True,
                                    max_length=self.config.reader.max_length,
                                    return_tensors="pt")
        # drop <s>: the model prepends decoder_start_token_id itself when shifting
        labels = enc.input_ids[:, 1:].clone()
        labels[enc.attention_mask[:, 1:] == 0] = -100
        return pixels.to(self.device), labels.to(self.device)

    # ---- training -----------------------------------------------------------------------
    def losses(self, batch: dict, active: set[str], generator: torch.Generator) -> dict[str, Tensor]:
        pages = batch["pages"]
        out: dict[str, Tensor] = {}
        if "entities" in active:
            enc = self.encode_layout(pages)
            enc.pop("word_ids")
            out["entities"] = self.layout(**enc).loss
        if "reader" in active:
            pixels, labels = self.encode_reader(pages)
            out["reader"] = self.reader(pixel_values=pixels, labels=labels).loss
        return out

    # ---- inference ----------------------------------------------------------------------
    @torch.no_grad()
    def predict_tags(self, pages: list[dict]) -> list[list[str]]:
        """A BIO tag per word, from its first token (truncated words: O)."""
        enc = self.encode_layout(pages, labels=False)
        word_ids = enc.pop("word_ids")
        logits = self.layout(**enc).logits.argmax(-1).cpu()
        id2label = self.layout.config.id2label
        tags = []
        for i, page in enumerate(pages):
            page_tags = ["O"] * len(page["words"])
            seen = set()
            for t, w in enumerate(word_ids[i]):
                if w is not None and w not in seen:
                    seen.add(w)
                    page_tags[w] = id2label[int(logits[i, t])]
            tags.append(page_tags)
        return tags

    def extract(self, page: dict) -> structure.Extraction:
        """Words + boxes (+ image) -> entities, key-value links, sections."""
        return structure.parse(page["words"], page["boxes"], self.predict_tags([page])[0])

    @torch.no_grad()
    def read(self, images: list[Image.Image]) -> list[str]:
        """OCR-free: page images -> the reader's text (fields as JSON when trained)."""
        pixels = self.reader_image_processor(images, return_tensors="pt").pixel_values
        ids = self.reader.generate(pixels.to(self.device),
                                   max_new_tokens=self.config.reader.max_length)
        return self.reader_tokenizer.batch_decode(ids, skip_special_tokens=True)

    # ---- evaluation ---------------------------------------------------------------------
    def eval_pages(self, seed: int) -> list[dict]:
        """Held-out synthetic pages: their own RNG stream, never a training shard's."""
        size = self.config.page_size
        pages = []
        for i in range(self.config.eval_pages):
            doc = sample_document(np.random.default_rng([seed, 7_000_003, i]), size, size)
            pages.append({"image": doc.image, **doc.annotation()})
        return pages

    @torch.no_grad()
    def evaluate(self, seed: int) -> tuple[dict[str, float], dict]:
        was_training = self.training
        self.eval()
        pages = self.eval_pages(seed)
        tags = self.predict_tags(pages)
        gold_tags = [batch_codec.word_tags(p) for p in pages]
        link_scores, extractions = [], []
        for page, page_tags in zip(pages, tags, strict=True):
            ex = structure.parse(page["words"], page["boxes"], page_tags)
            extractions.append(ex)
            predicted = metrics.link_pairs([vars(e) for e in ex.entities], ex.links)
            link_scores.append(metrics.f1(metrics.link_pairs(page["entities"], page["links"]),
                                          predicted))
        out = {"entity_f1": metrics.entity_f1(gold_tags, tags),
               "link_f1": float(np.mean(link_scores))}
        n = min(self.config.reader_eval_pages, len(pages))
        if n:
            texts = self.read([p["image"] for p in pages[:n]])
            out |= metrics.reader_scores([p["fields"] for p in pages[:n]], texts)
        self.train(was_training)
        return out, {"entities": draw_entities(pages[:4], extractions[:4])}


def target_text(fields: dict[str, str]) -> str:
    return json.dumps(fields, ensure_ascii=False)


def draw_entities(pages: list[dict], extractions: list[structure.Extraction]) -> Image.Image:
    """Pages side by side, each predicted entity boxed in its label's colour and each
    predicted link drawn from question to answer."""
    w, h = pages[0]["image"].size
    sheet = Image.new("RGB", (w * len(pages), h), "white")
    for k, (page, ex) in enumerate(zip(pages, extractions, strict=True)):
        image = page["image"].copy()
        draw = ImageDraw.Draw(image)
        for e in ex.entities:
            draw.rectangle(e.box, outline=LABEL_COLOURS[e.label], width=1)
        by_id = {e.id: e for e in ex.entities}
        for q, a in ex.links:
            qb, ab = by_id[q].box, by_id[a].box
            draw.line([(qb[2], (qb[1] + qb[3]) / 2), (ab[0], (ab[1] + ab[3]) / 2)],
                      fill=(240, 160, 0), width=1)
        sheet.paste(image.resize((w, h)), (k * w, 0))
    return sheet
