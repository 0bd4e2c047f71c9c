"""Text-to-image latent diffusion: CLIP text encoder + UNet + AutoencoderKL (diffusers).

Two losses, which phases weight: `autoencoder` (reconstruction + KL, trains the VAE) and
`diffusion` (noise prediction with min-SNR weighting, trains the UNet and text encoder).
Sampling goes through a stock StableDiffusionPipeline assembled from these very modules,
so what validation shows is what the export serves.

The diffusion loss also trains from latent shards (`python -m mmtrain.data encode-latents`,
docs/latents.md): the stored posterior replaces the VAE encode, stored text states the text
encoder; the math after that is the same.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from diffusers import StableDiffusionPipeline
from diffusers.training_utils import EMAModel, compute_snr
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image, ImageDraw
from torch import Tensor

from mmtrain.families.base import FamilyModule
from mmtrain.families.t2i import adversarial, autoencoders, conditioning, networks, rag, styles
from mmtrain.families.t2i import batch as batch_codec
from mmtrain.families.t2i.cascade import Cascade
from mmtrain.families.t2i.config import T2IConfig
from mmtrain.families.t2i.metrics import evaluate_metrics


class TextToImage(FamilyModule):
    name = "t2i"
    default_loss_weights = {"diffusion": 1.0}

    def __init__(self, config: T2IConfig) -> None:
        super().__init__()
        self.config = config
        nets = networks.build_networks(config)
        self.tokenizer, self.text_encoder, self.vae = nets.tokenizer, nets.text_encoder, nets.vae
        self.unet, self.noise_scheduler = nets.unet, nets.noise_scheduler
        self.latent_shape = nets.latent_shape
        if config.gradient_checkpointing:  # diffusers' own; VQ kinds without it are left as they are
            self.unet.enable_gradient_checkpointing()
            if getattr(self.vae, "_supports_gradient_checkpointing", False):
                self.vae.enable_gradient_checkpointing()
        # 0 = not measured yet; saved with checkpoints so a resumed run keeps it.
        scale = config.autoencoder.scaling_factor or (
            self.vae.config.scaling_factor if config.pretrained_path else 0.0)
        self.register_buffer("latent_scale", torch.tensor(float(scale)))
        self.ema: EMAModel | None = None  # created by the first diffusion step
        self.active_losses: set[str] = set(self.default_loss_weights)
        # GAN parts (adversarial.py), None unless enabled: built after the networks above,
        # so a run without them initialises exactly as before.
        self.autoencoder_discriminator = adversarial.build(config.adversarial.autoencoder_discriminator)
        self.diffusion_discriminator = adversarial.build(config.adversarial.diffusion_discriminator)
        if self.autoencoder_discriminator is not None or self.diffusion_discriminator is not None:
            self.register_buffer("gan_updates", torch.tensor(0))  # of the phase: disc_start
        self._gan_fakes: dict = {}
        self._prediction: tuple | None = None  # the last diffusion step's, for `adversarial`
        # Style presets and retrieval (conditioning.py); None when off. Built last and
        # from their own RNG: a run without them initialises exactly as before.
        self.styles = styles.build(config.styles, self.text_encoder.config.hidden_size)
        self.retriever = (rag.Retriever(config.rag.knowledge_base, config.rag.knowledge_source,
                                        config.rag.top_k) if config.rag.knowledge_base else None)
        # Super-resolution stages (cascade.py): loaded now, so a bad stage fails before
        # training; kept out of the module tree (never trained, checkpointed or in the EMA).
        object.__setattr__(self, "cascade", Cascade.from_config(config.cascade))

    def sample_decoder(self):
        decode = batch_codec.decoder(self.config.resolution, self.latent_shape)
        return styles.with_style(decode, self.config.styles) if self.styles is not None else decode

    def check_source(self, source: str, shards: list[str]) -> None:
        """Latent shards: refused unless encoded by this very autoencoder (and text encoder,
        when they carry text states) at this resolution (mmtrain/data/latents/check.py)."""
        from mmtrain.data.latents.check import check_latent_source

        manifest = check_latent_source(self, source, shards, self.active_losses)
        if manifest is not None and float(self.latent_scale) == 0:
            # not measured: the scale of the bundle the latents came from (same VAE)
            self.latent_scale.fill_(manifest["autoencoder"]["scaling_factor"])

    def required_fields(self) -> dict[str, tuple[str, ...]]:
        return batch_codec.FIELDS

    collate = staticmethod(batch_codec.collate)

    # ---- training -------------------------------------------------------------------
    def losses(self, batch: dict, active: set[str], generator: torch.Generator) -> dict[str, Tensor]:
        pixels = batch.get("pixels")
        out: dict[str, Tensor] = {}
        if active & set(autoencoders.LOSSES):
            if pixels is None:
                raise ValueError("the t2i autoencoder loss needs images; this batch holds "
                                 "latents (train the autoencoder on image shards)")
            out |= autoencoders.losses(self, pixels, active, _on(generator, pixels))
        if "diffusion" in active or "adversarial" in active:
            diffusion = self._diffusion_loss(batch, generator)
            if "diffusion" in active:
                out["diffusion"] = diffusion
            if "adversarial" in active:  # D(decoded x0 estimate), adversarial.py
                out["adversarial"] = adversarial.diffusion_loss(self, *self._prediction)
            self._prediction = None
        return out

    def _posterior_sample(self, batch: dict, generator) -> Tensor:
        """A sample of the VAE posterior: encoded from pixels, or from stored latents with
        the same draw (mean + std * noise); mean-only latents still draw it, so the rest of
        the step's randomness matches the pixel path."""
        if "pixels" in batch:
            pixels = batch["pixels"]
            return autoencoders.encode(self.vae, pixels, _on(generator, pixels))
        mean = batch["latents"].to(self.device, torch.float32)
        if not isinstance(self.vae, autoencoders.AutoencoderKL):
            return mean  # vq, vq2: stored pre-quantization latents; the pixel path draws nothing
        noise = randn_tensor(mean.shape, generator=_on(generator, mean), device=mean.device,
                             dtype=mean.dtype)
        std = batch.get("latent_std")
        return mean if std is None else mean + std.to(mean) * noise

    def _diffusion_loss(self, batch: dict, generator) -> Tensor:
        with torch.no_grad():
            latents = self._posterior_sample(batch, generator)
            if self.latent_scale.item() == 0:  # unit-variance latents, measured once
                self.latent_scale.fill_(1.0 / self.reduce_mean(latents.float().std()).item())
            latents = latents * self.latent_scale
        captions = batch["captions"]
        drop = torch.rand(len(captions), generator=generator) < self.config.caption_dropout
        if "text" in batch:  # stored states of a frozen text encoder; "" for dropped captions
            context = batch["text"].to(self.device, torch.float32)
            if drop.any():
                with torch.no_grad():
                    empty = self.encode_text([""])
                context = torch.where(drop.to(context.device)[:, None, None], empty, context)
        else:
            captions = ["" if d else c for c, d in zip(captions, drop.tolist(), strict=True)]
            context = self.encode_text(captions)
        cond = self.conditioner()
        if cond.extended:  # + retrieved passages, style tokens
            c = self.config
            context = cond.training_context(context, batch["captions"], drop, generator,
                                            batch.get("styles"), c.rag.dropout, c.styles.dropout)
        n = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        steps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (n,),
                              generator=generator).to(latents.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, steps)
        if self.config.noise.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, steps)
        else:
            target = noise
        pred = self.unet(noisy, steps, encoder_hidden_states=context).sample
        self._prediction = (latents, noisy, steps, pred)
        per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean((1, 2, 3))
        gamma = self.config.noise.snr_gamma
        if gamma is None:
            return per_sample.mean()
        snr = compute_snr(self.noise_scheduler, steps)
        weight = torch.clamp(snr, max=gamma) / (
            snr + 1 if self.config.noise.prediction_type == "v_prediction" else snr)
        return (weight * per_sample).mean()

    def encode_text(self, captions: list[str]) -> Tensor:
        ids = batch_codec.token_ids(self.tokenizer, captions).to(self.device)
        return self.text_encoder(ids)[0]

    def conditioner(self) -> conditioning.Conditioner:
        return conditioning.Conditioner(self.tokenizer, self.text_encoder, styles=self.styles,
                                        retriever=self.retriever,
                                        passage_tokens=self.config.rag.max_tokens_per_passage)

    # ---- GAN parts (adversarial.py; the curriculum's GAN path drives them) ---------------
    def discriminators(self, active: set[str]) -> dict[str, torch.nn.Module]:
        return adversarial.discriminators(self, active)

    def adversarial_config(self):
        return self.config.adversarial

    def discriminator_losses(self, batch: dict, active: set[str], generator: torch.Generator,
                             step: int) -> dict[str, Tensor]:
        return adversarial.discriminator_losses(self, batch, active, step)

    # ---- EMA (config.ema) ---------------------------------------------------------------
    def _ema_parameters(self) -> list[torch.nn.Parameter]:
        extra = [*self.styles.parameters()] if self.styles is not None else []
        return [*self.unet.parameters(), *self.text_encoder.parameters(), *extra]

    def _new_ema(self) -> EMAModel:
        e = self.config.ema
        return EMAModel(self._ema_parameters(), decay=e.decay, use_ema_warmup=True, power=e.power)

    def after_optimizer_step(self, active: set[str]) -> None:
        if "diffusion" in active and self.config.ema.enabled:
            if self.ema is None:
                self.ema = self._new_ema()
            self.ema.step(self._ema_parameters())

    @contextmanager
    def ema_weights(self):
        """The EMA weights in place of the trained ones for the duration (if any)."""
        if self.ema is None:
            yield
            return
        params = self._ema_parameters()
        self.ema.store(params)
        self.ema.copy_to(params)
        try:
            yield
        finally:
            self.ema.restore(params)

    def get_extra_state(self) -> dict:  # saved with the module's state_dict (checkpoints)
        return {"ema": self.ema.state_dict()} if self.ema is not None else {}

    def set_extra_state(self, state: dict) -> None:
        if state and "ema" in state:
            self.ema = self._new_ema()
            self.ema.load_state_dict(state["ema"])

    def on_phase_start(self, active: set[str]) -> None:
        self.active_losses = set(active)
        adversarial.on_phase_start(self, active)  # freezes discriminators without a loss
        if "diffusion" in active and self.config.autoencoder.scaling_factor is None \
                and not self.config.pretrained_path:
            self.latent_scale.zero_()  # the autoencoder may have changed: measure again

    # ---- sampling ---------------------------------------------------------------------
    def pipeline(self, sampler: str | None = None) -> StableDiffusionPipeline:
        """A stock diffusers pipeline over this module's networks (no copies); `sampler`
        overrides config.sampler.name."""
        self.vae.register_to_config(scaling_factor=float(self.latent_scale) or 1.0)
        return StableDiffusionPipeline(
            vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
            unet=self.unet,
            scheduler=networks.build_sampler(self.config, self.noise_scheduler, sampler),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )

    @torch.no_grad()
    def generate(self, prompts: list[str], seed: int, **options) -> list[Image.Image]:
        """Images for `prompts`; options as `generate_with_context`."""
        return self.generate_with_context(prompts, seed, **options).images

    @torch.no_grad()
    def generate_with_context(self, prompts: list[str], seed: int, *, negative_prompt=None,
                              style=None, retrieve: bool = True, sampler: str | None = None,
                              refine: bool = False, **overrides) -> conditioning.Generation:
        """Images plus what conditioned them (retrieved passages with sources, styles).
        negative_prompt / style: one for all prompts or one per prompt; sampler: ddpm,
        ddim or dpm_solver; refine: run config.cascade's super-resolution stages on the
        base images (validation keeps base images: its metrics are calibrated there);
        overrides: pipeline arguments (num_inference_steps, guidance_scale, ...) over
        config.sampler."""
        if refine and self.cascade is None:
            raise ValueError("refine=True but model.t2i.cascade is empty; add stages "
                             "([{refiner: RESTORE_BUNDLE, scale: 2}]) or drop refine")
        with self.ema_weights():
            out = self._generate(prompts, seed, negative_prompt=negative_prompt, style=style,
                                 retrieve=retrieve, sampler=sampler, **overrides)
        if refine:
            out.images = self.cascade.to(self.device)(out.images)
        return out

    def _generate(self, prompts: list[str], seed: int, *, sampler: str | None = None,
                  negative_prompt=None, style=None, retrieve: bool = True,
                  **overrides) -> conditioning.Generation:
        was_training = self.training
        self.eval()
        pipe = self.pipeline(sampler)
        pipe.set_progress_bar_config(disable=True)
        s = self.config.sampler
        kwargs = {"num_inference_steps": s.steps, "guidance_scale": s.guidance_scale,
                  "height": self.config.resolution, "width": self.config.resolution} | overrides
        # discriminator_guidance=SCALE (else config.adversarial.guidance_scale): adversarial.py
        with adversarial.guided(self, pipe, kwargs) as kwargs:
            out = conditioning.generate(pipe, self.conditioner(), prompts, seed,
                                        negative_prompt=negative_prompt, style=style,
                                        retrieve=retrieve, **kwargs)
        self.train(was_training)
        return out

    @torch.no_grad()
    def evaluate(self, seed: int) -> tuple[dict[str, float], dict]:
        prompts = [p for p in self.config.sample_prompts for _ in range(self.config.samples_per_prompt)]
        images = self.generate(prompts, seed)
        m = self.config.metrics  # prompt agreement always; FID / CLIP score with local nets
        metrics = evaluate_metrics(images, prompts, fid_feature_path=m.fid_feature_path,
                                   clip_path=m.clip_path, fid_reference=m.fid_reference,
                                   device=self.device)
        grid = image_grid(images, self.config.samples_per_prompt, self.config.sample_prompts)
        return metrics, {"samples": grid}


def _on(generator: torch.Generator, like: Tensor) -> torch.Generator | None:
    """diffusers samples on the tensor's device; a CPU generator only serves CPU tensors."""
    return generator if like.device.type == "cpu" else None


def image_grid(images: list[Image.Image], columns: int, labels: list[str] | None = None) -> Image.Image:
    """Rows of `columns` images (small ones upscaled for viewing), each row labelled."""
    scale = max(1, 64 // images[0].width)
    w, h = images[0].width * scale, images[0].height * scale
    rows = (len(images) + columns - 1) // columns
    margin = 150 if labels else 0
    grid = Image.new("RGB", (margin + columns * w, rows * h), "white")
    draw = ImageDraw.Draw(grid)
    for i, img in enumerate(images):
        grid.paste(img.resize((w, h), Image.NEAREST), (margin + (i % columns) * w, (i // columns) * h))
    for row, label in enumerate(labels or []):
        draw.text((4, row * h + h // 2 - 6), label[:28], fill="black")
    return grid
