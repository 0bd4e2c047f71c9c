"""Restoration metrics (torchmetrics' PSNR and SSIM) and the gt | input | output panel.

Conventions of the SR literature: outputs rounded to 8 bits, PSNR/SSIM per image then
averaged, `scale` border pixels shaved for super-resolution, and the luma channel
Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 of ITU-R BT.601 (MATLAB's rgb2ycbcr).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)


def rgb_to_y(x: Tensor) -> Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 1, H, W) luma in [16/255, 235/255]."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    return ((16 + 65.481 * r + 128.553 * g + 24.966 * b) / 255)[:, None]


def quantize(x: Tensor) -> Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


def scores(output: Tensor, target: Tensor, shave: int = 0) -> dict[str, float]:
    """Mean per-image PSNR (RGB and Y) and SSIM (RGB and Y) of 8-bit-rounded images."""
    out, gt = quantize(output.float()), quantize(target.float())
    if shave:
        out, gt = out[..., shave:-shave, shave:-shave], gt[..., shave:-shave, shave:-shave]
    result = {}
    for space, (a, b) in {"rgb": (out, gt), "y": (rgb_to_y(out), rgb_to_y(gt))}.items():
        psnr = [peak_signal_noise_ratio(a[i:i + 1], b[i:i + 1], data_range=1.0)
                for i in range(len(a))]
        ssim = [structural_similarity_index_measure(a[i:i + 1], b[i:i + 1], data_range=1.0)
                for i in range(len(a))]
        result[f"psnr_{space}"] = float(torch.stack(psnr).mean())
        result[f"ssim_{space}"] = float(torch.stack(ssim).mean())
    return result


def _pil(x: Tensor, size: int) -> Image.Image:
    array = (quantize(x).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
    return Image.fromarray(array).resize((size, size), Image.NEAREST)


def panel(rows: list[tuple[Tensor, Tensor, Tensor]], labels: list[str] | None = None,
          side: int = 128) -> Image.Image:
    """One row per image: ground truth | degraded input | restored output (the input shown
    at the output's size with nearest-neighbour pixels, so its resolution is visible);
    an optional label under each row (e.g. PSNRs)."""
    header, footer = 14, 14 if labels else 0
    width, height = 3 * side, header + len(rows) * (side + footer)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(("ground truth", "input", "output")):
        draw.text((j * side + 4, 1), title, fill="black")
    for i, images in enumerate(rows):
        y = header + i * (side + footer)
        for j, img in enumerate(images):
            canvas.paste(_pil(img[:3], side), (j * side, y))
        if labels:
            draw.text((4, y + side + 1), labels[i][:64], fill="black")
    return canvas
