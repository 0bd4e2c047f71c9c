"""webdataset sample -> the clean image the restoration family degrades on the fly.

Only the image is read (scenes, photo crops, any packed image shards). It stays uint8
until the step: random crops, flips and degradations happen in `losses()`, drawn from
the step's generator, so a sample contributes a different crop every epoch.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from mmtrain.data.shards import BadSample

IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")
FIELDS = {"image": IMAGE_KEYS}


def decode_sample(raw: dict) -> dict:
    data = next((raw[k] for k in IMAGE_KEYS if k in raw), None)
    if data is None:
        raise BadSample("missing_image", f"no {'/'.join(IMAGE_KEYS)} member")
    try:
        image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except Exception as err:  # PIL raises many types for broken files
        raise BadSample("corrupt_image", f"{type(err).__name__}: {err}") from None
    return {"image": torch.from_numpy(image.copy()).permute(2, 0, 1)}  # (3, H, W) uint8


def collate(samples: list[dict]) -> dict:
    """Stacks the images, centre-cropped to the batch's smallest side when sizes differ."""
    images = [s["image"] for s in samples]
    h = min(i.shape[1] for i in images)
    w = min(i.shape[2] for i in images)
    side = min(h, w)
    cropped = []
    for img in images:
        top, left = (img.shape[1] - side) // 2, (img.shape[2] - side) // 2
        cropped.append(img[:, top:top + side, left:left + side])
    return {"image": torch.stack(cropped)}
