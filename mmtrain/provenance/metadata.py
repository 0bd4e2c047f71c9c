"""PNG text chunks that say where an image came from.

The prompt itself is never written, only its sha256: images travel far (shared, posted,
scraped) and prompts can hold names, addresses or anything else a user typed. Whoever
holds the prompt (the user, the server's own logs) can still prove which prompt made the
image by hashing it. A hash is not encryption: a short prompt can be confirmed by
guessing it and hashing the guess.

Text chunks survive a byte-for-byte copy but not a re-encode (a plain PIL re-save drops
them, JPEG has no such chunks); the watermark in the pixels is what survives that.
"""

from __future__ import annotations

import hashlib

from PIL import Image
from PIL.PngImagePlugin import PngInfo

PREFIX = "mmtrain:"
FIELDS = ("version", "manifest_sha256", "seed", "prompt_sha256", "watermark")


def prompt_sha256(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def png_info(fields: dict[str, str]) -> PngInfo:
    info = PngInfo()
    info.add_text("Software", f"mmtrain {fields['version']}")
    for key in FIELDS:
        if key in fields:
            info.add_text(PREFIX + key, str(fields[key]))
    return info


def read(image: Image.Image) -> dict[str, str]:
    """The mmtrain fields an image carries (empty when none)."""
    text = getattr(image, "text", None) or image.info  # PNG text chunks, else whatever info
    return {k[len(PREFIX):]: str(v) for k, v in text.items()
            if isinstance(k, str) and k.startswith(PREFIX)}


def watermark_field(message: str) -> str:
    """How the watermark was made, so verify knows what to look for."""
    from mmtrain.provenance.watermark import METHOD, SCALE

    return f"{METHOD} scale={SCALE} message_hex={message.encode('utf-8').hex()}"


def message_of(field: str) -> str | None:
    for part in field.split():
        if part.startswith("message_hex="):
            try:
                return bytes.fromhex(part.split("=", 1)[1]).decode("utf-8")
            except ValueError:
                return None
    return None
