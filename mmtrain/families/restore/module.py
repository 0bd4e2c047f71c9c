"""Image restoration: denoising, super-resolution (x2, x4) and inpainting.

`self.restorer` wraps a stock transformers Swin2SRForImageSuperResolution (networks.py);
`self.discriminator` is the shared multi-scale PatchGAN (mmtrain/families/shared/gan.py).
Training inputs are made on the fly from clean images (degradations.py), every random
choice drawn from the step's generator. Losses, which phases weight:
  pixel        Charbonnier distance to the clean image (the PSNR-oriented phase)
  perceptual   VGG-19 feature distance (or the pretrained-free fallback)
  adversarial  the generator's PatchGAN loss (GAN fine-tuning; the joint module then runs
               the discriminator step on `discriminator_losses`, with its own optimizer)
mmagic's RealESRNet -> RealESRGAN pattern is a recipe: a phase with `pixel` only, then a
phase with all three from its weights.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mmtrain.data.synth import scenes
from mmtrain.families.base import FamilyModule
from mmtrain.families.restore import batch as batch_codec
from mmtrain.families.restore import metrics as restore_metrics
from mmtrain.families.restore import networks
from mmtrain.families.restore.config import RestoreConfig
from mmtrain.families.restore.degradations import Degraded, degrade, random_crops
from mmtrain.families.shared import gan


class Restore(FamilyModule):
    name = "restore"
    default_loss_weights = {"pixel": 1.0}

    def __init__(self, config: RestoreConfig) -> None:
        super().__init__()
        self.config = config
        model, residual = networks.build_swin2sr(config)
        if config.gradient_checkpointing:  # renamed in transformers 5; 4.x has the old name
            getattr(model, "activation_checkpointing_enable",
                    model.gradient_checkpointing_enable)()
        self.restorer = networks.Restorer(model, residual)
        self.scale = self.restorer.scale
        d = config.discriminator
        self.discriminator = gan.MultiScalePatchGAN(3, d.num_scales, d.channels, d.num_layers)
        # The perceptual network is fixed and rebuilt from its source (a weights file or
        # a seed): kept out of the module tree, so it is never trained, frozen-tower
        # checkpointed or exported. Built on first use.
        object.__setattr__(self, "_perceptual", None)
        self._fakes: tuple[Tensor, Tensor] | None = None  # (restored, clean) for the D step

    # ---- data -------------------------------------------------------------------------
    def sample_decoder(self):
        return batch_codec.decode_sample

    def required_fields(self) -> dict[str, tuple[str, ...]]:
        return batch_codec.FIELDS

    collate = staticmethod(batch_codec.collate)

    def degrade(self, images: Tensor, generator: torch.Generator, crop: bool = True) -> Degraded:
        """Clean uint8 images -> a degraded training pair (random crop + symmetry first)."""
        if crop:
            size = self.config.crop_size - self.config.crop_size % self.scale
            clean = random_crops(images, size, generator)
        else:
            h, w = images.shape[-2:]
            clean = images[..., :h - h % self.scale, :w - w % self.scale]
            clean = clean.float() / 255 if clean.dtype == torch.uint8 else clean.float()
        cfg = self.config
        return degrade(clean.to(self.device), cfg.task, self.scale, cfg.degradation, generator)

    # ---- losses -----------------------------------------------------------------------
    def losses(self, batch: dict, active: set[str], generator: torch.Generator) -> dict[str, Tensor]:
        d = self.degrade(batch["image"], generator)
        out = self.restorer(d.inputs)
        result: dict[str, Tensor] = {}
        if "pixel" in active:
            result["pixel"] = self.pixel_loss(out, d.target)
        if "perceptual" in active:
            result["perceptual"] = self.perceptual_net()(out, d.target)
        if "adversarial" in active:
            logits = self.discriminator(out)
            result["adversarial"] = gan.generator_loss(logits, self.config.adversarial.loss)
        self._fakes = (out.detach(), d.target)
        return result

    def pixel_loss(self, out: Tensor, target: Tensor) -> Tensor:
        """Charbonnier sqrt(d^2 + eps^2), in RGB, on luma, or the mean of both."""
        eps2 = self.config.charbonnier_eps ** 2
        space = self.config.pixel_space
        terms = []
        if space in ("rgb", "rgb+y"):
            terms.append(torch.sqrt((out - target) ** 2 + eps2).mean())
        if space in ("y", "rgb+y"):
            dy = restore_metrics.rgb_to_y(out) - restore_metrics.rgb_to_y(target)
            terms.append(torch.sqrt(dy ** 2 + eps2).mean())
        return sum(terms) / len(terms)

    def perceptual_net(self):
        from mmtrain.families.shared.perceptual import PerceptualLoss

        if self._perceptual is None:
            p = self.config.perceptual
            object.__setattr__(self, "_perceptual", PerceptualLoss(p.weights_path, p.layers))
        return self._perceptual.to(self.device)

    # ---- adversarial (driven by the joint module's GAN phases) ------------------------
    def discriminators(self, active: set[str]) -> dict[str, torch.nn.Module]:
        return {"discriminator": self.discriminator} if "adversarial" in active else {}

    def adversarial_config(self) -> gan.AdversarialConfig:
        return self.config.adversarial

    def discriminator_losses(self, batch: dict, active: set[str], generator: torch.Generator,
                             step: int = 0) -> dict[str, Tensor]:
        """The D loss on the clean images and the restorations `losses()` just made on
        this batch (detached), plus lazy R1 on the clean ones every `r1_every`-th
        discriminator step (`step` counts them) when r1_weight > 0."""
        if self._fakes is None:
            raise RuntimeError("restore: discriminator_losses() needs losses() on the same "
                               "batch first (it reuses that step's restorations)")
        fake, real = self._fakes
        adv = self.config.adversarial
        r1 = adv.r1_weight > 0 and step % adv.r1_every == 0
        real = real.detach().requires_grad_(r1)
        real_logits = self.discriminator(real)
        out = {"discriminator": gan.discriminator_loss(real_logits, self.discriminator(fake),
                                                       adv.loss)}
        if r1:  # lazy R1 (StyleGAN2): scaled by r1_every to match an every-step penalty
            out["r1"] = adv.r1_weight * adv.r1_every * gan.r1_penalty(real, real_logits)
        return out

    # ---- evaluation -------------------------------------------------------------------
    def eval_images(self, seed: int) -> list[tuple[str, Tensor]]:
        """Held-out clean images as (name, (3, H, W) uint8): skimage photos never cut into
        training crops, or scenes rendered from `seed` (not the shards' stream)."""
        cfg = self.config
        if cfg.eval_images == "photos":
            from mmtrain.families.restore.photos import held_out_photos

            found = []
            for name, array in held_out_photos():
                image = torch.from_numpy(array).permute(2, 0, 1)
                if cfg.eval_photo_crop:
                    side = min(cfg.eval_photo_crop, *image.shape[-2:])
                    top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
                    image = image[:, top:top + side, left:left + side]
                found.append((name, image))
            return found
        rng = np.random.default_rng([seed, 4242])
        return [(f"scene{i}", torch.from_numpy(np.array(
                    scenes.render_scene(scenes.sample_scene(rng), cfg.eval_size))).permute(2, 0, 1))
                for i in range(cfg.eval_count)]

    @torch.no_grad()
    def evaluate(self, seed: int) -> tuple[dict[str, float], dict]:
        """PSNR/SSIM (RGB and Y) of the restorations and of the baseline (the degraded
        input at the output size: bicubic upsampling for SR), and a panel."""
        was_training = self.training
        self.eval()
        shave = self.scale if self.scale > 1 else 0
        ours, base, rows, labels = [], [], [], []
        for i, (name, image) in enumerate(self.eval_images(seed)):
            gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
            d = self.degrade(image[None], gen, crop=False)
            out = self.restorer.restore(d.inputs)
            s_out = restore_metrics.scores(out, d.target, shave)
            s_base = restore_metrics.scores(d.baseline, d.target, shave)
            ours.append(s_out)
            base.append(s_base)
            if len(rows) < self.config.panel_rows:
                rows.append(_square(d.target[0], d.inputs[0, :3], out[0], self.scale))
                labels.append(f"{name}: {'bicubic' if self.scale > 1 else 'input'} "
                              f"{s_base['psnr_rgb']:.2f} dB -> "
                              f"{s_out['psnr_rgb']:.2f} dB")
        self.train(was_training)
        metrics = {k: float(np.mean([s[k] for s in ours])) for k in ours[0]}
        metrics |= {f"baseline_{k}": float(np.mean([s[k] for s in base])) for k in base[0]}
        for space in ("rgb", "y"):
            metrics[f"gain_psnr_{space}"] = metrics[f"psnr_{space}"] - metrics[f"baseline_psnr_{space}"]
        return metrics, {"panel": restore_metrics.panel(rows, labels)}


def _square(target: Tensor, inputs: Tensor, out: Tensor, scale: int,
            side: int = 128) -> tuple[Tensor, Tensor, Tensor]:
    """The centre square (at most `side` output pixels) of gt, input and output alike."""
    h, w = target.shape[-2:]
    s = min(side, h, w) // scale * scale
    top, left = (h - s) // 2 // scale * scale, (w - s) // 2 // scale * scale
    lo = (slice(None), slice(top // scale, (top + s) // scale), slice(left // scale, (left + s) // scale))
    hi = (slice(None), slice(top, top + s), slice(left, left + s))
    return target[hi], inputs[lo], out[hi]
