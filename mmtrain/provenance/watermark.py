"""Invisible watermark: invisible-watermark's `dwtDctSvd` (the method Stable Diffusion's
reference scripts use), driven through its embedder class so small images work too.

Each message bit goes into one 4x4 block of the Haar approximation of the U channel
(8x8 pixels), repeated over the image: an image holds (H//8)*(W//8) bits per copy, so a
32 px image carries one copy of a 16-bit message and a 256 px image 64 copies (a
majority vote per bit survives JPEG). `WatermarkEncoder/Decoder` refuse images under
256x256, but the maths has no such limit; measured numbers are in docs/provenance.md.

Two changes against the stock `EmbedDwtDctSvd.encode`, both measured: it works in floats
(the stock path truncates to uint8 in YUV, then rounds again in BGR, costing 3-10 dB
PSNR and bit errors at 32-64 px), and it re-embeds until the rounded image decodes (a
block that rounding pushed across a bin edge gets another try). Decoding is the stock
uint8 path, so `WatermarkDecoder` reads our marks on images of 256 px and more.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from math import comb
from pathlib import Path

import cv2
import numpy as np
import pywt
from PIL import Image


def _embedder_class():
    """imwatermark's EmbedDwtDctSvd without the package __init__, which imports torch for
    its rivaGan method (2-4 s of the CLI's start-up for a class that needs numpy only)."""
    try:
        package = importlib.util.find_spec("imwatermark")
        spec = importlib.util.spec_from_file_location(
            "_mmtrain_imwatermark_dwtdctsvd",
            Path(package.submodule_search_locations[0]) / "dwtDctSvd.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.EmbedDwtDctSvd
    except (AttributeError, OSError, TypeError):  # a different layout: the plain import
        from imwatermark.dwtDctSvd import EmbedDwtDctSvd

        return EmbedDwtDctSvd


EmbedDwtDctSvd = _embedder_class()

METHOD = "dwtDctSvd"
SCALE = 36  # the library's default strength on the U channel (its `scales=[0, 36, 0]`)
BLOCK = 4
FOUND_ACCURACY = 0.9  # bit accuracy from which a watermark counts as found
_UV_OFFSET = 0.5  # uint8 YUV centres chroma on 128, OpenCV's float YUV on 127.5


def message_bits(message: str) -> list[int]:
    return np.unpackbits(np.frombuffer(message.encode("utf-8"), dtype=np.uint8)).tolist()


def capacity(width: int, height: int) -> int:
    """Bits one copy of the watermark can hold in an image of this size."""
    return ((height // 4 * 4) // 2 // BLOCK) * ((width // 4 * 4) // 2 // BLOCK)


def min_side(bits: int) -> int:
    side = 8
    while capacity(side, side) < bits:
        side += 8
    return side


def embed(image: Image.Image, bits: list[int], tries: int = 4) -> Image.Image:
    """`image` (RGB) with `bits` embedded; raises when the image is too small to hold them."""
    if capacity(*image.size) < len(bits):
        raise ValueError(
            f"a {image.width}x{image.height} image holds {capacity(*image.size)} watermark "
            f"bits, the message has {len(bits)}: use a shorter message (ProvenanceConfig."
            f"message) or images of at least {min_side(len(bits))} px, or turn the "
            "watermark off (watermark=False)")
    out = image.convert("RGB")
    for _ in range(tries):
        out = _embed_once(out, bits)
        if decode_bits(out, len(bits))[0] == bits:
            break
    return out


def _embed_once(image: Image.Image, bits: list[int]) -> Image.Image:
    rgb = np.asarray(image, dtype=np.float32) / 255
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV) * 255
    h, w = (s // 4 * 4 for s in yuv.shape[:2])
    approx, details = pywt.dwt2(yuv[:h, :w, 1] + _UV_OFFSET, "haar")
    EmbedDwtDctSvd(bits, wmLen=len(bits), scales=[0, SCALE, 0], block=BLOCK).encode_frame(approx, SCALE)
    yuv[:h, :w, 1] = pywt.idwt2((approx, details), "haar") - _UV_OFFSET
    out = cv2.cvtColor(yuv / 255, cv2.COLOR_YUV2RGB) * 255
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def decode_bits(image: Image.Image, n_bits: int) -> tuple[list[int], int]:
    """Majority-vote bits (the library's decode) and the number of blocks that voted."""
    bgr = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    h, w = (s // 4 * 4 for s in yuv.shape[:2])
    approx, _ = pywt.dwt2(yuv[:h, :w, 1], "haar")
    embedder = EmbedDwtDctSvd([], wmLen=n_bits, scales=[0, SCALE, 0], block=BLOCK)
    votes = embedder.decode_frame(approx, SCALE, [[] for _ in range(n_bits)])
    bits = [int(np.mean(v) * 255 > 127) if v else 0 for v in votes]  # as the library rounds ties
    return bits, sum(len(v) for v in votes)


@dataclass
class WatermarkResult:
    found: bool
    method: str
    message_bits: int
    payload_hex: str  # the decoded bits, whatever they are
    payload_text: str | None  # the same, when they read as UTF-8
    bit_accuracy: float | None  # against the expected message
    chance: float | None  # P(a random image matches at least this well)
    blocks: int
    note: str = ""


def detect(image: Image.Image, message: str) -> WatermarkResult:
    expected = message_bits(message)
    n = len(expected)
    bits, blocks = decode_bits(image, n)
    payload = np.packbits(bits).tobytes()
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if capacity(*image.size) < n:
        return WatermarkResult(
            False, METHOD, n, payload.hex(), text, None, None, blocks,
            f"too small: a {image.width}x{image.height} image holds {capacity(*image.size)} "
            f"bits, the {n}-bit message needs at least {min_side(n)}x{min_side(n)} px")
    matched = sum(a == b for a, b in zip(bits, expected, strict=True))
    chance = sum(comb(n, k) for k in range(matched, n + 1)) / 2**n
    return WatermarkResult(matched / n >= FOUND_ACCURACY, METHOD, n, payload.hex(), text,
                           matched / n, chance, blocks)
