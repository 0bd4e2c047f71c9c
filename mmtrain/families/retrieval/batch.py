"""webdataset sample -> tensors for the retrieval family: a `scenes` image + its caption."""

from __future__ import annotations

import io
from functools import partial

import numpy as np
import torch
from PIL import Image

from mmtrain.data.shards import BadSample

IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")
CAPTION_KEYS = ("txt", "caption")
FIELDS = {"image": IMAGE_KEYS, "caption": CAPTION_KEYS}


def to_pixels(image: Image.Image, resolution: int, mean: list[float],
              std: list[float]) -> torch.Tensor:
    """PIL image -> normalised float CHW at `resolution` (centre square crop first)."""
    image = image.convert("RGB")
    if image.size != (resolution, resolution):
        w, h = image.size
        side = min(w, h)
        image = image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side,
                            (h - side) // 2 + side)).resize((resolution, resolution),
                                                            Image.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def decode_sample(raw: dict, resolution: int, mean: list[float], std: list[float]) -> dict:
    image_bytes = next((raw[k] for k in IMAGE_KEYS if k in raw), None)
    caption = next((raw[k] for k in CAPTION_KEYS if k in raw), None)
    if image_bytes is None:
        raise BadSample("missing_image", f"no {'/'.join(IMAGE_KEYS)} member")
    if caption is None:
        raise BadSample("missing_caption", f"no {'/'.join(CAPTION_KEYS)} member")
    try:
        image = Image.open(io.BytesIO(image_bytes))
        image.load()  # decodes the pixels: truncated data fails here
    except Exception as err:  # PIL raises many types for broken files
        raise BadSample("corrupt_image", f"{type(err).__name__}: {err}") from None
    text = (caption.decode("utf-8") if isinstance(caption, bytes) else str(caption)).strip()
    if not text:
        raise BadSample("empty_caption", "the caption is empty")
    return {"pixels": to_pixels(image, resolution, mean, std), "caption": text}


def collate(samples: list[dict]) -> dict:
    return {"pixels": torch.stack([s["pixels"] for s in samples]),
            "captions": [s["caption"] for s in samples]}


def decoder(resolution: int, mean: list[float], std: list[float]):
    return partial(decode_sample, resolution=resolution, mean=mean, std=std)

