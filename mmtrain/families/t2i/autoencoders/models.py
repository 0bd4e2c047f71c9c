"""The VQ autoencoders of the text-to-image family, as diffusers models.

This file imports only torch and diffusers: an exported pipeline folder ships a copy of
it next to the VQ weights (`vae/mmtrain_vq.py`), so the bundle loads without mmtrain
(`DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`, docs/t2i.md).

- `VQAutoencoder`: diffusers' `VQModel`, whose `decode` also takes the `generator`
  StableDiffusionPipeline passes to every autoencoder (a VQ decoder draws nothing).
- `VQVAE2`: the two-level VQ-VAE-2 (Razavi et al., 2019), which diffusers lacks, built
  from diffusers' `Encoder`, `Decoder` and `VectorQuantizer`.

Latent diffusion trains on the encoder's output before quantization and the decoder
quantizes (the latent-diffusion recipe: the codebook acts as part of the decoder).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ModelMixin, VQModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import Decoder, DecoderOutput, Encoder, VectorQuantizer
from diffusers.models.autoencoders.vq_model import VQEncoderOutput
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn


class VQAutoencoder(VQModel):
    """VQModel that accepts StableDiffusionPipeline's `vae.decode(..., generator=...)`."""

    def decode(self, h: torch.Tensor, force_not_quantize: bool = False, return_dict: bool = True,
               shape=None, generator: torch.Generator | None = None):
        return super().decode(h, force_not_quantize=force_not_quantize,
                              return_dict=return_dict, shape=shape)


class VQVAE2(ModelMixin, ConfigMixin):
    """Two codebooks: a top one at half the bottom resolution (global structure) and a
    bottom one conditioned on the decoded top (detail); the decoder reads both.

    The latent that diffusion sees is one tensor on the bottom grid:
    [bottom code before quantization ; top code before quantization, upsampled 2x by
    repetition], so `latent_channels` is twice each level's channels. `decode` averages
    the top half back to its grid (exact for an encoded latent; a projection for a
    generated one), quantizes each level and decodes.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 8,
        sample_size: int = 32,
        num_vq_embeddings: int = 256,
        norm_num_groups: int = 32,
        mid_block_add_attention: bool = True,
        scaling_factor: float = 1.0,
    ):
        super().__init__()
        if latent_channels % 2:
            raise ValueError(f"VQVAE2: latent_channels={latent_channels} must be even "
                             "(half for each codebook level)")
        c, n, top = latent_channels // 2, len(block_out_channels), block_out_channels[-1]
        common = dict(layers_per_block=layers_per_block, act_fn=act_fn,
                      norm_num_groups=norm_num_groups, mid_block_add_attention=mid_block_add_attention)
        self.encoder = Encoder(in_channels, c, ("DownEncoderBlock2D",) * n, tuple(block_out_channels),
                               double_z=False, **common)
        # two blocks = one 2x step down (top) and up again (to condition the bottom level)
        self.top_encoder = Encoder(c, c, ("DownEncoderBlock2D",) * 2, (top, top), double_z=False,
                                   **common)
        self.top_quant_conv = nn.Conv2d(c, c, 1)
        self.top_quantize = VectorQuantizer(num_vq_embeddings, c, beta=0.25)
        self.top_decoder = Decoder(c, c, ("UpDecoderBlock2D",) * 2, (top, top), **common)
        self.quant_conv = nn.Conv2d(2 * c, c, 1)  # bottom features + decoded top
        self.quantize = VectorQuantizer(num_vq_embeddings, c, beta=0.25)
        self.upsample_top = nn.ConvTranspose2d(c, c, 4, stride=2, padding=1)
        self.post_quant_conv = nn.Conv2d(2 * c, 2 * c, 1)
        self.decoder = Decoder(2 * c, out_channels, ("UpDecoderBlock2D",) * n,
                               tuple(block_out_channels), **common)

    @apply_forward_hook
    def encode(self, x: torch.Tensor, return_dict: bool = True):
        h = self.encoder(x)
        if h.shape[-1] % 2 or h.shape[-2] % 2:
            raise ValueError(f"VQVAE2: the bottom latent grid {tuple(h.shape[-2:])} must be even "
                             "(the top level halves it); use an image size divisible by "
                             f"{2 ** len(self.config.block_out_channels)}")
        top = self.top_quant_conv(self.top_encoder(h))
        q_top, _, _ = self.top_quantize(top)
        bottom = self.quant_conv(torch.cat([h, self.top_decoder(q_top)], dim=1))
        latents = torch.cat([bottom, F.interpolate(top, scale_factor=2.0, mode="nearest")], dim=1)
        return VQEncoderOutput(latents=latents) if return_dict else (latents,)

    @apply_forward_hook
    def decode(self, h: torch.Tensor, force_not_quantize: bool = False, return_dict: bool = True,
               generator: torch.Generator | None = None):
        c = self.config.latent_channels // 2
        bottom, top = h[:, :c], F.avg_pool2d(h[:, c:], 2)
        if force_not_quantize:
            q_bottom, q_top, commit_loss = bottom, top, h.new_zeros(())
        else:
            q_top, top_loss, _ = self.top_quantize(top)
            q_bottom, bottom_loss, _ = self.quantize(bottom)
            commit_loss = top_loss + bottom_loss
        quant = self.post_quant_conv(torch.cat([q_bottom, self.upsample_top(q_top)], dim=1))
        dec = self.decoder(quant)
        return DecoderOutput(sample=dec, commit_loss=commit_loss) if return_dict else (dec, commit_loss)

    def forward(self, sample: torch.Tensor, return_dict: bool = True):
        dec = self.decode(self.encode(sample).latents)
        return dec if return_dict else (dec.sample, dec.commit_loss)
