"""The text-to-image family's GAN parts: two multi-scale PatchGANs, their losses, and
discriminator guidance at sampling (config: `adversarial`, docs/t2i.md "GAN parts").

- `autoencoder_discriminator` judges reconstructions against the input images in an
  autoencoder phase (`autoencoder_adversarial`, the VQGAN recipe: hinge loss, VQGAN's
  adaptive weight, no adversarial term before `disc_start` updates).
- `diffusion_discriminator` judges, in a diffusion phase (`adversarial`), the UNet's
  x0 estimate decoded by the frozen autoencoder against the autoencoder's decoding of the
  clean latents. Real images pass through the same decoder, so the discriminator cannot
  win on decoder artifacts the UNet has no way to fix; it judges what the UNet controls.
  At sampling the same discriminator guides: its realness gradient on the decoded x0
  estimate of each step is added to the latents (`DiscriminatorGuidance`).

Both train with their own optimizer in the curriculum's GAN path
(mmtrain/curriculum/adversarial.py): `losses()` caches the fakes here, the joint module
then calls `discriminator_losses()`.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from mmtrain.families.shared import gan
from mmtrain.families.t2i.config import DiscriminatorConfig

DISCRIMINATORS_DIR = "discriminators"
# loss name -> the module attribute of the discriminator that trains with it
LOSS_DISCRIMINATOR = {"autoencoder_adversarial": "autoencoder_discriminator",
                      "adversarial": "diffusion_discriminator"}


def build(cfg: DiscriminatorConfig) -> gan.MultiScalePatchGAN | None:
    if not cfg.enabled:
        return None
    return gan.MultiScalePatchGAN(3, cfg.num_scales, cfg.channels, cfg.num_layers)


# ---- the family hooks (module.py delegates) -------------------------------------------
def discriminators(module, active: set[str]) -> dict[str, nn.Module]:
    found = {}
    for loss, attr in LOSS_DISCRIMINATOR.items():
        if loss in active:
            d = getattr(module, attr)
            if d is None:
                raise ValueError(
                    f"the t2i loss '{loss}' needs the {attr.replace('_', ' ')}: set "
                    f"model.t2i.adversarial.{attr}.enabled=true (docs/t2i.md \"GAN parts\")")
            found[attr] = d
    return found


def on_phase_start(module, active: set[str]) -> None:
    """A discriminator without its loss in this phase stays frozen (no optimizer state, no
    unused parameters under DDP); the phase's update counter restarts (`disc_start`)."""
    trains = discriminators(module, active)
    for attr in LOSS_DISCRIMINATOR.values():
        d = getattr(module, attr)
        if d is not None and attr not in trains:
            d.requires_grad_(False)
    if hasattr(module, "gan_updates"):
        module.gan_updates.zero_()
    module._gan_fakes = {}


def discriminator_losses(module, batch: dict, active: set[str], step: int) -> dict[str, Tensor]:
    """Each active discriminator: real vs the fakes `losses()` cached (+ lazy R1)."""
    cfg = module.config.adversarial
    module.gan_updates.fill_(step + 1)  # updates done once this one is: `losses()` reads it
    out = {}
    for loss, attr in LOSS_DISCRIMINATOR.items():
        if loss not in active:
            continue
        real, fake = module._gan_fakes.pop(loss)
        d = getattr(module, attr)
        if real.shape[0] == 0:  # no sample of the batch qualified (max_timestep)
            out[loss] = sum(p.sum() for p in d.parameters()) * 0.0
            continue
        factor = _started(module) if loss == "autoencoder_adversarial" else 1.0
        r1 = cfg.r1_weight > 0 and step % cfg.r1_every == 0 and factor > 0
        real = real.detach().requires_grad_(r1)
        real_logits = d(real)
        out[loss] = factor * gan.discriminator_loss(real_logits, d(fake.detach()), cfg.loss)
        if r1:  # StyleGAN2's lazy R1: every r1_every steps, scaled up by r1_every
            out[f"{loss}_r1"] = cfg.r1_weight * cfg.r1_every * gan.r1_penalty(real, real_logits)
    return out


def _started(module) -> float:
    """VQGAN's disc_factor: 0 until `disc_start` updates of the phase are done."""
    return float(int(module.gan_updates) >= module.config.adversarial.disc_start)


