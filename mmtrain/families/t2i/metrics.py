"""Text-to-image metrics: prompt agreement on the synthetic world (no network), and
torchmetrics' FID and CLIP score when their feature networks lie on local disk.

Prompt agreement asks whether an image shows its prompt's colour and shape. Colour is
`dominant_colour` (the existing colour_match). Shape comes from the object's outline:
segment the object (a soft mask: each pixel's position between the background and object
colours), measure its radius per direction around the centroid, and read two harmonics
of that profile: a triangle has a strong 3-fold one, a square and a diamond a 4-fold one
of opposite sign (corners on the diagonals vs on the axes), a circle neither. These do
not depend on position, size or colour; the class centres are calibrated on the world's
own renders at the image's resolution (docs/t2i-metrics.md has the accuracy).

FID and CLIP score never download: a path that is not configured or not on disk skips the
metric with a logged reason. torch-fidelity (torchmetrics' Inception) requires
torchvision, which this project cannot install, so FID's features come from a local
transformers CLIP folder (a Frechet distance in CLIP space, as in Kynkaanniemi et al.
2023) unless the path is an Inception weights file and torch-fidelity is present.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mmtrain.data.synth.scenes import (
    BACKGROUNDS,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    dominant_colour,
    render_scene,
    sample_scene,
)

log = logging.getLogger(__name__)
_PALETTE_NAMES = list(COLOURS) + list(BACKGROUNDS)
_PALETTE = np.array([COLOURS.get(n) or BACKGROUNDS[n] for n in _PALETTE_NAMES], np.float32)
_SECTORS = 16  # directions around the centroid; enough for harmonics 3 and 4
_MIN_OBJECT = 0.01  # an object covers at least this fraction of the image


# ---- shape ------------------------------------------------------------------------------
def object_alpha(image: Image.Image | np.ndarray) -> np.ndarray | None:
    """Per pixel, how much of it is the object (0 background .. 1 object), or None when no
    object colour covers enough of the image. The object colour is the median of the
    pixels nearest the dominant palette colour; the background the median border pixel."""
    px = np.asarray(image, np.float32)[..., :3]
    flat = px.reshape(-1, 3)
    nearest = ((flat[:, None] - _PALETTE[None]) ** 2).sum(-1).argmin(1)
    counts = np.bincount(nearest, minlength=len(_PALETTE))[: len(COLOURS)]
    obj = int(counts.argmax())
    if counts[obj] < _MIN_OBJECT * len(flat):
        return None
    fg = np.median(flat[nearest == obj], 0)
    bg = np.median(np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]]), 0)
    axis = fg - bg
    alpha = ((flat - bg) @ axis) / max(float(axis @ axis), 1e-6)
    # a ramp from 0.25 to 0.75: edge pixels keep their share, faint noise (which would
    # add mass in every direction) none
    return np.clip((alpha - 0.25) * 2, 0, 1).reshape(px.shape[:2])


def shape_features(alpha: np.ndarray) -> np.ndarray:
    """[|3-fold harmonic|, signed 4-fold harmonic] of the object's radius profile. The
    radius per sector comes from the sector's area (area = r^2 * angle / 2), so partial
    pixels count and a 32 px image still gives a smooth profile."""
    h, w = alpha.shape
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    area = alpha.sum()
    cy, cx = (alpha * ys).sum() / area, (alpha * xs).sum() / area
    angle = np.arctan2(ys - cy, xs - cx)
    sector = ((angle + np.pi) / (2 * np.pi) * _SECTORS).astype(int) % _SECTORS
    mass = np.bincount(sector.ravel(), weights=alpha.ravel(), minlength=_SECTORS)
    radius = np.sqrt(mass * _SECTORS / np.pi)
    radius = radius / max(radius.mean(), 1e-6)
    centres = (np.arange(_SECTORS) + 0.5) / _SECTORS * 2 * np.pi - np.pi

    def harmonic(n: int) -> complex:
        return 2 * (radius * np.exp(-1j * n * centres)).mean()

    return np.array([abs(harmonic(3)), harmonic(4).real])


@functools.lru_cache(maxsize=8)
def _calibration(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Class centres and the pooled within-class spread of the features, measured on the
    world's renders of every shape, size and position (two colour/background pairs)."""
    feats: dict[str, list[np.ndarray]] = {s: [] for s in SHAPES}
    for shape in SHAPES:
        for size_name in SIZES:
            for position in POSITIONS:
                for colour, background in (("red", "white"), ("blue", "gray")):
                    image = render_scene(Scene(colour, shape, size_name, position, background), size)
                    feats[shape].append(shape_features(object_alpha(image)))
    centres = np.stack([np.mean(feats[s], 0) for s in SHAPES])
    spread = np.concatenate([np.asarray(feats[s]) - c for s, c in zip(SHAPES, centres, strict=True)])
    return centres, spread.std(0) + 1e-3


