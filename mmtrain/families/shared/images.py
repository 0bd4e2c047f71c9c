"""The image + caption fields that several families read from a webdataset sample."""

from __future__ import annotations

import io

from PIL import Image

from mmtrain.data.shards import BadSample

IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")
CAPTION_KEYS = ("txt", "caption")


def image_and_caption(raw: dict) -> tuple[Image.Image, str]:
    """(RGB image, stripped caption); BadSample when a field is missing or the image does
    not decode."""
    image_bytes = next((raw[k] for k in IMAGE_KEYS if k in raw), None)
    caption = next((raw[k] for k in CAPTION_KEYS if k in raw), None)
    if image_bytes is None:
        raise BadSample("missing_image", f"no {'/'.join(IMAGE_KEYS)} member")
    if caption is None:
        raise BadSample("missing_caption", f"no {'/'.join(CAPTION_KEYS)} member")
    try:
        image = Image.open(io.BytesIO(image_bytes)).convert("RGB")  # decodes: truncation fails
    except Exception as err:  # PIL raises many types for broken files
        raise BadSample("corrupt_image", f"{type(err).__name__}: {err}") from None
    text = caption.decode("utf-8") if isinstance(caption, bytes) else str(caption)
    return image, text.strip()


def center_square(image: Image.Image) -> Image.Image:
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))
