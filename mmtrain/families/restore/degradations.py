"""Degradations generated on the fly from clean images.

Every random choice (which degradations apply, their strengths, noise, mask shapes, crop
positions) is drawn from the torch.Generator passed in, in a fixed order, so the same
generator state gives the same degraded batch (the curriculum keys it by step and rank).
Order, after Real-ESRGAN's first-order model: blur -> downsample -> noise -> JPEG; the
inpainting mask last. Images are float tensors in [0, 1], (B, 3, H, W).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from mmtrain.families.restore.config import DegradationConfig

TASKS = ("denoise", "super_resolution", "inpainting")
HOLE_FILL = 0.5  # what a masked pixel holds in the network input (the mask says where)


@dataclass
class Degraded:
    inputs: Tensor  # what the network reads: RGB (+ the mask channel for inpainting)
    target: Tensor  # the clean image
    baseline: Tensor  # the input at the target's size: what doing nothing scores
    mask: Tensor | None = None  # (B, 1, H, W), 1 = hole (inpainting)


def degrade(clean: Tensor, task: str, scale: int, cfg: DegradationConfig,
            generator: torch.Generator) -> Degraded:
    if task not in TASKS:
        raise ValueError(f"restore: unknown task {task!r}; valid: {', '.join(TASKS)}")
    n = clean.shape[0]
    x = clean
    if cfg.blur_prob > 0:
        x = blur(x, _draws(n, cfg.blur_prob, cfg.blur_sigma, generator), cfg.blur_kernel)
    if task == "super_resolution":
        x = downsample(x, scale)
    if cfg.noise_prob > 0:
        x = noise(x, cfg, generator)
    if cfg.jpeg_prob > 0:
        qualities = _draws(n, cfg.jpeg_prob, [float(q) for q in cfg.jpeg_quality], generator)
        x = jpeg(x, qualities)
    mask = None
    if task == "inpainting":
        mask = random_masks(n, *x.shape[-2:], cfg, generator).to(x)
        x = x * (1 - mask) + HOLE_FILL * mask
        inputs = torch.cat([x, mask], 1)
    else:
        inputs = x
    return Degraded(inputs=inputs, target=clean, baseline=upsample(x, scale)
                    if task == "super_resolution" else x, mask=mask)


def _draws(n: int, prob: float, span, generator: torch.Generator) -> Tensor:
    """Per image: a strength uniform in `span`, or 0 (not applied) with chance 1 - prob."""
    on = torch.rand(n, generator=generator) < prob
    lo, hi = float(span[0]), float(span[1])
    value = lo + (hi - lo) * torch.rand(n, generator=generator)
    return torch.where(on, value, torch.zeros_like(value))


# ---- blur and resampling -------------------------------------------------------------
def gaussian_kernels(sigmas: Tensor, size: int) -> Tensor:
    """(n, size, size) normalised isotropic Gaussians; sigma 0 gives the identity."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    d2 = r[None, :, None] ** 2 + r[None, None, :] ** 2
    s = sigmas.float().clamp_min(1e-6)[:, None, None]
    k = torch.exp(-d2 / (2 * s**2))
    return k / k.sum((1, 2), keepdim=True)


def blur(x: Tensor, sigmas: Tensor, size: int) -> Tensor:
    """Each image blurred with its own Gaussian (depthwise conv, reflected borders)."""
    size = size + 1 - size % 2  # odd
    n, c, h, w = x.shape
    k = gaussian_kernels(sigmas, size).to(x)  # (n, k, k)
    weight = k[:, None].repeat_interleave(c, 0)  # (n*c, 1, k, k)
    pad = size // 2
    padded = F.pad(x.reshape(1, n * c, h, w), (pad,) * 4, mode="reflect")
    return F.conv2d(padded, weight, groups=n * c).reshape(n, c, h, w)


def downsample(x: Tensor, scale: int) -> Tensor:
    """Bicubic with antialiasing (MATLAB imresize's kernel widening), the classical SR
    degradation; sides must divide by `scale`."""
    if x.shape[-1] % scale or x.shape[-2] % scale:
        raise ValueError(f"restore: image side {tuple(x.shape[-2:])} is not divisible by "
                         f"scale {scale}; use crops whose side is a multiple of it")
    return F.interpolate(x, scale_factor=1 / scale, mode="bicubic", antialias=True,
                         align_corners=False).clamp(0, 1)


def upsample(x: Tensor, scale: int) -> Tensor:
    """The bicubic baseline every SR method is compared against (identity at scale 1)."""
    if scale == 1:
        return x
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


