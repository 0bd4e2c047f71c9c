"""webdataset sample -> tensors for the text-to-image family."""

from __future__ import annotations

import io
from functools import partial

import numpy as np
import torch
from PIL import Image

from mmtrain.data.shards import BadSample

IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")
CAPTION_KEYS = ("txt", "caption")
FIELDS = {"image": IMAGE_KEYS, "caption": CAPTION_KEYS}  # field -> accepted extensions


def decode_sample(raw: dict, resolution: int) -> dict:
    """Image -> float CHW in [-1, 1] at `resolution`; caption -> str. Raises BadSample
    when the sample lacks a field or its image does not decode (the stream skips it)."""
    image_bytes = next((raw[k] for k in IMAGE_KEYS if k in raw), None)
    caption = next((raw[k] for k in CAPTION_KEYS if k in raw), None)
    if image_bytes is None:
        raise BadSample("missing_image", f"no {'/'.join(IMAGE_KEYS)} member")
    if caption is None:
        raise BadSample("missing_caption", f"no {'/'.join(CAPTION_KEYS)} member")
    try:
        image = Image.open(io.BytesIO(image_bytes))
        image = image.convert("RGB")  # decodes the pixels: truncated data fails here
    except Exception as err:  # PIL raises many types for broken files
        raise BadSample("corrupt_image", f"{type(err).__name__}: {err}") from None
    if image.size != (resolution, resolution):
        image = _center_square(image).resize((resolution, resolution), Image.BICUBIC)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
    text = caption.decode("utf-8") if isinstance(caption, bytes) else str(caption)
    return {"pixels": pixels.permute(2, 0, 1), "caption": text.strip()}


def _center_square(image: Image.Image) -> Image.Image:
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


def collate(samples: list[dict]) -> dict:
    return {
        "pixels": torch.stack([s["pixels"] for s in samples]),
        "captions": [s["caption"] for s in samples],
    }


def decoder(resolution: int):
    return partial(decode_sample, resolution=resolution)