def classify_shape(image: Image.Image | np.ndarray) -> str | None:
    """The world's shape nearest to the image's object, or None when there is no object."""
    alpha = object_alpha(image)
    if alpha is None:
        return None
    size = min(alpha.shape)
    centres, spread = _calibration(min(size, 64))  # features settle by 64 px
    distance = (((shape_features(alpha) - centres) / spread) ** 2).sum(1)
    return SHAPES[int(distance.argmin())]


def prompt_agreement(images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, float]:
    """Fractions of images showing their prompt's colour (`colour_match`, over prompts
    naming a colour), shape (`shape_match`, over prompts naming a shape) and both (`both`,
    over prompts naming both). A key is absent when no prompt names what it scores."""
    hits: dict[str, list[bool]] = {"colour_match": [], "shape_match": [], "both": []}
    for image, prompt in zip(images, prompts, strict=True):
        words = set(re.findall(r"[a-z]+", prompt.lower()))
        colour = next((c for c in COLOURS if c in words), None)
        shape = next((s for s in SHAPES if s in words), None)
        colour_ok = colour is not None and dominant_colour(image) == colour
        shape_ok = shape is not None and classify_shape(image) == shape
        if colour:
            hits["colour_match"].append(colour_ok)
        if shape:
            hits["shape_match"].append(shape_ok)
        if colour and shape:
            hits["both"].append(colour_ok and shape_ok)
    return {k: sum(v) / len(v) for k, v in hits.items() if v}


# ---- networks from local folders ----------------------------------------------------------
_logged: set[str] = set()


def _skip(metric: str, reason: str) -> None:
    """Logs why a metric is skipped, once per reason (validation runs many times)."""
    if (key := f"{metric}: {reason}") not in _logged:
        _logged.add(key)
        log.warning("%s skipped: %s", metric, reason)
    return None


def _clip_folder(path: str | None, metric: str, field: str) -> Path | None:
    if not path:
        return _skip(metric, f"no local CLIP folder configured (metrics.{field}); nothing is "
                             "downloaded")
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        return _skip(metric, f"{folder} is not a transformers model folder (no config.json); "
                             f"set metrics.{field} to a folder written by save_pretrained")
    return folder


def _tensor(out) -> torch.Tensor:
    # transformers 5 returns model outputs from get_*_features, 4.x tensors (torchmetrics
    # 1.9's CLIPScore expects tensors: Lightning-AI/torchmetrics#3407)
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class _TensorFeatures(torch.nn.Module):
    def __init__(self, clip) -> None:
        super().__init__()
        self.clip, self.config = clip, clip.config

    def get_image_features(self, *args, **kwargs) -> torch.Tensor:
        return _tensor(self.clip.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs) -> torch.Tensor:
        return _tensor(self.clip.get_text_features(*args, **kwargs))