# ---- generator side ---------------------------------------------------------------------
def autoencoder_loss(module, recon: Tensor, pixels: Tensor, nll: Tensor) -> Tensor:
    """The autoencoder's adversarial term: the generator loss on D(reconstruction), times
    VQGAN's adaptive weight ||d nll / d w|| / ||d gan / d w|| at the decoder's last layer
    w (nll: the reconstruction + perceptual losses, unweighted), zero before disc_start."""
    cfg = module.config.adversarial
    d = discriminators(module, {"autoencoder_adversarial"})["autoencoder_discriminator"]
    module._gan_fakes["autoencoder_adversarial"] = (pixels, recon.detach())
    g = gan.generator_loss(d(recon), cfg.loss)
    factor = _started(module)
    last = module.vae.decoder.conv_out.weight
    if factor and cfg.adaptive_weight and torch.is_grad_enabled() and last.requires_grad:
        (nll_grad,) = torch.autograd.grad(nll, last, retain_graph=True)
        (g_grad,) = torch.autograd.grad(g, last, retain_graph=True)
        g = g * (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0, 1e4).detach()
    return factor * g


def predicted_x0(pred: Tensor, noisy: Tensor, alpha_bar: Tensor, prediction_type: str) -> Tensor:
    """The clean latent the model's output implies at noise level alpha_bar (broadcast)."""
    if prediction_type == "v_prediction":
        return alpha_bar.sqrt() * noisy - (1 - alpha_bar).sqrt() * pred
    if prediction_type == "epsilon":  # diverges as alpha_bar -> 0: see max_timestep
        return (noisy - (1 - alpha_bar).sqrt() * pred) / alpha_bar.sqrt()
    if prediction_type == "sample":
        return pred
    raise ValueError(f"discriminator on x0: unsupported prediction_type {prediction_type!r}")


def diffusion_loss(module, latents: Tensor, noisy: Tensor, steps: Tensor, pred: Tensor) -> Tensor:
    """The diffusion phase's adversarial term on the samples with t < max_timestep:
    D(decode(x0 estimate)) through the frozen autoencoder (real: decode(clean latents))."""
    cfg = module.config.adversarial
    d = discriminators(module, {"adversarial"})["diffusion_discriminator"]
    keep = steps < cfg.max_timestep
    alpha_bar = module.noise_scheduler.alphas_cumprod.to(pred.device)[steps].float()
    x0 = predicted_x0(pred.float(), noisy.float(), alpha_bar[:, None, None, None],
                      module.noise_scheduler.config.prediction_type)[keep]
    scale = module.latent_scale
    with torch.no_grad():
        real = module.vae.decode(latents[keep].float() / scale).sample
    if not keep.any():
        module._gan_fakes["adversarial"] = (real, real)
        return pred.sum() * 0.0
    fake = module.vae.decode(x0 / scale).sample
    module._gan_fakes["adversarial"] = (real, fake.detach())
    return gan.generator_loss(d(fake), cfg.loss)


# ---- discriminator guidance at sampling ---------------------------------------------------
class DiscriminatorGuidance:
    """A `callback_on_step_end` for a stock StableDiffusionPipeline (+ a forward hook on its
    UNet that keeps the step's prediction). After each scheduler step at timestep t <
    max_timestep it forms the x0 estimate the sampler used (classifier-free guidance
    applied), decodes it with the pipeline's autoencoder, and moves the latents along
    scale * sqrt(alpha_bar_next) * d realness / d x0 (the x0 change carried to the next
    noise level, as DDIM would). The discriminator thus sees what it was trained on:
    decoded x0 estimates, never noisy latents.

        with DiscriminatorGuidance(d, scale=2.0).on(pipe) as kwargs:
            images = pipe(prompt, **kwargs).images
    """

    def __init__(self, discriminator: nn.Module, scale: float, max_timestep: int = 10**9) -> None:
        self.discriminator, self.scale, self.max_timestep = discriminator, scale, max_timestep
        self._last: tuple[Tensor, Tensor] | None = None
        self._chain = None

    @contextmanager
    def on(self, pipe, callback=None):
        """Pipeline kwargs that apply the guidance while the context is open; `callback`
        (another callback_on_step_end on latents) runs after it."""
        self._chain = callback
        handle = pipe.unet.register_forward_hook(self._keep, with_kwargs=True)
        try:
            yield {"callback_on_step_end": self,
                   "callback_on_step_end_tensor_inputs": ["latents"]}
        finally:
            handle.remove()
            self._last = None

    def _keep(self, unet, args, kwargs, output) -> None:
        sample = args[0] if args else kwargs["sample"]
        self._last = (sample.detach(), (output[0] if isinstance(output, tuple) else output.sample).detach())

    def __call__(self, pipe, i: int, t, callback_kwargs: dict) -> dict:
        out = {}
        if self.scale and int(t) < self.max_timestep and self._last is not None:
            out["latents"] = self.guide(pipe, i, int(t), callback_kwargs["latents"])
        if self._chain is not None:
            out = self._chain(pipe, i, t, callback_kwargs | out) or out
        return out

    def guide(self, pipe, i: int, t: int, latents: Tensor) -> Tensor:
        sample, pred = self._last
        if pipe.do_classifier_free_guidance:
            sample = sample.chunk(2)[0]
            uncond, text = pred.chunk(2)
            pred = uncond + pipe.guidance_scale * (text - uncond)
        sched = pipe.scheduler
        alphas = sched.alphas_cumprod.to(latents.device, torch.float32)
        x0 = predicted_x0(pred.float(), sample.float(), alphas[t], sched.config.prediction_type)
        with torch.enable_grad():
            x0 = x0.detach().requires_grad_(True)
            image = pipe.vae.decode(x0 / pipe.vae.config.scaling_factor).sample
            score = gan.realness(self.discriminator, image.float()).sum()
            (grad,) = torch.autograd.grad(score, x0)
        steps = sched.timesteps
        alpha_next = alphas[int(steps[i + 1])] if i + 1 < len(steps) else latents.new_tensor(1.0)
        return latents + (self.scale * alpha_next.sqrt() * grad).to(latents.dtype)


