"""webdataset sample -> tensors for the retrieval family: a `scenes` image + its caption."""

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


def collate(samples: list[dict]) -> dict:
    return {"pixels": torch.stack([s["pixels"] for s in samples]),
            "captions": [s["caption"] for s in samples]}


def decoder(resolution: int, mean: list[float], std: list[float]):
    return partial(decode_sample, resolution=resolution, mean=mean, std=std)

