"""webdataset sample -> tensors for the retrieval family: a `scenes` image + its caption,
and (document tower on) a `documents` page + its summary text, in one batch."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from PIL import Image

from mmtrain.data.shards import BadSample
from mmtrain.families.shared.images import (
    CAPTION_KEYS,
    IMAGE_KEYS,
    center_square,
    image_and_caption,
)

FIELDS = {"image": IMAGE_KEYS, "caption": CAPTION_KEYS}
# with the document tower on, a documents sample (png + json annotation) stands in for
# image + caption: its paired text is the page's summary (document_tower.summary)
FIELDS_WITH_DOCUMENTS = {"image": IMAGE_KEYS, "caption": (*CAPTION_KEYS, "json")}


def to_pixels(image: Image.Image, resolution: int, mean: list[float],
              std: list[float]) -> torch.Tensor:
    """PIL image -> normalised float CHW at `resolution` (centre square crop first)."""
    image = image.convert("RGB")
    if image.size != (resolution, resolution):
        image = center_square(image).resize((resolution, resolution), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def decode_sample(raw: dict, resolution: int, mean: list[float], std: list[float]) -> dict:
    image, text = image_and_caption(raw)
    if not text:
        raise BadSample("empty_caption", "the caption is empty")
    return {"pixels": to_pixels(image, resolution, mean, std), "caption": text}


def decode_document(raw: dict) -> dict:
    from mmtrain.families.doc.batch import decode_sample as decode_page
    from mmtrain.families.retrieval.document_tower import summary

    page = decode_page(raw)
    return {"document": page, "summary": summary(page)}


def decode_any(raw: dict, documents: bool, **scene_args) -> dict:
    # scenes carry a json too (their attributes): a document is json without a caption
    if documents and "json" in raw and not any(k in raw for k in CAPTION_KEYS):
        return decode_document(raw)
    return decode_sample(raw, **scene_args)


def collate(samples: list[dict]) -> dict:
    """Scenes -> pixels + captions, documents -> pages + summaries (either may be absent
    when a mixed batch holds none of that kind)."""
    scenes = [s for s in samples if "pixels" in s]
    docs = [s for s in samples if "document" in s]
    out: dict = {}
    if scenes:
        out |= {"pixels": torch.stack([s["pixels"] for s in scenes]),
                "captions": [s["caption"] for s in scenes]}
    if docs:
        out |= {"documents": [s["document"] for s in docs],
                "summaries": [s["summary"] for s in docs]}
    return out


def decoder(resolution: int, mean: list[float], std: list[float], documents: bool = False):
    return partial(decode_any, documents=documents, resolution=resolution, mean=mean, std=std)

