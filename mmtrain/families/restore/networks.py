"""The restoration network: transformers' Swin2SRForImageSuperResolution (SwinIR's
successor), built from config or loaded from a local folder, inside a thin wrapper that
does what transformers leaves to the caller:

- padding: the input is reflect-padded to a multiple of the window size here (Swin2SR's
  own padding breaks its un-embedding for sides that are not multiples) and the output
  cropped back;
- an optional skip (`residual`): output = base(x) + Swin2SR(x) - mean, where base is the
  bicubic upsampling of the RGB input (the input itself at scale 1) and `mean` the
  constant Swin2SR adds back after its own normalisation. With the head's last conv
  zeroed, the untrained model outputs exactly the baseline and only learns the detail
  (a residual over bicubic, as VDSR/DnCNN do; SwinIR's denoising head is such a skip).
  The Swin2SR weights are untouched: an export records the skip (see export.py).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution

from mmtrain.families.restore.config import RestoreConfig

log = logging.getLogger(__name__)
SKIP_KEY = "mmtrain_residual"  # Swin2SRConfig attribute our exports carry: the skip is on


def task_scale(cfg: RestoreConfig) -> int:
    return cfg.scale if cfg.task == "super_resolution" else 1


def input_channels(cfg: RestoreConfig) -> int:
    return 4 if cfg.task == "inpainting" else 3  # RGB + the hole mask


def swin2sr_config(cfg: RestoreConfig) -> Swin2SRConfig:
    s = cfg.swin
    if len(s.depths) != len(s.num_heads):
        raise ValueError(f"restore.swin: depths {s.depths} and num_heads {s.num_heads} need "
                         "one entry per stage each")
    if s.embed_dim % max(s.num_heads):
        raise ValueError(f"restore.swin: embed_dim {s.embed_dim} must divide by every "
                         f"num_heads entry ({s.num_heads})")
    scale = task_scale(cfg)
    if s.upsampler == "nearest+conv" and scale != 4:
        raise ValueError("restore.swin.upsampler nearest+conv is x4 only; use pixelshuffle")
    extra = {SKIP_KEY: True} if cfg.residual else {}
    return Swin2SRConfig(
        image_size=cfg.crop_size // scale, num_channels=input_channels(cfg), num_channels_out=3,
        embed_dim=s.embed_dim, depths=list(s.depths), num_heads=list(s.num_heads),
        window_size=s.window_size, mlp_ratio=s.mlp_ratio, upscale=scale,
        upsampler=s.upsampler, resi_connection=s.resi_connection,
        drop_path_rate=s.drop_path_rate, img_range=1.0, **extra)


def build_swin2sr(cfg: RestoreConfig) -> tuple[Swin2SRForImageSuperResolution, bool]:
    """-> (the model, whether the residual skip applies)."""
    if cfg.pretrained_path:
        model = Swin2SRForImageSuperResolution.from_pretrained(cfg.pretrained_path,
                                                               local_files_only=True)
        mc = model.config
        if mc.upscale != task_scale(cfg) or mc.num_channels != input_channels(cfg):
            raise ValueError(
                f"restore.pretrained_path {cfg.pretrained_path}: a x{mc.upscale} model with "
                f"{mc.num_channels} input channels, but task {cfg.task} needs "
                f"x{task_scale(cfg)} and {input_channels(cfg)}; pick a matching checkpoint "
                "or set model.restore.task/scale to the checkpoint's")
        residual = bool(getattr(mc, SKIP_KEY, False))  # published checkpoints: no skip
        if residual != cfg.residual:
            log.info("restore: %s %s the bicubic/identity skip (its config decides; "
                     "model.restore.residual=%s ignored)", cfg.pretrained_path,
                     "uses" if residual else "has no", cfg.residual)
        return model, residual
    model = Swin2SRForImageSuperResolution(swin2sr_config(cfg))
    if cfg.residual:
        last = last_conv(model)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return model, cfg.residual


def last_conv(model: Swin2SRForImageSuperResolution) -> nn.Conv2d:
    """The head's final convolution (the one that writes the output channels)."""
    convs = [m for m in model.upsample.modules() if isinstance(m, nn.Conv2d)] \
        if hasattr(model, "upsample") else [model.final_convolution]
    return convs[-1]


class Restorer(nn.Module):
    """(B, C, h, w) in [0, 1] -> (B, 3, h*scale, w*scale): Swin2SR with padding and skip."""

    def __init__(self, model: Swin2SRForImageSuperResolution, residual: bool) -> None:
        super().__init__()
        self.model = model
        self.residual = residual
        self.scale = int(model.config.upscale)
        self.window = int(model.config.window_size)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.window, -w % self.window
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x
        out = self.model(pixel_values=padded).reconstruction
        out = out[..., :h * self.scale, :w * self.scale]
        if self.residual:
            out = out - self.model.swin2sr.mean + self.base(x)
        return out

    def base(self, x: Tensor) -> Tensor:
        rgb = x[:, :3]
        if self.scale == 1:
            return rgb
        return F.interpolate(rgb, scale_factor=self.scale, mode="bicubic", align_corners=False)

    @torch.no_grad()
    def restore(self, x: Tensor) -> Tensor:
        """Inference, clamped to [0, 1]."""
        return self(x).clamp(0, 1)
