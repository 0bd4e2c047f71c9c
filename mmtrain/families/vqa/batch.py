"""webdataset scenes sample -> tensors for the VQA family.

A sample is an image (`png`/`jpg`), its caption (`txt`) and its question/answer pairs
(`json` `questions`). Every pair is kept: `losses()` picks one per sample with the step's
generator, so the choice is reproducible and no pair is favoured by the decoder.
"""

from __future__ import annotations

import io
import json
from functools import partial

import torch
from PIL import Image

from mmtrain.data.shards import BadSample

IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")
CAPTION_KEYS = ("txt", "caption")
FIELDS = {"image": IMAGE_KEYS, "caption": CAPTION_KEYS, "questions": ("json",)}


def decode_sample(raw: dict, image_processor) -> dict:
    image_bytes = next((raw[k] for k in IMAGE_KEYS if k in raw), None)
    caption = next((raw[k] for k in CAPTION_KEYS if k in raw), None)
    if image_bytes is None:
        raise BadSample("missing_image", f"no {'/'.join(IMAGE_KEYS)} member")
    if caption is None:
        raise BadSample("missing_caption", f"no {'/'.join(CAPTION_KEYS)} member")
    if "json" not in raw:
        raise BadSample("missing_questions", "no json member with questions")
    try:
        meta = json.loads(raw["json"])
        qas = [(str(q["question"]), str(q["answer"])) for q in meta["questions"]]
    except (ValueError, KeyError, TypeError) as err:
        raise BadSample("bad_questions", f"{type(err).__name__}: {err}") from None
    if not qas:
        raise BadSample("no_questions", "json questions is empty")
    try:
        image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    except Exception as err:  # PIL raises many types for broken files
        raise BadSample("corrupt_image", f"{type(err).__name__}: {err}") from None
    pixels = image_processor(image, return_tensors="pt").pixel_values[0]
    return {"pixels": pixels, "caption": _text(caption), "qas": qas}


def _text(value) -> str:
    return (value.decode("utf-8") if isinstance(value, bytes) else str(value)).strip()


def collate(samples: list[dict]) -> dict:
    return {"pixels": torch.stack([s["pixels"] for s in samples]),
            "captions": [s["caption"] for s in samples],
            "qas": [s["qas"] for s in samples]}


def decoder(image_processor):
    return partial(decode_sample, image_processor=image_processor)