@contextmanager
def guided(module, pipe, kwargs: dict):
    """The module's sampling kwargs with discriminator guidance when it applies: the
    per-call `discriminator_guidance` scale (popped), else config.adversarial.guidance_scale."""
    kwargs = dict(kwargs)
    scale = kwargs.pop("discriminator_guidance", None)
    cfg = module.config.adversarial
    scale = cfg.guidance_scale if scale is None else float(scale)
    d = module.diffusion_discriminator
    if not scale:
        yield kwargs
        return
    if d is None:
        raise ValueError("discriminator guidance needs the diffusion discriminator: set "
                         "model.t2i.adversarial.diffusion_discriminator.enabled=true and train "
                         "it with the `adversarial` loss, or pass discriminator_guidance=0")
    guidance = DiscriminatorGuidance(d, scale, cfg.max_timestep)
    with guidance.on(pipe, kwargs.pop("callback_on_step_end", None)) as extra:
        kwargs.pop("callback_on_step_end_tensor_inputs", None)
        yield kwargs | extra


# ---- export: an extra folder next to the pipeline's components ----------------------------
def save(module, out: Path) -> dict:
    """Writes discriminators/ (config.json + diffusion.safetensors) when the module has a
    diffusion discriminator; not in model_index.json, so the stock loader ignores it.
    The autoencoder's discriminator is training state only: checkpoints keep it."""
    d = module.diffusion_discriminator
    if d is None:
        return {}
    cfg = module.config.adversarial
    folder = Path(out) / DISCRIMINATORS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    arch = module.config.adversarial.diffusion_discriminator
    config = {"diffusion": {"class": "mmtrain.families.shared.gan.MultiScalePatchGAN",
                            "in_channels": 3, "num_scales": arch.num_scales,
                            "channels": arch.channels, "num_layers": arch.num_layers,
                            "weights": "diffusion.safetensors",
                            "judges": "the autoencoder's decoding of x0 estimates"},
              "guidance_scale": cfg.guidance_scale, "max_timestep": cfg.max_timestep}
    save_file({k: v.detach().cpu().contiguous() for k, v in d.state_dict().items()},
              folder / "diffusion.safetensors")
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return {"discriminators": ["diffusion"], "discriminator_guidance_scale": cfg.guidance_scale}


def load(folder: str | Path) -> DiscriminatorGuidance | None:
    """The discriminator guidance of an exported t2i bundle (None when it has none):

        pipe = DiffusionPipeline.from_pretrained(folder)
        guidance = load(folder)           # scale and max_timestep as trained; change freely
        with guidance.on(pipe) as kwargs:
            images = pipe("a red circle", **kwargs).images
    """
    path = Path(folder) / DISCRIMINATORS_DIR / "config.json"
    if not path.exists():
        return None
    config = json.loads(path.read_text())
    arch = config["diffusion"]
    d = gan.MultiScalePatchGAN(arch["in_channels"], arch["num_scales"], arch["channels"],
                               arch["num_layers"])
    d.load_state_dict(load_file(path.parent / arch["weights"]))
    d.eval().requires_grad_(False)
    return DiscriminatorGuidance(d, config["guidance_scale"], config["max_timestep"])