# ---- noise and compression -----------------------------------------------------------
def noise(x: Tensor, cfg: DegradationConfig, generator: torch.Generator) -> Tensor:
    """Per image: none (chance 1 - noise_prob), Poisson shot noise (poisson_prob of the noisy
    ones) or additive Gaussian noise."""
    n = x.shape[0]
    noisy = torch.rand(n, generator=generator) < cfg.noise_prob
    shot = torch.rand(n, generator=generator) < cfg.poisson_prob
    lo, hi = cfg.gaussian_sigma
    sigma = (lo + (hi - lo) * torch.rand(n, generator=generator)) / 255.0
    plo, phi = np.log(cfg.poisson_peak[0]), np.log(cfg.poisson_peak[1])
    peak = torch.exp(plo + (phi - plo) * torch.rand(n, generator=generator))  # log-uniform
    out = x + torch.randn(x.shape, generator=generator).to(x) * sigma.to(x)[:, None, None, None]
    if cfg.poisson_prob > 0:
        rate = (x.clamp(0, 1) * peak.to(x)[:, None, None, None]).float().cpu()
        poisson = torch.poisson(rate, generator=generator).to(x) / peak.to(x)[:, None, None, None]
        out = torch.where(shot.to(x.device)[:, None, None, None], poisson, out)
    return torch.where(noisy.to(x.device)[:, None, None, None], out, x).clamp(0, 1)


def jpeg(x: Tensor, qualities: Tensor) -> Tensor:
    """JPEG round trip through Pillow per image at its quality (0: left alone)."""
    out = []
    for image, q in zip(x, qualities.tolist(), strict=True):
        if q <= 0:
            out.append(image)
            continue
        array = (image.detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=int(round(q)))
        decoded = np.asarray(Image.open(buffer).convert("RGB"))
        out.append(torch.from_numpy(decoded.copy()).permute(2, 0, 1).to(x) / 255.0)
    return torch.stack(out)


# ---- inpainting masks ----------------------------------------------------------------
def random_masks(n: int, h: int, w: int, cfg: DegradationConfig,
                 generator: torch.Generator) -> Tensor:
    """(n, 1, h, w) holes: axis-aligned rectangles plus free-form brush strokes (random
    walks of thick segments), at least one rectangle or stroke per image."""
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    masks = torch.zeros(n, 1, h, w)

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    def count(span) -> int:
        return int(torch.randint(int(span[0]), int(span[1]) + 1, (), generator=generator))

    for i in range(n):
        rects, strokes = count(cfg.mask_rectangles), count(cfg.mask_strokes)
        rects = max(rects, int(strokes == 0))  # never an empty mask
        for _ in range(rects):
            rh, rw = (uniform(*cfg.mask_rectangle_size) * h, uniform(*cfg.mask_rectangle_size) * w)
            y0, x0 = uniform(0, h - rh), uniform(0, w - rw)
            masks[i, 0][(yy >= y0) & (yy < y0 + rh) & (xx >= x0) & (xx < x0 + rw)] = 1
        for _ in range(strokes):
            width = uniform(*cfg.mask_stroke_width) * min(h, w)
            y, x = uniform(0, h), uniform(0, w)
            for _ in range(count([2, 5])):
                angle, length = uniform(0, 2 * np.pi), uniform(0.1, 0.4) * min(h, w)
                y2 = min(max(y + length * np.sin(angle), 0), h)
                x2 = min(max(x + length * np.cos(angle), 0), w)
                masks[i, 0][_segment_distance(yy, xx, (y, x), (y2, x2)) <= width / 2] = 1
                y, x = y2, x2
    return masks


def _segment_distance(yy: Tensor, xx: Tensor, a: tuple[float, float],
                      b: tuple[float, float]) -> Tensor:
    ay, ax = a
    dy, dx = b[0] - ay, b[1] - ax
    t = ((yy - ay) * dy + (xx - ax) * dx) / max(dy * dy + dx * dx, 1e-9)
    t = t.clamp(0, 1)
    return torch.hypot(yy - (ay + t * dy), xx - (ax + t * dx))


# ---- augmentation of the clean images ------------------------------------------------
def random_crops(images: Tensor, size: int, generator: torch.Generator, *,
                 flips: bool = True) -> Tensor:
    """A `size` crop per image at a random position, randomly flipped and transposed
    (the 8 dihedral symmetries of SR training) when `flips`; uint8 in, float [0, 1] out."""
    n, _, h, w = images.shape
    size = min(size, h, w)
    tops = torch.randint(0, h - size + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(0, w - size + 1, (n,), generator=generator).tolist()
    sym = torch.randint(0, 8, (n,), generator=generator).tolist()
    out = []
    for img, t, left, s in zip(images, tops, lefts, sym, strict=True):
        crop = img[:, t:t + size, left:left + size]
        if flips:
            if s & 1:
                crop = crop.flip(-1)
            if s & 2:
                crop = crop.flip(-2)
            if s & 4:
                crop = crop.transpose(-1, -2)
        out.append(crop)
    batch = torch.stack(out)
    return batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