class ClipImageFeatures(torch.nn.Module):
    """FID's feature network from a local CLIP folder (CLIPModel or a vision tower with
    projection): float images in [0, 1] -> projected image embeddings."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        from transformers import AutoConfig, CLIPModel, CLIPVisionModelWithProjection

        kind = AutoConfig.from_pretrained(folder, local_files_only=True).model_type
        cls = CLIPModel if kind == "clip" else CLIPVisionModelWithProjection
        self.model = cls.from_pretrained(folder, local_files_only=True).eval()
        vision = self.model.config.vision_config if kind == "clip" else self.model.config
        self.size = vision.image_size
        self.num_features = self.model.config.projection_dim
        mean, std = _normalisation(Path(folder))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float(), size=(self.size, self.size), mode="bicubic",
                          antialias=True, align_corners=False)
        x = (x - self.mean) / self.std
        if hasattr(self.model, "get_image_features"):
            return _tensor(self.model.get_image_features(pixel_values=x))
        return self.model(pixel_values=x).image_embeds


def _normalisation(folder: Path) -> tuple[list[float], list[float]]:
    """The folder's image processor mean/std (either file name), else CLIP's."""
    for name in ("preprocessor_config.json", "processor_config.json"):
        if (folder / name).is_file():
            cfg = json.loads((folder / name).read_text())
            cfg = cfg.get("image_processor", cfg)
            if "image_mean" in cfg:
                return cfg["image_mean"], cfg["image_std"]
    return [0.4815, 0.4578, 0.4082], [0.2686, 0.2613, 0.2758]


@functools.lru_cache(maxsize=2)
def _fid_features(path: str) -> torch.nn.Module:
    return ClipImageFeatures(path)


@functools.lru_cache(maxsize=2)
def _clip_and_processor(path: str):
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
    return _TensorFeatures(model), CLIPProcessor.from_pretrained(path, local_files_only=True)


def _as_tensor(images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
    """uint8 N x 3 x H x W."""
    if isinstance(images, torch.Tensor):
        return images if images.dtype == torch.uint8 else (images.clamp(0, 1) * 255).round().byte()
    arrays = [np.asarray(img.convert("RGB")) for img in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


# ---- FID and CLIP score -------------------------------------------------------------------
def fid(real, fake, feature_path: str | None, device: str | torch.device = "cpu") -> float | None:
    """torchmetrics' FrechetInceptionDistance between two image sets (PIL images, or
    N x 3 x H x W tensors: uint8, or float in [0, 1]). `feature_path`: a local CLIP folder
    (features: its image embeddings), or an Inception weights file for torchmetrics' own
    Inception (needs torch-fidelity). None (logged) when neither is available."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if feature_path and Path(feature_path).is_file():
        try:
            metric = FrechetInceptionDistance(feature=2048, normalize=False,
                                              feature_extractor_weights_path=str(feature_path))
        except ModuleNotFoundError as e:
            return _skip("fid", f"{feature_path} is an Inception weights file, but "
                                f"torchmetrics' Inception needs torch-fidelity ({e}); it "
                                "requires torchvision, so give a local CLIP folder instead")
        scale = False
    else:
        folder = _clip_folder(feature_path, "fid", "fid_feature_path")
        if folder is None:
            return None
        metric = FrechetInceptionDistance(feature=_fid_features(str(folder)), normalize=True)
        scale = True
    metric = metric.to(device)
    for images, is_real in ((real, True), (fake, False)):
        batch = _as_tensor(images).to(device)
        metric.update(batch.float() / 255 if scale else batch, real=is_real)
    return float(metric.compute())


def clip_score(images, prompts: Sequence[str], clip_path: str | None,
               device: str | torch.device = "cpu") -> float | None:
    """torchmetrics' CLIPScore (100 x cosine of image and prompt embeddings, averaged, floored
    at 0) with a local CLIP folder (model + processor); None (logged) without one."""
    from torchmetrics.multimodal.clip_score import CLIPScore

    folder = _clip_folder(clip_path, "clip_score", "clip_path")
    if folder is None:
        return None
    metric = CLIPScore(model_name_or_path=lambda: _clip_and_processor(str(folder))).to(device)
    metric.update(list(_as_tensor(images).to(device)), list(prompts))
    return float(metric.compute())


def synthetic_reference(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    """`n` scenes of the synthetic world at `size` px: FID's real set for runs on it."""
    rng = np.random.default_rng(seed)
    return [render_scene(sample_scene(rng), size) for _ in range(n)]


def evaluate_metrics(images: Sequence[Image.Image], prompts: Sequence[str], *,
                     fid_feature_path: str | None = None, clip_path: str | None = None,
                     reference: Sequence[Image.Image] | None = None, fid_reference: int = 64,
                     device: str | torch.device = "cpu") -> dict[str, float]:
    """Everything this file measures for one validation: prompt agreement always; FID
    (against `reference`, else `fid_reference` synthetic scenes) and CLIP score when their
    networks are configured and on disk."""
    out = prompt_agreement(images, prompts)
    if fid_feature_path:
        real = reference if reference is not None else synthetic_reference(
            fid_reference, images[0].width)
        value = fid(real, images, fid_feature_path, device)
    else:
        value = _skip("fid", "no local feature network configured (metrics.fid_feature_path)")
    if value is not None:
        out["fid"] = value
    if (value := clip_score(images, prompts, clip_path, device)) is not None:
        out["clip_score"] = value
    return out
