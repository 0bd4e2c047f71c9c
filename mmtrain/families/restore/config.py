"""Typed config of the image-restoration family (conf/model/restore/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmtrain.config.schema import bounded, choice
from mmtrain.families.shared.adversarial_config import AdversarialConfig


@dataclass
class SwinConfig:
    """transformers' Swin2SRConfig fields we expose (the rest keep its defaults)."""

    embed_dim: int = bounded(32, ge=4)
    depths: list[int] = field(default_factory=lambda: [2, 2])  # Swin layers per stage
    num_heads: list[int] = field(default_factory=lambda: [2, 2])  # per stage
    window_size: int = bounded(8, ge=2)
    mlp_ratio: float = bounded(2.0, gt=0)
    # pixelshuffle: conv + pixel shuffle(s) + conv (classical SR, and scale 1);
    # pixelshuffledirect: one conv + shuffle (lightweight SR); nearest+conv: x4 real-world
    upsampler: str = choice("pixelshuffledirect", "pixelshuffle", "pixelshuffledirect",
                            "nearest+conv")
    resi_connection: str = choice("1conv", "1conv", "3conv")
    drop_path_rate: float = bounded(0.0, ge=0, le=1)


@dataclass
class DegradationConfig:
    """What turns a clean image into a training input, drawn per image from the step's
    generator (Real-ESRGAN's first-order order: blur -> downsample -> noise -> JPEG)."""

    blur_prob: float = bounded(0.0, ge=0, le=1)
    blur_sigma: list[float] = field(default_factory=lambda: [0.2, 2.0])  # px, uniform
    blur_kernel: int = bounded(7, ge=3)  # odd side of the Gaussian kernel
    noise_prob: float = bounded(1.0, ge=0, le=1)
    gaussian_sigma: list[float] = field(default_factory=lambda: [10.0, 40.0])  # on 0..255
    poisson_prob: float = bounded(0.0, ge=0, le=1)  # share of noisy images given shot noise
    poisson_peak: list[float] = field(default_factory=lambda: [10.0, 200.0])  # photons at white
    jpeg_prob: float = bounded(0.0, ge=0, le=1)
    jpeg_quality: list[int] = field(default_factory=lambda: [30, 95])
    # inpainting holes: rectangles and brush strokes per image, sides as image fractions
    mask_rectangles: list[int] = field(default_factory=lambda: [1, 3])
    mask_rectangle_size: list[float] = field(default_factory=lambda: [0.1, 0.35])
    mask_strokes: list[int] = field(default_factory=lambda: [0, 2])
    mask_stroke_width: list[float] = field(default_factory=lambda: [0.04, 0.1])


@dataclass
class PerceptualConfig:
    """Feature distance from a fixed network: VGG-19 `features` (torchvision's layout) when
    `weights_path` names a local torchvision vgg19 state dict, else a small fixed
    random-feature network (pretrained-free; the log says so)."""

    weights_path: str | None = None
    # VGG-19 layer -> weight (Real-ESRGAN's choice; conv features before their ReLU)
    layers: dict[str, float] = field(default_factory=lambda: {
        "conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0})


@dataclass
class DiscriminatorConfig:  # mmtrain.families.shared.gan.MultiScalePatchGAN
    num_scales: int = bounded(2, ge=1)
    channels: int = bounded(32, ge=4)
    num_layers: int = bounded(3, ge=1)


@dataclass
class RestoreConfig:
    task: str = choice("denoise", "denoise", "super_resolution", "inpainting")
    scale: int = choice(2, 2, 4)  # super_resolution only; denoise and inpainting run at 1
    # A local transformers folder (Swin2SRForImageSuperResolution: a published Swin2SR
    # checkpoint or one of our exports); `swin` and `residual` then come from the folder.
    pretrained_path: str | None = None
    swin: SwinConfig = field(default_factory=SwinConfig)
    # Predict a residual over the input brought to the output size (bicubic upsampling for
    # super-resolution, the input itself otherwise): the untrained model starts at that
    # baseline instead of at a constant. Exports record it (see export.py).
    residual: bool = True
    gradient_checkpointing: bool = False  # recompute each Swin stage in backward
    crop_size: int = bounded(64, ge=8)  # training crop of the clean (target) image
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    charbonnier_eps: float = bounded(1e-3, gt=0)
    # where the pixel loss is measured: RGB, the luma (Y) channel, or their mean
    pixel_space: str = choice("rgb", "rgb", "y", "rgb+y")
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    # evaluate(): held-out images, degraded from the evaluation seed
    eval_images: str = choice("scenes", "scenes", "photos")  # rendered scenes | skimage photos
    eval_count: int = bounded(8, ge=1)  # scenes rendered (photos: the held-out set)
    eval_size: int = bounded(64, ge=8)  # rendered scene side
    eval_photo_crop: int | None = bounded(None, ge=16)  # photos: centre crop side; None: whole
    panel_rows: int = bounded(4, ge=1)
