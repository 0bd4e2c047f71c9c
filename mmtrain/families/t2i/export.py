"""The text-to-image family's servable artifact: a stock diffusers pipeline folder."""

from __future__ import annotations

from pathlib import Path

from mmtrain.families.t2i import adversarial, autoencoders, conditioning
from mmtrain.families.t2i.module import TextToImage


def export(module: TextToImage, out: Path) -> dict:
    """Writes a StableDiffusionPipeline folder that `DiffusionPipeline.from_pretrained`
    loads offline with no mmtrain code. Returns facts for the manifest."""
    # Tokenizing with padding/truncation leaves those settings on the fast tokenizer's
    # backend, and save_pretrained would write them into tokenizer.json: reset them so
    # the bundle's bytes depend on the weights alone (and match a re-export).
    module.tokenizer.backend_tokenizer.no_padding()
    module.tokenizer.backend_tokenizer.no_truncation()
    with module.ema_weights():  # the EMA is what a bundle serves
        module.pipeline().save_pretrained(out, safe_serialization=True)
        # style presets, retrieval config + knowledge base: conditioning.load_extras(out)
        extras = conditioning.save_extras(module.conditioner(), out)
    # a VQ autoencoder's code next to its weights; discriminators/: adversarial.load(out)
    extras |= autoencoders.ship_code(module.vae, out) | adversarial.save(module, out)
    if module.cascade is not None:  # refiners/: cascade.load(out)
        extras |= module.cascade.save(out)
    return extras | {
        "format": "diffusers",
        "pipeline_class": "StableDiffusionPipeline",
        "resolution": module.config.resolution,
        "sampler": module.config.sampler.name,
        "sampling_steps": module.config.sampler.steps,
        "guidance_scale": module.config.sampler.guidance_scale,
        "latent_scale": float(module.latent_scale),
        "weights": "ema" if module.ema is not None else "trained",
    }
