"""The text-to-image family's autoencoders: each kind built from config, images -> the
latents diffusion trains on, and the autoencoder-phase losses (docs/t2i.md "Autoencoders").

Kinds (`autoencoder.kind`): `kl` (diffusers' AutoencoderKL, the default), `vq`
(diffusers' VQModel) and `vq2` (a two-level VQ-VAE-2); the VQ classes live in
models.py. Losses a phase can weight:

- `autoencoder`: L1 reconstruction + the regulariser (kl: kl_weight x KL; vq, vq2: the
  codebook + commitment loss VectorQuantizer returns)
- `autoencoder_perceptual`: a feature distance (mmtrain/families/shared/perceptual.py)
- `autoencoder_adversarial`: the patch discriminator's generator loss with VQGAN's
  adaptive weight (adversarial.py)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import Tensor

from mmtrain.families.t2i import adversarial
from mmtrain.families.t2i.autoencoders.models import VQVAE2, VQAutoencoder
from mmtrain.families.t2i.config import T2IConfig

CLASSES = {"AutoencoderKL": AutoencoderKL, "VQModel": VQAutoencoder,
           "VQAutoencoder": VQAutoencoder, "VQVAE2": VQVAE2}
LOSSES = ("autoencoder", "autoencoder_perceptual", "autoencoder_adversarial")


def build(cfg: T2IConfig):
    """A randomly initialised autoencoder of `cfg.autoencoder.kind` (not `kl`: networks.py
    builds that one, as it always did)."""
    ae = cfg.autoencoder
    n = len(ae.block_out_channels)
    common = dict(in_channels=3, out_channels=3, block_out_channels=list(ae.block_out_channels),
                  layers_per_block=ae.layers_per_block, latent_channels=ae.latent_channels,
                  norm_num_groups=ae.norm_num_groups, sample_size=cfg.resolution,
                  mid_block_add_attention=ae.mid_block_attention,
                  num_vq_embeddings=ae.num_embeddings, scaling_factor=ae.scaling_factor or 1.0)
    if ae.kind == "vq":
        return VQAutoencoder(down_block_types=["DownEncoderBlock2D"] * n,
                             up_block_types=["UpDecoderBlock2D"] * n, **common)
    if ae.kind == "vq2":
        return VQVAE2(**common)
    raise ValueError(f"autoencoder.kind={ae.kind!r}: networks.build_vae builds 'kl'")


def load(folder: str | Path):
    """An autoencoder folder (`vae/` of a pipeline) of any kind, by its config's class."""
    name = json.loads((Path(folder) / "config.json").read_text()).get("_class_name")
    if name not in CLASSES:
        raise ValueError(f"{folder}: autoencoder class {name!r} is not one of {', '.join(CLASSES)}")
    return CLASSES[name].from_pretrained(folder, local_files_only=True)


def encode(vae, pixels: Tensor, generator: torch.Generator | None) -> Tensor:
    """Images -> the latents diffusion trains on: a posterior sample (kl), the encoder's
    output before quantization (vq, vq2: the decoder quantizes)."""
    out = vae.encode(pixels)
    if hasattr(out, "latent_dist"):
        return out.latent_dist.sample(generator)
    return out.latents


def losses(module, pixels: Tensor, active: set[str], generator: torch.Generator | None
           ) -> dict[str, Tensor]:
    """The active autoencoder losses for a batch of images in [-1, 1]."""
    vae = module.vae
    if isinstance(vae, AutoencoderKL):
        posterior = vae.encode(pixels).latent_dist
        recon = vae.decode(posterior.sample(generator)).sample
        regulariser = module.config.autoencoder.kl_weight * posterior.kl().mean()
    else:
        decoded = vae.decode(vae.encode(pixels).latents)
        recon, regulariser = decoded.sample, decoded.commit_loss.mean()
    rec = F.l1_loss(recon, pixels)
    out = {}
    if "autoencoder" in active:
        out["autoencoder"] = rec + regulariser
    nll = rec
    if "autoencoder_perceptual" in active:
        out["autoencoder_perceptual"] = perceptual(module, recon, pixels)
        nll = nll + out["autoencoder_perceptual"]
    if "autoencoder_adversarial" in active:
        out["autoencoder_adversarial"] = adversarial.autoencoder_loss(module, recon, pixels, nll)
    return out


def perceptual(module, recon: Tensor, pixels: Tensor) -> Tensor:
    """The feature distance of mmtrain/families/shared/perceptual.py on images in [0, 1].
    Its fixed network is held outside the module's submodules (never trained, never in a
    checkpoint) and built on first use from its own RNG state."""
    from mmtrain.families.shared.perceptual import PerceptualLoss

    net = module.__dict__.get("_perceptual")
    if net is None:
        ae = module.config.autoencoder
        with torch.random.fork_rng(devices=[]):  # the training RNG stream stays as it was
            net = PerceptualLoss(ae.perceptual_weights_path, dict(ae.perceptual_layers))
        module.__dict__["_perceptual"] = net
    net.to(pixels.device)
    return net((recon + 1) / 2, (pixels + 1) / 2)


# ---- export ---------------------------------------------------------------------------
SHIPPED_MODULE = "mmtrain_vq"  # vae/mmtrain_vq.py in an exported pipeline folder


def ship_code(vae, out: Path) -> dict:
    """A VQ autoencoder's pipeline folder: copies models.py (torch + diffusers only) into
    vae/ and points model_index.json at it, so the folder loads without mmtrain:
    `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`. KL: nothing to do."""
    if isinstance(vae, AutoencoderKL):
        return {}
    out = Path(out)
    (out / "vae" / f"{SHIPPED_MODULE}.py").write_bytes(Path(models_file()).read_bytes())
    index = json.loads((out / "model_index.json").read_text())
    index["vae"] = [SHIPPED_MODULE, type(vae).__name__]
    (out / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return {"autoencoder": type(vae).__name__, "load_with": "trust_remote_code=True"}


def models_file() -> str:
    from mmtrain.families.t2i.autoencoders import models

    return models.__file__
